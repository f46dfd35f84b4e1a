"""What every command line shares: one-line errors, Ctrl-C and SIGTERM, and their exit codes.

:func:`run_cli` runs a command's body and maps how it ended to one line on stderr and an exit
status: 0 done, 1 a :class:`~engine.errors.DatapairError` (bad input, unreachable server), 2 a
usage error, 130 interrupted (SIGINT or SIGTERM; ``interrupted: N of M files done`` when the
work counts files). Work that runs files raises :class:`Interrupted` with its counts after it has
stopped its workers and removed its temporary files.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from engine.errors import DatapairError

__all__ = ["EXIT_INTERRUPTED", "ArgumentParser", "Interrupted", "exit_now", "run_cli", "sigterm_as_interrupt"]

EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``prog: error: what (see prog --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT/SIGTERM after ``done`` of ``total`` files (workers stopped, temps removed)."""

    def __init__(self, done: int | None = None, total: int | None = None, unit: str = "file") -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.unit = unit

    def line(self) -> str:
        if self.done is None or self.total is None:
            return "interrupted"
        return f"interrupted: {self.done} of {self.total} {self.unit}{'s' if self.total != 1 else ''} done"


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does (main thread only)."""
    try:
        old = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_cli(prog: str, body: Callable[[], int]) -> int:
    """Run ``body`` (which returns the exit status); turn errors and interrupts into one line and a status."""
    try:
        with sigterm_as_interrupt():
            return body()
    except Interrupted as exc:
        print(f"{prog}: {exc.line()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DatapairError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into head: nothing more to say
        sys.stderr.close()
        return 0


def exit_now(code: int) -> NoReturn:
    """End a command's process with ``code`` without tearing its modules down.

    An interpreter that has loaded Numba and pyarrow spends 0.2-0.3 s in its own teardown (measured
    here: ``import engine.lake.ingest`` then a normal exit, 0.29 s; with ``os._exit``, 0.05 s), and
    nothing a command needs happens there: its files are closed and renamed before its summary
    line. The atexit handlers still run (multiprocessing's, among them) and stdout and stderr are
    flushed; while a non-daemon thread is still running, the interpreter shuts down as usual.
    """
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
