"""Run DBN files through sinks: one file = one task, several files in parallel processes.

A task is :func:`engine.pipeline.process.process_file`: stream one source file as column blocks
and hand every block to each of its sinks, which are built inside the worker by *sink factories*
(picklable callables ``path -> FileSink``). A failing file never stops the others; a worker that
dies fails only the file it held and is replaced.

Processes (``jobs`` file workers, forked from the caller, each paired with a helper process when
a factory asks for one through an ``offload`` attribute, see :mod:`engine.pipeline.offload`)::

    parent ── tasks ──► file worker 1: zstd + decode + convert ──slots──► helper 1 (threads)
       ▲                file worker 2: ...                      ──slots──► helper 2
       └─── progress events and outcomes ───────┘

Each worker talks to the parent over its own pipe, so a worker that dies cannot block the others.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import mmap
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from engine.cli import Interrupted
from engine.dbn.metadata import DEFAULT_BLOCK_BYTES
from engine.pipeline.offload import OffloadSpec, SlotChannel, helper_main, shared_slots
from engine.pipeline.process import FileOutcome, ProgressEvent, Report, process_file
from engine.pipeline.sinks import SinkFactory

__all__ = ["run_pipeline"]


def run_pipeline(
    paths: Sequence[str | os.PathLike[str]],
    factories: Sequence[SinkFactory],
    *,
    symbols: set[str] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    jobs: int = 1,
    report: Report | None = None,
    inline: bool = False,
) -> list[FileOutcome]:
    """Process every file; outcomes come back in the order of ``paths``.

    Parameters
    ----------
    paths : sequence of path-like
        DBN files (plain or zstd).
    factories : sequence of SinkFactory
        Each builds one sink per file inside the worker.
    symbols : set of str, optional
        Keep only these symbols.
    block_bytes : int
        Decompressed bytes per block.
    jobs : int
        Files processed at once (each by a file worker, and its helper process if a sink asks for one).
    report : callable, optional
        Receives :class:`ProgressEvent` s in the calling process.
    inline : bool
        Run everything in this process, one file after the other (debugging, tiny inputs).
    """
    if inline or not paths:
        out: list[FileOutcome] = []
        try:
            for i, p in enumerate(paths):
                out.append(
                    process_file(p, factories, symbols=symbols, block_bytes=block_bytes, index=i, report=report)
                )
        except KeyboardInterrupt:  # the file's sinks aborted (process_file's finally)
            raise Interrupted(sum(o.ok for o in out), len(paths)) from None
        return out
    return _Pool(factories, symbols, block_bytes, max(1, min(jobs, len(paths))), report).run(paths)


# -- file workers ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (no orphans finishing a killed run).

    Ctrl-C reaches the whole process group: children ignore SIGINT and let the parent stop them,
    so an interrupted run prints one line, not a traceback per process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's "SIGTERM means interrupt" handler
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _helper_main(conn: Connection, other_end: Connection, buf: mmap.mmap, spec: OffloadSpec) -> None:
    _die_with_parent()
    helper_main(conn, other_end, buf, spec)


def _worker_main(
    conn: Connection,
    factories: Sequence[SinkFactory],
    symbols: set[str] | None,
    block_bytes: int,
    helper: tuple[Connection, mmap.mmap, OffloadSpec] | None,
) -> None:
    """File worker process: take (index, path) tasks from its pipe until None; send events and outcomes back.

    Each worker talks to the parent over its own pipe (no lock shared with other workers, so a
    worker that dies cannot block the others).
    """
    _die_with_parent()
    channel = SlotChannel(*helper) if helper is not None else None
    if helper is not None:
        helper[2].install(channel)
    code = 0
    try:
        while True:
            task = conn.recv()
            if task is None:
                break
            index, path = task
            conn.send(("start", index))
            out = process_file(
                path, factories, symbols=symbols, block_bytes=block_bytes, index=index, report=conn.send
            )
            conn.send(out)
            if channel is not None and channel.broken is not None:
                code = 3  # the pool starts a new worker and helper
                break
    except (EOFError, OSError):
        code = 4  # the parent is gone
    finally:
        if helper is not None:
            helper[2].install(None)
            with contextlib.suppress(OSError):
                helper[0].send(None)
    if code:
        os._exit(code)


@dataclass
class _Pair:
    worker: Any
    helper: Any
    conn: Connection
    task: int | None = None
    started: bool = False  # the worker acknowledged its task


class _Pool:
    """The parent's side: start worker/helper pairs, hand out files, collect outcomes, replace dead pairs."""

    def __init__(
        self,
        factories: Sequence[SinkFactory],
        symbols: set[str] | None,
        block_bytes: int,
        jobs: int,
        report: Report | None,
    ) -> None:
        self.ctx = mp.get_context("fork")
        self.factories = list(factories)
        self.symbols = symbols
        self.block_bytes = block_bytes
        self.jobs = jobs
        self.report = report
        self.offload: OffloadSpec | None = next(
            (o for o in (getattr(f, "offload", None) for f in factories) if o is not None), None
        )
        self.pairs: list[_Pair] = []

    def _start_pair(self) -> None:
        helper = None
        helper_proc = None
        if self.offload is not None:
            buf = shared_slots(self.offload)
            mine, theirs = self.ctx.Pipe(duplex=True)
            helper_proc = self.ctx.Process(
                target=_helper_main, args=(theirs, mine, buf, self.offload), daemon=True
            )
            helper_proc.start()
            theirs.close()
            helper = (mine, buf, self.offload)
        parent_end, child_end = self.ctx.Pipe(duplex=True)
        args = (child_end, self.factories, self.symbols, self.block_bytes, helper)
        worker = self.ctx.Process(target=_worker_main, args=args, daemon=True)
        worker.start()
        child_end.close()
        if helper is not None:
            helper[0].close()
            helper[1].close()
        self.pairs.append(_Pair(worker, helper_proc, parent_end))

    def run(self, paths: Sequence[str | os.PathLike[str]]) -> list[FileOutcome]:
        outcomes: dict[int, FileOutcome] = {}
        todo = list(range(len(paths)))[::-1]  # popped from the end: in order
        gc.collect()
        gc.freeze()  # the children share the parent's objects: keep their GC from dirtying (copying) those pages
        try:
            for _ in range(self.jobs):
                self._start_pair()
            while len(outcomes) < len(paths):
                for pair in self.pairs:
                    if pair.task is None and todo:
                        pair.task = todo.pop()
                        pair.conn.send((pair.task, str(paths[pair.task])))
                ready = mp.connection.wait([p.conn for p in self.pairs], timeout=1.0)
                for pair in [p for p in self.pairs if p.conn in ready]:
                    try:
                        msg = pair.conn.recv()
                    except (EOFError, OSError):
                        if pair.task is not None and not pair.started:
                            todo.append(pair.task)  # it died before taking the file: hand it out again
                            pair.task = None
                        self._bury(pair, paths, outcomes)
                        if len(outcomes) + sum(p.task is not None for p in self.pairs) < len(paths):
                            self._start_pair()
                        continue
                    if isinstance(msg, FileOutcome):
                        outcomes[msg.index] = msg
                        pair.task = None
                        pair.started = False
                    elif isinstance(msg, tuple):  # ("start", index)
                        pair.started = True
                    elif self.report is not None:
                        self.report(msg)
        except KeyboardInterrupt:
            self._kill()
            raise Interrupted(sum(o.ok for o in outcomes.values()), len(paths)) from None
        finally:
            self._stop()
            gc.unfreeze()
        return [outcomes[i] for i in range(len(paths))]

    def _kill(self) -> None:
        """Interrupted: stop every worker and helper now (what they wrote is only temporary files)."""
        procs = [p for pair in self.pairs for p in (pair.worker, pair.helper) if p is not None]
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)

    def _bury(
        self, pair: _Pair, paths: Sequence[str | os.PathLike[str]], outcomes: dict[int, FileOutcome]
    ) -> None:
        """A worker died: fail the file it held and stop its helper."""
        self.pairs.remove(pair)
        pair.conn.close()
        pair.worker.join(timeout=5)
        if pair.helper is not None:
            pair.helper.join(timeout=5)
            if pair.helper.is_alive():
                pair.helper.terminate()
        if pair.task is not None and pair.task not in outcomes:
            p = str(paths[pair.task])
            msg = f"{p}: the worker process died (exit code {pair.worker.exitcode}) while converting it"
            outcomes[pair.task] = FileOutcome(p, pair.task, message=msg)
            if self.report is not None:
                self.report(ProgressEvent(pair.task, p, 0, 0, 0, done=True, ok=False))

    def _stop(self) -> None:
        for pair in self.pairs:
            with contextlib.suppress(OSError):
                pair.conn.send(None)
        deadline = time.monotonic() + 10
        for pair in self.pairs:
            for proc in (pair.worker, pair.helper):
                if proc is None:
                    continue
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)
            pair.conn.close()
        self.pairs.clear()
