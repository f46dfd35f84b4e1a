"""The QuestDB sink: MBO column blocks -> the ``mbo_ticks`` table, verified and resumable.

- :class:`QuestDBSink` is a :class:`~engine.pipeline.sinks.FileSink`: ``write`` numbers the rows
  (``day_seq``), counts them and queues them to a sender thread, so decoding overlaps sending;
  ``close`` waits for the sends, for the WAL apply, checks with ``count()`` that the table holds
  exactly the file's rows and writes the file's completion record to ``ingest_log``.
- :class:`QuestDBSinkFactory` builds one in a worker process (picklable), for
  :func:`engine.pipeline.pool.run_pipeline` when ``--parquet`` and ``--questdb`` share one decode.

Loading files on their own (``--questdb`` without ``--parquet``) is :mod:`engine.questdb.ingest`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.dbn.columns import ColumnBlock
from engine.errors import DatapairError, SinkError
from engine.pipeline.sinks import FileSink, SinkResult
from engine.questdb.conf import QuestDBOptions, ServerAddress
from engine.questdb.ddl import ensure_tables
from engine.questdb.http import Backoff, QuestDBHttp
from engine.questdb.ilp import IlpSender
from engine.questdb.keys import DaySequencer, FileStats
from engine.questdb.protocols import QwpSender, detect_protocol
from engine.questdb.resume import (
    CountMismatchError,
    file_key,
    filter_key,
    find_completion,
    verify_counts,
    write_completion,
)
from engine.stages import stage

__all__ = ["QuestDBSink", "QuestDBSinkFactory", "http_client", "open_sender", "prepare_server"]

_PREPARED: dict[QuestDBOptions, QuestDBOptions] = {}
_STOP = object()


def http_client(options: QuestDBOptions) -> QuestDBHttp:
    """The ``/exec`` client of ``options``' server, retrying for ``QDB_RETRY_TIMEOUT``."""
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
    http = http_client(options)
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
        self.http = http_client(self.options)
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
        with stage("number"):
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
            with stage("wait"):
                self._join()
            if self._error is not None:
                raise self._error
            o = self.options
            # ILP/TCP has no acks: rows may still be arriving, so a short count is polled until it is
            # complete, unless the sender saw its connection fail (rows in flight are then lost and
            # the caller's second pass sends the file again at once).
            retried = self.send_stats is not None and self.send_stats.retries > 0
            settle = o.protocol == "ilp-tcp" and not retried
            with stage("verify"):
                confirmed, diffs = verify_counts(
                    self.http, o.table, self.stats, o.verify_timeout_s, settle=settle
                )
            if diffs:
                more = f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""
                msg = (
                    f"{self.path}: after the load, table {o.table!r} does not hold exactly the file's "
                    f"{self.stats.rows:,} rows: " + "; ".join(diffs[:5]) + more
                )
                raise CountMismatchError(msg)
            self.confirmed = confirmed
            if self.stats.rows:  # the ingest_log record (committed; find_completion waits for its apply)
                write_completion(o, self.path, self.file_key, self.filter_key, self.symbols, self.stats, o.protocol,
                                 time.perf_counter() - self._t0)  # fmt: skip
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
                    with stage("send"):
                        sender.send(item)
                if not self._abort.is_set():
                    with stage("send"):
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


def open_sender(
    protocol: str, address: ServerAddress, options: QuestDBOptions, table: str
) -> IlpSender | QwpSender:
    """The sender of a resolved protocol (``qwp``, ``ilp-http`` or ``ilp-tcp``)."""
    if protocol == "qwp":
        return QwpSender(address, options, table)
    if protocol == "ilp-http":
        return IlpSender(address, options, table, "http")
    if protocol == "ilp-tcp":
        return IlpSender(address, options, table, "tcp")
    msg = f"protocol {protocol!r} is not resolved (expected qwp, ilp-http or ilp-tcp)"
    raise ValueError(msg)


@dataclass(frozen=True)
class QuestDBSinkFactory:
    """Picklable factory of the :class:`QuestDBSink` of one source file (built in the worker)."""

    options: QuestDBOptions
    symbols: tuple[str, ...] | None = None

    def __call__(self, path: Path) -> FileSink:
        return QuestDBSink(path, self.options, set(self.symbols) if self.symbols is not None else None)
