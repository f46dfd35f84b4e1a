"""The three ways rows reach QuestDB, through the official client (``questdb`` 6.x).

1. **QWP over WebSocket** (:class:`QwpSender`, here): ``questdb.connect('ws::addr=HOST:PORT;')`` and
   its columnar bulk load, fed a ``pyarrow.Table`` built over the NumPy columns (no row loop).
   Each call of ``QuestDB.dataframe`` returns once its rows are committed.
2. **ILP over HTTP** (:class:`engine.questdb.ilp.IlpSender`, ``kind="http"``): ``questdb.Sender`` with protocol
   version 2 (nanosecond timestamps), rows serialized by the client from a pandas frame whose
   columns are views of the NumPy arrays; each request holds at most ``QDB_FLUSH_ROWS`` rows
   and ``QDB_BATCH_BYTES`` bytes and is one transaction; ``QDB_ILP_CONNECTIONS`` are in flight.
3. **ILP over TCP** (``kind="tcp"``): the same batches over a socket (no per-request answer:
   the load is confirmed by ``count()`` afterwards).

Retries: the client retries HTTP 5xx answers itself for ``QDB_RETRY_TIMEOUT``; a dropped
connection (``SocketError``) is retried here with backoff, on a new connection, re-sending the
same batch (safe: the table's dedup keys make a re-sent row replace itself). Any other error
(the server rejected the data) stops the file with the server's message.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
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
    "SYMBOL_COLUMNS",
    "QwpSender",
    "SendStats",
    "concat_blocks",
    "detect_protocol",
    "ilp_frame",
    "is_transient",
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


@dataclass
class SendStats:
    """What a sender put on the wire."""

    requests: int = 0
    rows: int = 0
    bytes: int = 0
    retries: int = 0


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
