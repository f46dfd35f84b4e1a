"""Run DBN files through sinks: one file = one task, several files in parallel processes.

A task streams one source file as column blocks (:func:`engine.columns.iter_column_blocks`) and
hands every block to each of its sinks, which are built inside the worker by *sink factories*
(picklable callables ``path -> FileSink``): the Parquet lake today, QuestDB tomorrow, from the
same decoded blocks. A task ends with every sink closed (success) or every sink aborted (failure:
nothing half-written); a failing file never stops the others.

Processes (``jobs`` pairs, forked from the caller)::

    parent ── tasks ──► file worker 1: zstd + decode + convert + sort ──slots──► encoder 1 (threads)
       ▲                file worker 2: ...                            ──slots──► encoder 2
       └─── progress events and outcomes ─────────┘

A file worker decompresses, decodes and sorts stripes into *slots*: an anonymous shared memory
mapping it shares with its encoder process, which encodes each stripe as a Parquet part on its
thread(s) (:class:`engine.sinks.parquet.StripeEncoder`); only slot numbers and small job records
cross the pipe. So decompression and decoding overlap with Parquet encoding, and several files
run at once. A factory that wants an encoder says so with an ``encoder_options`` attribute.
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
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from engine.columns import FileColumns, iter_column_blocks
from engine.dbn import DEFAULT_BLOCK_BYTES
from engine.errors import DatapairError, SinkError
from engine.sinks.base import FileSink
from engine.sinks.parquet import (
    ROW_DTYPES,
    ParquetOptions,
    StripeEncoder,
    StripeJob,
    encode_stripe,
    set_worker_encoder,
)

__all__ = [
    "FileOutcome",
    "ProcessEncoder",
    "ProgressEvent",
    "SinkFactory",
    "process_file",
    "run_pipeline",
    "slot_views",
]


class SinkFactory(Protocol):
    """Builds the sink of one source file, inside the worker process (must be picklable)."""

    def __call__(self, path: Path) -> FileSink: ...


@dataclass
class FileOutcome:
    """What happened to one source file."""

    path: str
    index: int = 0
    ok: bool = False
    rows: int = 0
    """Rows the sinks took (after the symbol filter)."""
    records: int = 0
    """MBO records read from the file."""
    nbytes: int = 0
    """Size of the source file."""
    seconds: float = 0.0
    rows_by_day: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    message: str = ""
    """Why it failed (empty on success)."""
    unmapped: int = 0
    """Records whose instrument_id had no symbol mapping (their symbol is the id as text)."""


@dataclass
class ProgressEvent:
    """A worker's report on task ``index``: bytes of the source read so far and records decoded."""

    index: int
    path: str
    total_bytes: int
    bytes_done: int
    records: int
    done: bool = False
    ok: bool = True
    """With ``done``: whether the file succeeded."""
    seconds: float = 0.0
    """Time since the worker opened the file."""


Report = Callable[[ProgressEvent], None]


def process_file(
    path: str | os.PathLike[str],
    factories: Sequence[SinkFactory],
    *,
    symbols: set[str] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    index: int = 0,
    report: Report | None = None,
) -> FileOutcome:
    """Stream one DBN file into every sink the factories build; never raises for bad input.

    Returns a :class:`FileOutcome` whose ``message`` explains a failure (a
    :class:`~engine.errors.DatapairError` message, or the exception for unexpected errors).
    """
    p = Path(path)
    t0 = time.perf_counter()
    out = FileOutcome(str(p), index)
    sinks: list[FileSink] = []
    state: list[FileColumns] = []
    try:
        out.nbytes = p.stat().st_size
        sinks = [f(p) for f in factories]
        last = 0.0
        for block in iter_column_blocks(p, block_bytes, symbols, state):
            for s in sinks:
                s.write(block)
            out.rows += len(block)
            if report is not None and state:
                now = time.perf_counter()
                if now - last > 0.1:
                    last = now
                    reader = state[0].reader
                    ev = ProgressEvent(index, str(p), out.nbytes, reader.bytes_read, reader.records_read)
                    ev.seconds = now - t0
                    report(ev)
        results = []
        for i, s in enumerate(sinks):
            try:
                results.append(s.close())
            except BaseException:
                for other in sinks[i + 1 :]:
                    other.abort()
                raise
        sinks = []
        out.records = state[0].reader.records_read if state else 0
        out.unmapped = state[0].symbology.unmapped_records if state else 0
        done = [r for r in results if not r.skipped]  # a skipped sink already held the file
        out.rows_by_day = dict(done[0].rows_by_day) if done else {}
        out.outputs = [o for r in done for o in r.outputs]
        for r in done:
            if r.rows != out.rows:
                msg = f"{p}: a sink took {r.rows} rows, the file gave {out.rows}"
                raise DatapairError(msg)
        out.ok = True
    except DatapairError as exc:
        out.message = str(exc)
    except (OSError, ValueError) as exc:
        out.message = f"{p}: {exc}"
    except Exception as exc:  # a bug: keep the other files going, show where
        out.message = f"{p}: unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    finally:
        for s in sinks:
            s.abort()
        out.seconds = time.perf_counter() - t0
        if report is not None:
            done_bytes = out.nbytes if out.ok else 0
            records = out.records or out.rows
            report(ProgressEvent(index, str(p), out.nbytes, done_bytes, records, True, out.ok, out.seconds))
    return out


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
        Files processed at once (each by a file worker and its encoder process).
    report : callable, optional
        Receives :class:`ProgressEvent` s in the calling process.
    inline : bool
        Run everything in this process, one file after the other (debugging, tiny inputs).
    """
    if inline or not paths:
        return [
            process_file(p, factories, symbols=symbols, block_bytes=block_bytes, index=i, report=report)
            for i, p in enumerate(paths)
        ]
    return _Pool(factories, symbols, block_bytes, max(1, min(jobs, len(paths))), report).run(paths)


# -- encoder processes -------------------------------------------------------------------------------


def _slot_layout(options: ParquetOptions) -> tuple[dict[str, int], int]:
    """Byte offset of each column inside a slot (widest first, 64-byte aligned), and the slot size."""
    offsets = {}
    pos = 0
    for name, dt in sorted(ROW_DTYPES.items(), key=lambda kv: -kv[1].itemsize):
        offsets[name] = pos
        pos += -(-(dt.itemsize * options.stripe_rows) // 64) * 64
    return offsets, pos


def slot_views(buf: Any, options: ParquetOptions) -> list[dict[str, np.ndarray]]:
    """The stripe slots inside a shared buffer of ``options.slots`` slots, as column arrays."""
    offsets, size = _slot_layout(options)
    return [
        {
            name: np.frombuffer(buf, dtype=dt, count=options.stripe_rows, offset=i * size + offsets[name])
            for name, dt in ROW_DTYPES.items()
        }
        for i in range(options.slots)
    ]


def _shared_slots(options: ParquetOptions) -> mmap.mmap:
    """Anonymous shared memory for the slots (inherited by forked children; pages are touched lazily)."""
    return mmap.mmap(-1, max(_slot_layout(options)[1] * options.slots, 1))


class ProcessEncoder(StripeEncoder):
    """The file worker's side of an encoder process: slots in shared memory, jobs over a pipe."""

    def __init__(self, conn: Connection, buf: mmap.mmap, options: ParquetOptions) -> None:
        self.conn = conn
        self.options = options
        self.stripe_rows = options.stripe_rows
        self._slots = slot_views(buf, options)
        self._free = list(range(len(self._slots)))
        self._busy: dict[int, tuple[int, str]] = {}  # seq -> (slot, part)
        self.broken: str | None = None

    def submit(self, slot: int, job: StripeJob) -> None:
        if self.broken is None:
            try:
                self.conn.send((slot, job))
            except (OSError, EOFError) as exc:
                self.broken = f"the Parquet encoder process is gone ({exc})"
        if self.broken is not None:
            self._free.append(slot)
            raise SinkError(self.broken)
        self._busy[job.seq] = (slot, job.part)

    def completed(self, block: bool) -> list[tuple[int, str, str | None]]:
        out: list[tuple[int, str, str | None]] = []
        try:
            while self._busy and self.conn.poll(None if block and not out else 0):
                seq, part, error = self.conn.recv()
                self._free.append(self._busy.pop(seq)[0])
                out.append((seq, part, error))
        except (OSError, EOFError):
            self.broken = "the Parquet encoder process died"
        if self.broken is not None:  # every job in flight is lost
            for seq, (slot, part) in self._busy.items():
                self._free.append(slot)
                out.append((seq, part, self.broken))
            self._busy.clear()
        return out

    def close(self) -> None:
        """Nothing: the encoder process lives as long as its file worker."""


def _encoder_main(conn: Connection, other_end: Connection, buf: mmap.mmap, options: ParquetOptions) -> None:
    """Encoder process: encode the stripes the file worker names (``options.encode_threads`` threads)."""
    _die_with_parent()
    other_end.close()  # so the pipe reports EOF when the file worker dies
    slots = slot_views(buf, options)
    lock = threading.Lock()

    def encode(slot: int, job: StripeJob) -> None:
        try:
            encode_stripe(slots[slot], job, job.options or options)
            error = None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        with lock, contextlib.suppress(OSError):
            conn.send((job.seq, job.part, error))
        pa.default_memory_pool().release_unused()  # keep the encoder's footprint flat between stripes

    with ThreadPoolExecutor(max(options.encode_threads, 1), thread_name_prefix="parquet-encode") as pool:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            pool.submit(encode, *msg)


# -- file workers ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (no orphans finishing a killed run)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker_main(
    conn: Connection,
    factories: Sequence[SinkFactory],
    symbols: set[str] | None,
    block_bytes: int,
    enc: tuple[Connection, mmap.mmap, ParquetOptions] | None,
) -> None:
    """File worker process: take (index, path) tasks from its pipe until None; send events and outcomes back.

    Each worker talks to the parent over its own pipe (no lock shared with other workers, so a
    worker that dies cannot block the others).
    """
    _die_with_parent()
    encoder = ProcessEncoder(*enc) if enc is not None else None
    set_worker_encoder(encoder)
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
            if encoder is not None and encoder.broken is not None:
                code = 3  # the pool starts a new worker and encoder
                break
    except (EOFError, OSError):
        code = 4  # the parent is gone
    finally:
        if enc is not None:
            with contextlib.suppress(OSError):
                enc[0].send(None)
    if code:
        os._exit(code)


@dataclass
class _Pair:
    worker: Any
    encoder: Any
    conn: Connection
    task: int | None = None
    started: bool = False  # the worker acknowledged its task


class _Pool:
    """The parent's side: start worker/encoder pairs, hand out files, collect outcomes, replace dead pairs."""

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
        self.enc_options: ParquetOptions | None = next(
            (o for o in (getattr(f, "encoder_options", None) for f in factories) if o is not None), None
        )
        self.pairs: list[_Pair] = []

    def _start_pair(self) -> None:
        enc = None
        encoder = None
        if self.enc_options is not None:
            buf = _shared_slots(self.enc_options)
            mine, theirs = self.ctx.Pipe(duplex=True)
            encoder = self.ctx.Process(
                target=_encoder_main, args=(theirs, mine, buf, self.enc_options), daemon=True
            )
            encoder.start()
            theirs.close()
            enc = (mine, buf, self.enc_options)
        parent_end, child_end = self.ctx.Pipe(duplex=True)
        args = (child_end, self.factories, self.symbols, self.block_bytes, enc)
        worker = self.ctx.Process(target=_worker_main, args=args, daemon=True)
        worker.start()
        child_end.close()
        if enc is not None:
            enc[0].close()
            enc[1].close()
        self.pairs.append(_Pair(worker, encoder, parent_end))

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
        finally:
            self._stop()
            gc.unfreeze()
        return [outcomes[i] for i in range(len(paths))]

    def _bury(
        self, pair: _Pair, paths: Sequence[str | os.PathLike[str]], outcomes: dict[int, FileOutcome]
    ) -> None:
        """A worker died: fail the file it held and stop its encoder."""
        self.pairs.remove(pair)
        pair.conn.close()
        pair.worker.join(timeout=5)
        if pair.encoder is not None:
            pair.encoder.join(timeout=5)
            if pair.encoder.is_alive():
                pair.encoder.terminate()
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
            for proc in (pair.worker, pair.encoder):
                if proc is None:
                    continue
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)
            pair.conn.close()
        self.pairs.clear()
