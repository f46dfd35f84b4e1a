"""Run DBN files through sinks: one file = one task, several files in parallel processes.

A task is :func:`engine.pipeline.process.process_file`: stream one source file as column blocks
and hand every block to each of its sinks, which are built inside the worker by *sink factories*
(picklable callables ``path -> FileSink``). A failing file never stops the others; a worker that
dies fails only the file it held and is replaced.

Processes (``jobs`` file workers, each paired with a helper process when a factory asks for one
through an ``offload`` attribute, see :mod:`engine.pipeline.offload`)::

    parent ── tasks ──► file worker 1: zstd + decode + convert ──slots──► helper 1 (threads)
       ▲                file worker 2: ...                      ──slots──► helper 2
       └─── progress events and outcomes ───────┘

One process model: workers and helpers are started by multiprocessing's *forkserver*, a clean
single-threaded process (Arrow's allocator is mimalloc there: jemalloc would start a
thread) that has imported only what they need (``engine.pipeline`` and the
factories' modules, :func:`preload`), so a child never inherits the parent's threads (tqdm,
pyarrow's pools) or open files, and starts in milliseconds. Each worker talks to the parent
over its own pipe, so a worker that dies cannot block the others. Children ignore SIGINT (the
parent stops them: one line on Ctrl-C, not a traceback per process) and die with their parent
(``PR_SET_PDEATHSIG``, then a ``getppid()`` check for a parent that died before it took effect).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import multiprocessing.connection
import os
import select
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

from engine.cli import Interrupted
from engine.dbn.metadata import DEFAULT_BLOCK_BYTES
from engine.pipeline.forkserver import context, preload
from engine.pipeline.offload import OffloadSpec, SlotChannel, helper_main, shared_slots
from engine.pipeline.process import FileOutcome, ProgressEvent, Report, process_file
from engine.pipeline.sinks import SinkFactory

__all__ = ["Reading", "child_setup", "preload", "run_pipeline"]


@dataclass(frozen=True)
class Reading:
    """How every file of a run is read (travels to the workers)."""

    symbols: frozenset[str] | None = None
    block_bytes: int = DEFAULT_BLOCK_BYTES
    skip_bad_records: bool = False


_context = context

MAX_STILLBORN = 3
"""Workers in a row that die before taking a file, after which the run stops instead of starting
more (a script without a ``__main__`` guard, or read from stdin, kills every worker at start-up)."""


def run_pipeline(
    paths: Sequence[str | os.PathLike[str]],
    factories: Sequence[SinkFactory],
    *,
    symbols: set[str] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    skip_bad_records: bool = False,
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
    skip_bad_records : bool
        Skip and count corrupt records instead of failing their file.
    jobs : int
        Files processed at once (each by a file worker, and its helper process if a sink asks for one).
    report : callable, optional
        Receives :class:`ProgressEvent` s in the calling process.
    inline : bool
        Run everything in this process, one file after the other (debugging, tiny inputs).

    Raises
    ------
    Interrupted
        On Ctrl-C or SIGTERM, once every worker is stopped (with how many files were done).
    """
    reading = Reading(frozenset(symbols) if symbols is not None else None, block_bytes, skip_bad_records)
    if inline or not paths:
        out: list[FileOutcome] = []
        try:
            for i, p in enumerate(paths):
                out.append(_process(p, factories, reading, i, report))
        except KeyboardInterrupt:  # the file's sinks aborted (process_file's finally)
            raise Interrupted(sum(o.ok for o in out), len(paths)) from None
        return out
    return _Pool(factories, reading, max(1, min(jobs, len(paths))), report).run(paths)


def _process(
    path: str | os.PathLike[str], factories: Sequence[SinkFactory], reading: Reading, index: int,
    report: Report | None,
) -> FileOutcome:  # fmt: skip
    symbols = set(reading.symbols) if reading.symbols is not None else None
    return process_file(
        path, factories, symbols=symbols, block_bytes=reading.block_bytes, index=index, report=report,
        skip_bad_records=reading.skip_bad_records,
    )  # fmt: skip


# -- children -----------------------------------------------------------------------------------------


def child_setup(run_pid: int) -> None:
    """Every child: ignore Ctrl-C (the run stops us), default SIGTERM, die with the run.

    The OS parent of a child is the forkserver, which outlives the run while any child lives
    (children hold its "alive" pipe), so ``PR_SET_PDEATHSIG`` alone is not enough: a watchdog
    thread waits on a pidfd of the run's process and ends the child the moment it exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the forkserver died before the request took effect
        os._exit(4)
    try:
        fd = os.pidfd_open(run_pid)
    except ProcessLookupError:  # the run is already gone
        os._exit(4)
    except OSError:  # no pidfd (old kernel): poll instead
        fd = -1
    threading.Thread(target=_watch_run, args=(run_pid, fd), name="run-watchdog", daemon=True).start()


def _watch_run(run_pid: int, fd: int) -> None:
    if fd >= 0:
        select.select([fd], [], [])  # readable once the process has exited
        os._exit(4)
    while True:
        try:
            os.kill(run_pid, 0)
        except ProcessLookupError:
            os._exit(4)
        time.sleep(1.0)


def _helper_main(conn: Connection, shm_name: str, spec: OffloadSpec, run_pid: int) -> None:
    child_setup(run_pid)
    shm = SharedMemory(name=shm_name)
    try:
        helper_main(conn, shm.buf, spec)
    finally:
        _release(shm)


def _release(shm: SharedMemory) -> None:
    with contextlib.suppress(BufferError):  # a view still alive at exit: the OS frees it anyway
        shm.close()


def _worker_main(
    conn: Connection,
    factories: Sequence[SinkFactory],
    reading: Reading,
    helper: tuple[Connection, str, OffloadSpec] | None,
    run_pid: int,
) -> None:
    """File worker process: take (index, path) tasks from its pipe until None; send events and outcomes back."""
    child_setup(run_pid)
    shm = SharedMemory(name=helper[1]) if helper is not None else None
    channel = SlotChannel(helper[0], shm.buf, helper[2]) if helper is not None and shm is not None else None
    if helper is not None:
        helper[2].install_channel(channel)
    code = 0
    try:
        while True:
            task = conn.recv()
            if task is None:
                break
            index, path = task
            conn.send(("start", index))
            conn.send(_process(path, factories, reading, index, conn.send))
            if channel is not None and channel.broken is not None:
                code = 3  # the pool starts a new worker and helper
                break
    except (EOFError, OSError):
        code = 4  # the parent is gone
    finally:
        if helper is not None:
            helper[2].install_channel(None)
            with contextlib.suppress(OSError):
                helper[0].send(None)
        channel = None
        if shm is not None:
            _release(shm)
    if code:
        os._exit(code)


# -- the parent's side ----------------------------------------------------------------------------------


def _exit_watchers(pids: Sequence[int]) -> dict[int, int]:
    """A pidfd per live process (readable once it has exited; -1 when pidfds are unavailable)."""
    out = {}
    for pid in pids:
        try:
            out[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        except OSError:
            out[pid] = -1
    return out


def _wait_gone(watch: dict[int, int], timeout: float) -> None:
    """Wait until every watched process has exited (or ``timeout``); close the pidfds."""
    deadline = time.monotonic() + timeout
    try:
        for pid, fd in watch.items():
            while time.monotonic() < deadline:
                if fd >= 0:
                    if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                        break
                else:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.05)
    finally:
        for fd in watch.values():
            if fd >= 0:
                os.close(fd)


@dataclass
class _Pair:
    worker: Any
    helper: Any
    conn: Connection
    shm: SharedMemory | None = None
    task: int | None = None
    started: bool = False  # the worker acknowledged its task
    served: bool = False  # it acknowledged a task once: it started up


class _Pool:
    """Start worker/helper pairs, hand out files, collect outcomes, replace dead pairs."""

    def __init__(
        self, factories: Sequence[SinkFactory], reading: Reading, jobs: int, report: Report | None
    ) -> None:
        self.ctx = _context()
        self.factories = list(factories)
        self.reading = reading
        self.jobs = jobs
        self.report = report
        self.offload: OffloadSpec | None = next(
            (o for o in (getattr(f, "offload", None) for f in factories) if o is not None), None
        )
        modules = {type(f).__module__ for f in self.factories}
        modules |= {m for f in self.factories for m in getattr(f, "modules", ())}
        if self.offload is not None:
            modules |= self.offload.modules()
        preload(m for m in modules if m and m != "__main__")
        self.pairs: list[_Pair] = []

    def _start_pair(self) -> None:
        helper = None
        helper_proc = None
        shm = None
        if self.offload is not None:
            shm = shared_slots(self.offload)
            mine, theirs = self.ctx.Pipe(duplex=True)
            helper_proc = self.ctx.Process(
                target=_helper_main, args=(theirs, shm.name, self.offload, os.getpid()), daemon=True
            )
            helper_proc.start()
            theirs.close()
            helper = (mine, shm.name, self.offload)
        parent_end, child_end = self.ctx.Pipe(duplex=True)
        worker = self.ctx.Process(
            target=_worker_main,
            args=(child_end, self.factories, self.reading, helper, os.getpid()),
            daemon=True,
        )
        worker.start()
        child_end.close()
        if helper is not None:
            helper[0].close()
        self.pairs.append(_Pair(worker, helper_proc, parent_end, shm))

    def run(self, paths: Sequence[str | os.PathLike[str]]) -> list[FileOutcome]:
        outcomes: dict[int, FileOutcome] = {}
        todo = list(range(len(paths)))[::-1]  # popped from the end: in order
        stillborn = 0  # workers in a row that died before taking a file
        try:
            for _ in range(self.jobs):
                self._start_pair()
            while len(outcomes) < len(paths):
                for pair in self.pairs:
                    if pair.task is None and todo:
                        pair.task = todo.pop()
                        with contextlib.suppress(OSError):  # it died already: its end of file comes next
                            pair.conn.send((pair.task, str(paths[pair.task])))
                ready = mp.connection.wait([p.conn for p in self.pairs], timeout=1.0)
                for pair in [p for p in self.pairs if p.conn in ready]:
                    try:
                        msg = pair.conn.recv()
                    except (EOFError, OSError):
                        if pair.task is not None and not pair.started:
                            todo.append(pair.task)  # it died before taking the file: hand it out again
                            pair.task = None
                        stillborn = 0 if pair.served else stillborn + 1
                        self._bury(pair, paths, outcomes)
                        if stillborn >= MAX_STILLBORN:  # workers that cannot start: stop, say so
                            self._fail_the_rest(paths, outcomes, pair.worker.exitcode)
                            break
                        if len(outcomes) + sum(p.task is not None for p in self.pairs) < len(paths):
                            self._start_pair()
                        continue
                    if isinstance(msg, FileOutcome):
                        outcomes[msg.index] = msg
                        pair.task = None
                        pair.started = False
                    elif isinstance(msg, tuple):  # ("start", index)
                        pair.started = pair.served = True
                        stillborn = 0
                    elif self.report is not None:
                        self.report(msg)
        except KeyboardInterrupt:
            self._kill()
            raise Interrupted(sum(o.ok for o in outcomes.values()), len(paths)) from None
        finally:
            self._stop()
        return [outcomes[i] for i in range(len(paths))]

    def _kill(self) -> None:
        """Interrupted: stop every worker and helper now (what they wrote is only temporary files).

        Returns once each is really gone: ``join`` can return early when the forkserver itself
        was stopped (SIGTERM to the process group), so the process ids are watched too.
        """
        procs = [p for pair in self.pairs for p in (pair.worker, pair.helper) if p is not None]
        pids = [p.pid for p in procs if p.pid is not None]
        watch = _exit_watchers(pids)
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        _wait_gone(watch, timeout=30.0)

    def _fail_the_rest(
        self, paths: Sequence[str | os.PathLike[str]], outcomes: dict[int, FileOutcome], code: int | None
    ) -> None:
        """Workers keep dying as they start (their error is on stderr): every file not done fails."""
        msg = (
            f"the file workers exit as they start ({MAX_STILLBORN} in a row, exit code {code}; their error is "
            'printed above). A script that runs the ingest must guard it with `if __name__ == "__main__":` '
            "and be a file: the workers are started by a forkserver that imports it"
        )
        for i, p in enumerate(paths):
            if i not in outcomes:
                outcomes[i] = FileOutcome(str(p), i, message=f"{p}: {msg}")
                if self.report is not None:
                    self.report(ProgressEvent(i, str(p), 0, 0, 0, done=True, ok=False))

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
                pair.helper.join(timeout=5)
        self._free(pair)
        if pair.task is not None and pair.task not in outcomes:
            p = str(paths[pair.task])
            msg = f"{p}: the worker process died (exit code {pair.worker.exitcode}) while converting it"
            outcomes[pair.task] = FileOutcome(p, pair.task, message=msg)
            if self.report is not None:
                self.report(ProgressEvent(pair.task, p, 0, 0, 0, done=True, ok=False))

    @staticmethod
    def _free(pair: _Pair) -> None:
        if pair.shm is not None:
            with contextlib.suppress(FileNotFoundError):
                pair.shm.unlink()
            _release(pair.shm)
            pair.shm = None

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
            self._free(pair)
        self.pairs.clear()
