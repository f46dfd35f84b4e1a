"""``GET /api/mbo/book?symbol&at&depth&publisher&orders``: the order book of a symbol at any nanosecond.

The answer is :func:`engine.book.snapshot.book_snapshot`'s (the CLI's ``--format json``):
``{"symbol", "at", "ts_recv", "bids": [{"price", "price_raw", "size", "count"}, ...], "asks"}``,
best level first, the book after every record of that UTC day with ``ts_recv <= at``. ``at`` is
required (ns, or date-time text read in ``tz``); ``depth`` 1..1000 (default 10); ``publisher``
keeps one venue (default: all merged by price); ``orders=true`` lists each level's orders in
queue order. With ``Accept: application/vnd.apache.arrow.stream`` the levels come as an Arrow
IPC table (``side``, ``level``, ``price``, ``price_raw``, ``size``, ``count`` [, ``orders``]) whose
schema metadata and ``X-Book-At`` / ``X-Book-Ts-Recv`` headers carry ``at`` and ``ts_recv``.
"""

from __future__ import annotations

from typing import Any

import falcon
import pyarrow as pa

from engine.book.snapshot import MAX_DEPTH
from engine.errors import QueryError
from service.encoders import ARROW_STREAM
from service.resources.chart import arrow_body, wants_arrow
from service.resources.params import Params, known_symbol
from service.stores.base import Store

__all__ = ["BookResource", "book_table"]

_ORDER = pa.struct([("order_id", pa.uint64()), ("size", pa.int64()), ("publisher_id", pa.int32())])


def book_table(book: dict[str, Any]) -> pa.Table:
    """The levels of a book answer as one Arrow table (bids then asks, best first)."""
    with_orders = any("orders" in lv for side in ("bids", "asks") for lv in book[side])
    rows = []
    for side, letter in (("bids", "B"), ("asks", "A")):
        for k, lv in enumerate(book[side]):
            row = {"side": letter, "level": k, **{f: lv[f] for f in ("price", "price_raw", "size", "count")}}
            if with_orders:
                row["orders"] = lv.get("orders", [])
            rows.append(row)
    fields = [
        ("side", pa.string()), ("level", pa.int16()), ("price", pa.float64()), ("price_raw", pa.int64()),
        ("size", pa.int64()), ("count", pa.int64()),
    ]  # fmt: skip
    if with_orders:
        fields.append(("orders", pa.list_(_ORDER)))
    meta = {
        "symbol": book["symbol"],
        "at": str(book["at"]),
        "ts_recv": "" if book["ts_recv"] is None else str(book["ts_recv"]),
    }
    return pa.Table.from_pylist(rows, schema=pa.schema(fields, metadata=meta))


def _flag(p: Params, name: str) -> bool:
    v = p.get(name, False)
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no", ""):
        return False
    msg = f"`{name}` must be true or false, got {v!r}"
    raise QueryError(msg)


class BookResource:
    """``GET /api/mbo/book``."""

    def __init__(self, store: Store, default_symbol: str = "NVDA") -> None:
        self.store = store
        self.default_symbol = default_symbol

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        p = Params.from_query(req, ("symbol", "at", "depth", "publisher", "orders", "tz"))
        tz = p.tz()
        at = p.timestamp("at", tz)
        depth = int(p.integer("depth", 1, MAX_DEPTH, default=10) or 10)
        publisher = p.integer("publisher", 0, 0xFFFF)
        orders = _flag(p, "orders")
        symbol = known_symbol(self.store, p.get("symbol", self.default_symbol))
        book = self.store.book(symbol, at, depth, publisher, orders)
        if wants_arrow(req):
            resp.content_type = ARROW_STREAM
            resp.set_header("X-Book-At", str(book["at"]))
            resp.set_header("X-Book-Ts-Recv", "" if book["ts_recv"] is None else str(book["ts_recv"]))
            resp.data = arrow_body(book_table(book))
            return
        resp.media = book
