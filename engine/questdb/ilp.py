"""ILP (InfluxDB line protocol) into QuestDB through the official client: over HTTP or TCP.

:class:`IlpSender` serializes rows with the client's ``Buffer.dataframe`` from a pandas frame
whose columns are views of the NumPy arrays (:func:`~engine.questdb.protocols.ilp_frame`), in
requests of at most ``QDB_FLUSH_ROWS`` rows and ``QDB_BATCH_BYTES`` bytes (:class:`Batcher`).
Over HTTP each request is one transaction, and ``QDB_ILP_CONNECTIONS`` of them are in flight at
once; over TCP there is no answer, and the load is confirmed by ``count()`` afterwards.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import questdb

from engine.dbn.columns import ColumnBlock
from engine.errors import SinkError
from engine.questdb.conf import QuestDBOptions, ServerAddress
from engine.questdb.http import Backoff, retry
from engine.questdb.protocols import (
    SYMBOL_COLUMNS,
    SendStats,
    concat_blocks,
    ilp_frame,
    is_transient,
    quiet_reconnect_warning,
)

__all__ = ["Batcher", "IlpSender"]


class Batcher:
    """Cuts rows into requests of at most ``flush_rows`` rows and ``batch_bytes`` bytes.

    The bytes a row takes are known only once serialized, so the batcher keeps an estimate per
    row, serializes a candidate batch, and if it came out too big, serializes fewer rows again
    (a single row larger than ``batch_bytes`` is sent alone). Every row is sent once, in order.
    """

    def __init__(self, flush_rows: int, batch_bytes: int, row_bytes_guess: float = 300.0) -> None:
        if flush_rows < 1 or batch_bytes < 1:
            msg = f"flush_rows and batch_bytes must be positive, got {flush_rows}, {batch_bytes}"
            raise ValueError(msg)
        self.flush_rows = flush_rows
        self.batch_bytes = batch_bytes
        self.row_bytes = float(row_bytes_guess)
        self.reserializations = 0

    def target_rows(self) -> int:
        """Rows the next batch aims at."""
        by_bytes = int(self.batch_bytes * 0.97 / max(self.row_bytes, 1.0))
        return max(1, min(self.flush_rows, by_bytes))

    def batches(
        self, n: int, serialize: Callable[[int, int], int], final: bool = True
    ) -> Iterator[tuple[int, int, int]]:
        """Yield ``(lo, hi, nbytes)`` for rows ``[lo, hi)`` of ``n``, after ``serialize(lo, hi)``.

        ``serialize(lo, hi)`` must replace the pending request with exactly those rows and
        return its size in bytes; the caller sends it when the batch is yielded. With
        ``final=False`` a tail shorter than a full batch is left unsent: :attr:`consumed` says
        how many rows were.
        """
        lo = 0
        self.consumed = 0
        while lo < n:
            want = self.target_rows()
            if n - lo < want and not final:
                break
            hi = min(n, lo + want)
            size = serialize(lo, hi)
            while size > self.batch_bytes and hi - lo > 1:
                self.reserializations += 1
                per_row = size / (hi - lo)
                hi = lo + max(1, min(hi - lo - 1, int(self.batch_bytes * 0.97 / per_row)))
                size = serialize(lo, hi)
            self.row_bytes = max(size / (hi - lo), 0.5 * self.row_bytes + 0.5 * size / (hi - lo))
            yield lo, hi, size
            lo = hi
            self.consumed = lo

    consumed = 0


class IlpSender:
    """ILP over HTTP (``kind='http'``) or TCP (``kind='tcp'``): batches bounded by rows and bytes.

    Requests are flushed from a small thread pool, one connection per thread: over HTTP up to
    ``QDB_ILP_CONNECTIONS`` requests (default 2) are in flight at once, each its own transaction,
    while the calling thread serializes the next batch into a spare buffer. The server parses
    and commits concurrent requests on its own threads: two connections took a prebuilt 1M-row
    frame from 0.23-0.30M to 0.38-0.46M rows/s on this 2-core box (``bench_ingest_questdb.py``).
    ILP/TCP keeps one connection (no answers; the load is confirmed by ``count()``).

    A request that fails for good stops the load: no further batch is sent (requests already in
    flight on other connections may land; without the completion record the file loads again,
    and the table's dedup keys make the re-sent rows replace themselves).
    """

    def __init__(
        self, address: ServerAddress, options: QuestDBOptions, table: str, kind: str = "http"
    ) -> None:
        self.address, self.options, self.table, self.kind = address, options, table, kind
        self.batcher = Batcher(options.flush_rows, options.batch_bytes)
        self.backoff = Backoff(timeout=options.retry_timeout_ms / 1000.0)
        self.stats = SendStats()
        self.connections = options.ilp_connections if kind == "http" else 1
        self._lock = threading.Lock()
        self._failed = threading.Event()
        self._error: BaseException | None = None
        self._open: list[questdb.Sender] = []  # every connection made, to close
        first = self._retry(self._connect)  # fails here when the server cannot take ns timestamps
        self._idle: queue.SimpleQueue[questdb.Sender | None] = queue.SimpleQueue()
        self._idle.put(first)
        for _ in range(self.connections - 1):
            self._idle.put(None)  # connected by the first request that needs it
        self._spare = [first.new_buffer() for _ in range(self.connections)]
        self._buf = first.new_buffer()
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[Future[None], tuple[Any, int, int]] = {}
        self._carry: list[ColumnBlock] = []

    def _conf(self) -> str:
        o = self.options
        cap = max(o.batch_bytes * 2, 1 << 20)
        common: dict[str, object] = {
            "auto_flush": "off",
            "max_buf_size": cap,
            "init_buf_size": min(cap, o.batch_bytes + 65536),
        }
        if self.kind == "tcp":
            return self.address.ilp_tcp_conf(protocol_version=2, **common)
        return self.address.ilp_http_conf(retry_timeout=o.retry_timeout_ms, **common)

    def _connect(self) -> questdb.Sender:
        s = questdb.Sender.from_conf(self._conf())
        try:
            with quiet_reconnect_warning():
                s.establish()
        except BaseException:
            s.close()
            raise
        if s.protocol_version < 2:
            s.close()
            msg = (
                f"QuestDB at {self.address.describe()} speaks ILP protocol version 1 only: nanosecond "
                "timestamps would be cut to microseconds (QuestDB 9.1 or newer is needed)"
            )
            raise SinkError(msg)
        with self._lock:
            self._open.append(s)
        return s

    def _retry(self, fn: Callable[[], Any]) -> Any:
        def again(exc: BaseException, delay: float) -> None:
            with self._lock:
                self.stats.retries += 1

        try:
            return retry(fn, backoff=self.backoff, is_transient=is_transient, on_retry=again)
        except questdb.QuestDBError as exc:
            where = f"ILP/{self.kind.upper()} {self.address.describe() if self.kind == 'http' else self.address.host + ':' + str(self.address.tcp_port)}"
            msg = f"{where}: {exc}"
            raise SinkError(msg) from None

    def _flush_on_a_connection(self, buf: Any) -> None:
        """Runs on a pool thread: flush ``buf`` on an idle connection, reconnecting on drops."""
        if self._failed.is_set():
            raise self._error or SinkError("ILP load stopped")
        sender = self._idle.get()

        def attempt() -> None:
            nonlocal sender
            if sender is None:
                sender = self._connect()
            try:
                sender.flush(buf, clear=False, transactional=self.kind == "http")
            except questdb.QuestDBError as exc:
                if is_transient(exc):
                    self._forget(sender)
                    sender = None
                raise

        try:
            self._retry(attempt)
        except BaseException as exc:
            with self._lock:
                self._error = self._error or exc
            self._failed.set()
            raise
        finally:
            self._idle.put(sender)

    def _forget(self, sender: questdb.Sender) -> None:
        with self._lock:
            if sender in self._open:
                self._open.remove(sender)
        sender.close(flush=False)

    def _harvest(self, block: bool) -> None:
        """Account the finished requests (wait for one first with ``block``); raise the first error."""
        if not self._inflight:
            return
        done, _ = wait(self._inflight, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in done:
            buf, rows, size = self._inflight.pop(fut)
            buf.clear()
            self._spare.append(buf)
            fut.result()  # raises the request's error
            self.stats.requests += 1
            self.stats.rows += rows
            self.stats.bytes += size

    def _submit(self, rows: int, size: int) -> None:
        """Put the serialized current buffer on the wire; take a spare one to fill next."""
        while len(self._inflight) >= self.connections:
            self._harvest(block=True)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.connections, thread_name_prefix=f"ilp-{self.kind}")
        buf = self._buf
        self._inflight[self._pool.submit(self._flush_on_a_connection, buf)] = (buf, rows, size)
        self._harvest(block=False)
        self._buf = self._spare.pop()

    def _drain(self) -> None:
        while self._inflight:
            self._harvest(block=True)

    def send(self, block: ColumnBlock, final: bool = False) -> None:
        """Send the rows of ``block`` (with ``day_seq``); with ``final`` also the carried tail, and
        wait until every request is answered."""
        if self._carry:
            block = concat_blocks([*self._carry, block]) if len(block) else concat_blocks(self._carry)
            self._carry = []
        n = len(block)
        if n:
            df = ilp_frame(block)

            def serialize(lo: int, hi: int) -> int:
                buf = self._buf
                buf.clear()
                buf.dataframe(df.iloc[lo:hi], table_name=self.table, symbols=SYMBOL_COLUMNS, at="ts_event")
                return len(buf)

            for lo, hi, size in self.batcher.batches(n, serialize, final=final):
                self._submit(hi - lo, size)
            self._buf.clear()
            if self.batcher.consumed < n:
                self._carry = [block.take(slice(self.batcher.consumed, n))]
        if final:
            self._drain()

    def finish(self) -> None:
        """Send whatever is carried; return once every request is answered."""
        if self._carry:
            empty = ColumnBlock({k: v[:0] for k, v in self._carry[0].arrays.items()}, self._carry[0].symbols)
            self.send(empty, final=True)
        self._drain()

    def close(self) -> None:
        """Stop: requests still in flight finish (their errors are dropped), connections close."""
        self._failed.set()  # nothing queued after an error or an abort is sent
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._inflight.clear()
        with self._lock:
            senders, self._open = self._open, []
        for s in senders:
            with contextlib.suppress(questdb.QuestDBError):
                s.close(flush=False)
