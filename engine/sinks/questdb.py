"""The QuestDB sink: MBO column blocks -> the ``mbo_ticks`` table, verified and resumable.

- :class:`QuestDBSink` is a :class:`~engine.sinks.base.FileSink`: ``write`` numbers the rows
  (``day_seq``), counts them and queues them to a sender thread, so decoding overlaps sending;
  ``close`` waits for the sends, for the WAL apply, checks with ``count()`` that the table holds
  exactly the file's rows and writes the file's completion record to ``ingest_log``.
- :class:`QuestDBSinkFactory` builds one in a worker process (picklable), for
  :func:`engine.pipeline.run_pipeline` when ``--parquet`` and ``--questdb`` share one decode.
- :func:`ingest_questdb` loads files on its own: several at once in processes (``--jobs`` /
  ``QDB_CONCURRENCY``), each with its own sender, skipping files already complete.
- :func:`add_questdb_arguments` and :func:`questdb_options_from_args` (from
  :mod:`engine.questdb.cli`, re-exported here) wire the CLI flags
  (``--questdb [URL] --protocol --partition --table``) into ``engine.ingest``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.columns import ColumnBlock, FileColumns, iter_column_blocks
from engine.dbn import DEFAULT_BLOCK_BYTES
from engine.errors import DatapairError, SinkError
from engine.inputs import find_inputs
from engine.progress import ProgressBoard, RateClock, show_progress, summary_line
from engine.questdb.cli import add_questdb_arguments, questdb_options_from_args
from engine.questdb.conf import QuestDBOptions
from engine.questdb.ddl import ensure_tables
from engine.questdb.http import Backoff, QuestDBHttp
from engine.questdb.keys import DaySequencer, FileStats
from engine.questdb.protocols import detect_protocol, open_sender
from engine.questdb.resume import (
    CountMismatchError,
    file_key,
    filter_key,
    find_completion,
    verify_counts,
    wait_wal_applied,
    write_completion,
)
from engine.sinks.base import FileSink, SinkResult

__all__ = [
    "QuestDBFileResult",
    "QuestDBOptions",
    "QuestDBSink",
    "QuestDBSinkFactory",
    "QuestDBSummary",
    "add_questdb_arguments",
    "ingest_questdb",
    "prepare_server",
    "questdb_options_from_args",
    "questdb_sink_factory",
]

_PREPARED: dict[QuestDBOptions, QuestDBOptions] = {}
_STOP = object()


def _http(options: QuestDBOptions) -> QuestDBHttp:
    return QuestDBHttp(options.address, backoff=Backoff(timeout=options.retry_timeout_ms / 1000.0))


def prepare_server(options: QuestDBOptions) -> QuestDBOptions:
    """Check the server answers, create or check the tables, resolve ``protocol=auto``.

    Done once per process and options; returns the options with the protocol resolved.

    Raises
    ------
    StoreUnavailableError
        The server does not answer.
    SinkError
        The existing table does not match (every difference listed).
    """
    done = _PREPARED.get(options)
    if done is not None:
        return done
    http = _http(options)
    http.ping()
    ensure_tables(http, options.table, options.partition, options.log_table)
    protocol = options.protocol
    if protocol == "auto":
        protocol = detect_protocol(options.address)
    resolved = options.with_protocol(protocol)
    _PREPARED[options] = resolved
    _PREPARED[resolved] = resolved
    return resolved


class QuestDBSink(FileSink):
    """Loads the column blocks of one source file into QuestDB (see the module doc).

    Parameters
    ----------
    path : path-like
        The source DBN file (its identity keys the completion record).
    options : QuestDBOptions
        Server, table, protocol and batching.
    symbols : set of str, optional
        The symbol filter the blocks were read with (recorded; part of the completion key).

    After construction ``skipped`` is True when the file is already complete in the table
    (and ``force`` is off): writes are then counted and dropped, and ``close`` reports it.
    """

    def __init__(
        self, path: str | os.PathLike[str], options: QuestDBOptions, symbols: set[str] | None = None
    ) -> None:
        self.options = prepare_server(options)
        self.path = Path(path)
        self.symbols = set(symbols) if symbols is not None else None
        self.http = _http(self.options)
        self.file_key = file_key(self.path)
        self.filter_key = filter_key(self.symbols)
        self.skipped = False
        self.previous_rows = 0
        if not self.options.force:
            comp = find_completion(self.http, self.options, self.file_key, self.filter_key)
            if comp is not None:
                _, diffs = verify_counts(self.http, self.options.table, comp, self.options.verify_timeout_s)
                self.skipped = not diffs
                self.previous_rows = comp.rows
        self.confirmed = 0
        """Rows ``count()`` showed after ``close`` (exactly the file's rows, or close raised)."""
        self.stats = FileStats()
        self._sequencer = DaySequencer()
        self._fed = 0
        self._t0 = time.perf_counter()
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self.send_stats: Any = None

    # -- FileSink ------------------------------------------------------------------------------
    def write(self, block: ColumnBlock) -> None:
        n = len(block)
        self._fed += n
        if self.skipped or n == 0:
            return
        self._raise_if_failed()
        seq = self._sequencer.number(block)
        blk = ColumnBlock({**block.arrays, "day_seq": seq}, block.symbols)
        self.stats.add(blk)
        if self._thread is None:
            self._start(n)
        assert self._queue is not None
        while True:
            try:
                self._queue.put(blk, timeout=0.2)
                return
            except queue.Full:
                self._raise_if_failed()

    def close(self) -> SinkResult:
        if self.skipped:
            return SinkResult(rows=self._fed, outputs=[f"questdb:{self.options.table}"], skipped=True)
        try:
            self._join()
            if self._error is not None:
                raise self._error
            o = self.options
            confirmed, diffs = verify_counts(self.http, o.table, self.stats, o.verify_timeout_s)
            if diffs:
                more = f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""
                msg = (
                    f"{self.path}: after the load, table {o.table!r} does not hold exactly the file's "
                    f"{self.stats.rows:,} rows: " + "; ".join(diffs[:5]) + more
                )
                raise CountMismatchError(msg)
            self.confirmed = confirmed
            if self.stats.rows:
                write_completion(o, self.path, self.file_key, self.filter_key, self.symbols, self.stats, o.protocol,
                                 time.perf_counter() - self._t0)  # fmt: skip
                wait_wal_applied(self.http, o.log_table, o.verify_timeout_s)
        except BaseException:
            self.abort()
            raise
        return SinkResult(
            rows=self.stats.rows,
            rows_by_day=dict(self.stats.rows_by_day),
            outputs=[f"questdb:{self.options.table}"],
        )

    def abort(self) -> None:
        """Stop sending; write no completion record (a rerun loads the file again, exactly)."""
        self._abort.set()
        if self._queue is not None:
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
        self._join(timeout=30.0)

    # -- sender thread -------------------------------------------------------------------------
    def _start(self, first_rows: int) -> None:
        o = self.options
        depth = 4
        if o.protocol == "qwp":  # let the next bulk load's rows be decoded while this one is sent
            depth = max(4, -(-o.qwp_rows // max(first_rows, 1)) + 2)
        self._queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name=f"questdb-send-{self.path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._queue is not None
        o = self.options
        try:
            sender = open_sender(o.protocol, o.address, o, o.table)
            self.send_stats = sender.stats
            try:
                while True:
                    item = self._queue.get()
                    if item is _STOP or self._abort.is_set():
                        break
                    sender.send(item)
                if not self._abort.is_set():
                    sender.finish()
            finally:
                sender.close()
        except BaseException as exc:
            self._error = (
                exc
                if isinstance(exc, DatapairError)
                else SinkError(f"{self.path}: {type(exc).__name__}: {exc}")
            )
            try:  # unblock a producer waiting on a full queue
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass

    def _join(self, timeout: float | None = None) -> None:
        if self._thread is None:
            return
        assert self._queue is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.2)
                break
            except queue.Full:
                if deadline is not None and time.monotonic() > deadline:
                    return
        self._thread.join(timeout)
        self._thread = None

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


@dataclass(frozen=True)
class QuestDBSinkFactory:
    """Picklable factory of the :class:`QuestDBSink` of one source file (built in the worker)."""

    options: QuestDBOptions
    symbols: tuple[str, ...] | None = None

    def __call__(self, path: Path) -> FileSink:
        return QuestDBSink(path, self.options, set(self.symbols) if self.symbols is not None else None)


def questdb_sink_factory(options: QuestDBOptions, symbols: set[str] | None = None) -> QuestDBSinkFactory:
    """Prepare the server once in this process (tables, protocol) and return the workers' factory."""
    return QuestDBSinkFactory(
        prepare_server(options), tuple(sorted(symbols)) if symbols is not None else None
    )


@dataclass
class QuestDBFileResult:
    """What happened to one file."""

    path: str
    ok: bool = False
    skipped: bool = False
    rows: int = 0
    """Rows confirmed in the table (for a skipped file: those of its completion record)."""
    nbytes: int = 0
    seconds: float = 0.0
    message: str = ""
    attempts: int = 0


@dataclass
class QuestDBSummary:
    """What :func:`ingest_questdb` did; ``rows`` are rows confirmed visible by ``count()``."""

    files: int = 0
    rows: int = 0
    seconds: float = 0.0
    bytes: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    protocol: str = ""
    table: str = ""
    results: list[QuestDBFileResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def line(self) -> str:
        """The closing summary line."""
        return summary_line(
            self.rows, self.seconds, nbytes=self.bytes, files=self.files, skipped=self.skipped,
            failed=len(self.failed), label=f"questdb {self.table} via {self.protocol}",
        )  # fmt: skip


Report = Callable[[int, str, int, int, int, bool], None]


def ingest_file(
    path: str | os.PathLike[str],
    options: QuestDBOptions,
    symbols: set[str] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    *,
    index: int = 0,
    report: Report | None = None,
) -> QuestDBFileResult:
    """Load one file (decode in this thread, send in the sink's thread); never raises for bad input."""
    p = Path(path)
    res = QuestDBFileResult(str(p))
    t0 = time.perf_counter()
    try:
        res.nbytes = p.stat().st_size
        opts = options
        attempts = 2 if options.protocol == "ilp-tcp" else 1  # TCP has no acks: one more full pass
        for attempt in range(attempts):
            res.attempts = attempt + 1
            sink = QuestDBSink(p, opts, symbols)
            if sink.skipped:
                res.ok, res.skipped, res.rows = True, True, sink.previous_rows
                return res
            state: list[FileColumns] = []
            last = 0.0
            try:
                for block in iter_column_blocks(p, block_bytes, symbols, state):
                    sink.write(block)
                    now = time.perf_counter()
                    if report is not None and state and now - last > 0.1:
                        last = now
                        r = state[0].reader
                        report(index, str(p), res.nbytes, r.bytes_read, r.records_read, False)
                sink.close()
            except CountMismatchError:
                sink.abort()
                if attempt + 1 < attempts:
                    opts = replace(options, force=True)
                    continue
                raise
            except BaseException:
                sink.abort()
                raise
            res.ok, res.rows = True, sink.confirmed
            break
    except DatapairError as exc:
        res.message = str(exc)
    except (OSError, ValueError) as exc:
        res.message = f"{p}: {exc}"
    except Exception as exc:  # a bug: keep the other files going, show where
        res.message = f"{p}: unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    finally:
        res.seconds = time.perf_counter() - t0
        if report is not None:
            report(index, str(p), res.nbytes, res.nbytes if res.ok else 0, res.rows, True)
    return res


_WORKER_QUEUE: Any = None


def _init_worker(q: Any) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = q


def _worker(
    path: str, options: QuestDBOptions, symbols: set[str] | None, block_bytes: int, index: int
) -> QuestDBFileResult:
    q = _WORKER_QUEUE

    def report(i: int, p: str, total: int, done: int, records: int, finished: bool) -> None:
        if q is not None:
            q.put((i, p, total, done, records, finished))

    return ingest_file(path, options, symbols, block_bytes, index=index, report=report)


def ingest_questdb(
    paths: Sequence[str | os.PathLike[str]],
    *,
    url: str | None = None,
    protocol: str = "auto",
    partition: str = "day",
    table: str = "mbo_ticks",
    symbols: set[str] | None = None,
    jobs: int | None = None,
    force: bool = False,
    quiet: bool = True,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    options: QuestDBOptions | None = None,
) -> QuestDBSummary:
    """Load DBN MBO files into QuestDB, exactly once each, and confirm the rows with ``count()``.

    Parameters
    ----------
    paths : sequence of path-like
        DBN files (``.dbn`` / ``.dbn.zst``) or directories of them.
    url : str, optional
        Server (URL, host:port or conf string); default ``QUESTDB_URL`` or http://localhost:9000.
    protocol : str
        ``auto`` (QWP when the server offers it, else ILP/HTTP), ``qwp``, ``ilp-http``, ``ilp-tcp``.
    partition : str
        ``day`` or ``hour``: partitioning of the table when it has to be created.
    table : str
        Target table (created when missing, refused when its schema differs).
    symbols : set of str, optional
        Keep only these symbols.
    jobs : int, optional
        Files loaded at once (default ``QDB_CONCURRENCY`` or 2), each in its own process.
    force : bool
        Load files even when their completion record says they are complete.
    quiet : bool
        No progress bars (drawn only on a TTY anyway).
    block_bytes : int
        Decompressed bytes per read block.
    options : QuestDBOptions, optional
        Every setting at once (then ``url`` ... ``force`` are ignored).

    Returns
    -------
    QuestDBSummary
        Never raises for a bad input file: it is listed in ``failed``. Raises
        :class:`~engine.errors.DatapairError` when the server or the table cannot be used at all.
    """
    clock = RateClock()
    opts = options or QuestDBOptions.from_env(
        url=url, protocol=protocol, partition=partition, table=table, force=force
    )
    inputs = find_inputs(paths)
    opts = prepare_server(opts)
    summary = QuestDBSummary(files=len(inputs), protocol=opts.protocol, table=opts.table)
    n_jobs = max(1, min(jobs or opts.concurrency or 2, len(inputs) or 1))
    board = ProgressBoard(show_progress(quiet))

    def report(i: int, p: str, total: int, done: int, records: int, finished: bool) -> None:
        if finished:
            board.finish(i)
            return
        board.start(i, Path(p).name, total)
        board.update(i, done, records)

    results: list[QuestDBFileResult | None] = [None] * len(inputs)
    with board:
        if n_jobs == 1:
            for i, p in enumerate(inputs):
                results[i] = ingest_file(p, opts, symbols, block_bytes, index=i, report=report)
        else:
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=_init_worker, initargs=(q,)) as pool:
                futs: dict[Future[QuestDBFileResult], int] = {
                    pool.submit(_worker, str(p), opts, symbols, block_bytes, i): i
                    for i, p in enumerate(inputs)
                }
                pending = set(futs)
                while pending:
                    done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    _drain(q, report)
                    for f in done:
                        i = futs[f]
                        try:
                            results[i] = f.result()
                        except Exception as exc:  # a worker died (e.g. killed): report, go on
                            results[i] = QuestDBFileResult(
                                str(inputs[i]), message=f"{inputs[i]}: worker failed: {exc}"
                            )
                _drain(q, report)
    for r in results:
        assert r is not None
        summary.results.append(r)
        if not r.ok:
            summary.failed.append((r.path, r.message))
        elif r.skipped:
            summary.skipped += 1
        else:
            summary.rows += r.rows
            summary.bytes += r.nbytes
    summary.seconds = clock.seconds
    return summary


def _drain(q: Any, report: Report) -> None:
    while True:
        try:
            ev = q.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return
        report(*ev)
