"""The three ways rows reach QuestDB, through the official client (``questdb`` 6.x).

1. **QWP over WebSocket** (:class:`QwpSender`): ``questdb.connect('ws::addr=HOST:PORT;')`` and
   its columnar bulk load, fed a ``pyarrow.Table`` built over the NumPy columns (no row loop).
   Each call of ``QuestDB.dataframe`` returns once its rows are committed.
2. **ILP over HTTP** (:class:`IlpSender`, ``kind="http"``): ``questdb.Sender`` with protocol
   version 2 (nanosecond timestamps), rows serialized by the client from a pandas frame whose
   columns are views of the NumPy arrays; each request holds at most ``QDB_FLUSH_ROWS`` rows
   and ``QDB_BATCH_BYTES`` bytes (:class:`Batcher`) and is one transaction.
3. **ILP over TCP** (``kind="tcp"``): the same batches over a socket (no per-request answer:
   the load is confirmed by ``count()`` afterwards).

Retries: the client retries HTTP 5xx answers itself for ``QDB_RETRY_TIMEOUT``; a dropped
connection (``SocketError``) is retried here with backoff, on a new connection, re-sending the
same batch (safe: the table's dedup keys make a re-sent row replace itself). Any other error
(the server rejected the data) stops the file with the server's message.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import questdb

from engine.dbn.columns import ACTIONS, SIDES, ColumnBlock, string_array
from engine.errors import SinkError
from engine.questdb.conf import QuestDBOptions, ServerAddress
from engine.questdb.http import Backoff, retry

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "QWP_SCHEMA",
    "Batcher",
    "IlpSender",
    "QwpSender",
    "concat_blocks",
    "detect_protocol",
    "ilp_frame",
    "is_transient",
    "open_sender",
    "quiet_reconnect_warning",
    "qwp_table",
]

SYMBOL_COLUMNS = ["symbol", "action", "side"]
_TS = pa.timestamp("ns", tz="UTC")
_DICT = pa.dictionary(pa.int32(), pa.string())

_COLUMN_TYPE = "questdb.column_type"
_CLAIMS = {pa.int16(): "short", pa.int32(): "int"}
"""Field metadata the client's Arrow route reads: without it an int16 is sent as INT and an int32 as
LONG on the wire (its ``I16WidenToI32`` / ``I32WidenToI64``); with it, as SHORT and INT."""


def _qwp_field(name: str, typ: pa.DataType) -> pa.Field:
    claim = _CLAIMS.get(typ)
    return pa.field(name, typ, metadata={_COLUMN_TYPE: claim} if claim else None)


QWP_SCHEMA = pa.schema(
    [
        _qwp_field(n, t) for n, t in (
            ("ts_event", _TS), ("symbol", _DICT), ("instrument_id", pa.int32()), ("publisher_id", pa.int16()),
            ("order_id", pa.int64()), ("price_raw", pa.int64()), ("price", pa.float64()), ("size", pa.int32()),
            ("flags", pa.int32()), ("channel_id", pa.int16()), ("action", _DICT), ("side", _DICT),
            ("ts_recv", _TS), ("ts_in_delta", pa.int32()), ("sequence", pa.int64()), ("day_seq", pa.int64()),
        )
    ]
)  # fmt: skip
"""Arrow types sent over QWP: exactly the table's column types on the wire (SHORT, INT, LONG,
DOUBLE, SYMBOL, TIMESTAMP_NANOS; the ``questdb.column_type`` claims pin SHORT and INT)."""

_QWP_PARAMS: dict[str, object] = {"query_pool_min": 0}
"""``questdb.connect`` opens ``query_pool_min`` reader connections (``/read/v1``) up front; the
sink only writes, so it opens none."""

_TRANSIENT_CODES = {
    "SocketError", "ConnectTimeout", "FailoverRetry", "StoreResendRequired", "CouldNotResolveAddr",
}  # fmt: skip


@contextlib.contextmanager
def quiet_reconnect_warning() -> Iterator[None]:
    """Silence the client's "burst of reconnections" ``UserWarning`` while a sender connects.

    The sink opens one sender per file (and one for each completion record) on purpose: files
    load in separate processes, so there is nothing to reuse across them. Scoped with
    ``warnings.catch_warnings`` rather than turning ``questdb.WARN_HIGH_RECONNECTS`` off for the
    whole process.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"questdb\.Sender: Detected a burst", category=UserWarning)
        yield


def is_transient(exc: BaseException) -> bool:
    """True for errors worth a retry on a new connection: dropped or refused connections."""
    if not isinstance(exc, questdb.QuestDBError):
        return isinstance(exc, (ConnectionError, TimeoutError))
    return getattr(exc.code, "name", str(exc.code)) in _TRANSIENT_CODES


def concat_blocks(blocks: list[ColumnBlock]) -> ColumnBlock:
    """One block of the rows of ``blocks`` (same source file: the last symbol list covers all)."""
    if len(blocks) == 1:
        return blocks[0]
    names = blocks[0].arrays.keys()
    return ColumnBlock({k: np.concatenate([b.arrays[k] for b in blocks]) for k in names}, blocks[-1].symbols)


def ilp_frame(block: ColumnBlock) -> pd.DataFrame:
    """A pandas frame over the block's arrays for ILP (numeric columns are views, not copies).

    ``symbol``, ``action`` and ``side`` become categoricals (sent as SYMBOL), the timestamps
    ``datetime64[ns]`` (sent in ns with ILP protocol version 2). ``block`` must carry ``day_seq``.
    """
    import pandas as pd  # here: the QWP path and the lake never load pandas

    a = block.arrays
    cols: dict[str, Any] = {
        "ts_event": a["ts_event"].view("datetime64[ns]"),
        "symbol": pd.Categorical.from_codes(a["symbol"], categories=pd.Index(block.symbols)),
        "instrument_id": a["instrument_id"],
        "publisher_id": a["publisher_id"],
        "order_id": a["order_id"],
        "price_raw": a["price_raw"],
        "price": a["price"],
        "size": a["size"],
        "flags": a["flags"],
        "channel_id": a["channel_id"],
        "action": pd.Categorical.from_codes(a["action"], categories=pd.Index(list(ACTIONS))),
        "side": pd.Categorical.from_codes(a["side"], categories=pd.Index(list(SIDES))),
        "ts_recv": a["ts_recv"].view("datetime64[ns]"),
        "ts_in_delta": a["ts_in_delta"],
        "sequence": a["sequence"],
        "day_seq": a["day_seq"],
    }
    return pd.DataFrame(cols, copy=False)


def _prim(arr: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.Array.from_buffers(typ, len(arr), [None, pa.py_buffer(np.ascontiguousarray(arr))])


def qwp_table(block: ColumnBlock) -> pa.Table:
    """A :data:`QWP_SCHEMA` table over the block's arrays (copies only flags and the codes)."""
    a = block.arrays
    cols = []
    for f in QWP_SCHEMA:
        name = f.name
        if name == "symbol":
            cols.append(pa.DictionaryArray.from_arrays(_prim(a["symbol"].astype(np.int32, copy=False), pa.int32()),
                                                       string_array(block.symbols)))  # fmt: skip
        elif name in ("action", "side"):
            cats = ACTIONS if name == "action" else SIDES
            codes = _prim(a[name].astype(np.int32), pa.int32())
            cols.append(pa.DictionaryArray.from_arrays(codes, string_array(cats)))
        elif name in ("ts_event", "ts_recv"):
            cols.append(_prim(a[name].astype(np.int64, copy=False), _TS))
        elif name == "flags":
            cols.append(_prim(a["flags"].astype(np.int32), pa.int32()))
        else:
            cols.append(_prim(a[name].astype(f.type.to_pandas_dtype(), copy=False), f.type))
    return pa.Table.from_arrays(cols, schema=QWP_SCHEMA)


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


@dataclass
class SendStats:
    """What a sender put on the wire."""

    requests: int = 0
    rows: int = 0
    bytes: int = 0
    retries: int = 0


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


class QwpSender:
    """QWP/WebSocket bulk load: one committed ``QuestDB.dataframe`` call per ``QDB_QWP_ROWS`` rows."""

    def __init__(self, address: ServerAddress, options: QuestDBOptions, table: str) -> None:
        self.address, self.options, self.table = address, options, table
        self.backoff = Backoff(timeout=options.retry_timeout_ms / 1000.0)
        self.stats = SendStats()
        self._pending: list[ColumnBlock] = []
        self._pending_rows = 0
        try:
            self._db: Any = retry(
                lambda: questdb.connect(address.qwp_conf(**_QWP_PARAMS)),
                backoff=self.backoff,
                is_transient=is_transient,
            )
        except questdb.QuestDBError as exc:
            msg = f"QWP/WebSocket {address.describe()}: {exc}"
            raise SinkError(msg) from None

    def send(self, block: ColumnBlock, final: bool = False) -> None:
        """Queue ``block``; load the queue once it holds ``QDB_QWP_ROWS`` rows (or ``final``)."""
        if len(block):
            self._pending.append(block)
            self._pending_rows += len(block)
        if self._pending and (final or self._pending_rows >= self.options.qwp_rows):
            self._load()

    def _load(self) -> None:
        block = concat_blocks(self._pending)
        self._pending, self._pending_rows = [], 0
        tbl = qwp_table(block)

        def attempt() -> None:
            # batches sized by the client (the negotiated per-batch byte cap), not by the ILP
            # knob QDB_FLUSH_ROWS (50K-row batches held our QWP load at 0.59 of the ceiling, 0.80 without)
            self._db.dataframe(tbl, table_name=self.table, at="ts_event")

        def again(exc: BaseException, delay: float) -> None:
            self.stats.retries += 1

        try:
            retry(attempt, backoff=self.backoff, is_transient=is_transient, on_retry=again)
        except questdb.QuestDBError as exc:
            msg = f"QWP/WebSocket {self.address.describe()}: {exc}"
            raise SinkError(msg) from None
        self.stats.requests += 1
        self.stats.rows += len(block)
        self.stats.bytes += tbl.nbytes

    def finish(self) -> None:
        if self._pending:
            self._load()

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()


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


def detect_protocol(address: ServerAddress, timeout_ms: int = 3000) -> str:
    """``qwp`` if the server accepts a QWP/WebSocket connection, else ``ilp-http``."""
    try:
        db = questdb.connect(address.qwp_conf(connect_timeout=timeout_ms, **_QWP_PARAMS))
    except (questdb.QuestDBError, ValueError, OSError):
        try:
            db = questdb.connect(address.qwp_conf(**_QWP_PARAMS))
        except (questdb.QuestDBError, ValueError, OSError):
            return "ilp-http"
    with contextlib.suppress(questdb.QuestDBError):
        db.close()
    return "qwp"
