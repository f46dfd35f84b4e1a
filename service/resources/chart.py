"""The seed's chart (level of detail) API under ``/api/mbo``.

- ``GET /api/mbo/symbols``: every symbol with rows.
- ``GET /api/mbo/range?symbol=``: first and last ts_event of a symbol, and its row count.
- ``GET /api/mbo/bars?symbol&start&end&resolution``: OHLCV + trade count of trades, resolution
  1s, 10s, 1m, 5m, 15m, 1h, 1d or ``auto`` (by span); ns timestamps.
- ``GET /api/mbo/ticks?symbol&start&end&limit&offset``: rows in key order, ``limit`` <= 50,000,
  with ``has_more``.

``start``/``end`` are ns integers or date-time text (``tz`` for naive text) and default to the
symbol's whole range; ``symbol`` defaults to NVDA. JSON by default; ``Accept:
application/vnd.apache.arrow.stream`` answers an Arrow IPC stream (bars or ticks table; the
paging facts go in ``X-Has-More``/``X-Next-Offset`` headers).
"""

from __future__ import annotations

import math

import falcon
import pyarrow as pa
import pyarrow.ipc as ipc

from engine.dbn.columns import ANSWER_SCHEMA, unsigned_batch
from engine.errors import QueryError
from service.bars import RESOLUTIONS, bars_from_trades, pick_resolution
from service.encoders import ARROW_STREAM
from service.resources.params import Params, known_symbol
from service.stores.base import RangeQuery, Store, limit_batches
from service.timeparse import format_ns

__all__ = ["BarsResource", "RangeResource", "SymbolsResource", "TicksResource"]

MAX_TICKS = 50_000


def wants_arrow(req: falcon.Request) -> bool:
    accept = (req.get_header("Accept") or "").lower()
    return ARROW_STREAM in accept


def arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _symbol_and_range(store: Store, p: Params, default_symbol: str) -> tuple[str, int, int, str | None]:
    tz = p.tz()
    symbol = known_symbol(store, p.get("symbol", default_symbol))
    default = None
    if p.get("start") is None or p.get("end") is None:
        r = store.time_range(symbol)
        default = (r.start, r.end) if r is not None else (0, 0)
    start, end = p.time_range(tz, "start", "end", default)
    return symbol, start, end, tz


class SymbolsResource:
    """``GET /api/mbo/symbols``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        Params.from_query(req, ())
        names = self.store.symbols()
        resp.media = {"symbols": names, "count": len(names)}


class RangeResource:
    """``GET /api/mbo/range?symbol=NVDA``."""

    def __init__(self, store: Store, default_symbol: str = "NVDA") -> None:
        self.store = store
        self.default_symbol = default_symbol

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        p = Params.from_query(req, ("symbol",))
        symbol = known_symbol(self.store, p.get("symbol", self.default_symbol))
        r = self.store.time_range(symbol)
        if r is None:  # pragma: no cover - known_symbol saw rows
            resp.media = {"symbol": symbol, "start": None, "end": None, "rows": 0}
            return
        resp.media = {
            "symbol": symbol, "start": r.start, "end": r.end, "rows": r.rows,
            "start_utc": format_ns(r.start), "end_utc": format_ns(r.end),
        }  # fmt: skip


_COARSEST = list(RESOLUTIONS)[-1]


def _next_coarser(res: str) -> str:
    names = list(RESOLUTIONS)
    return names[min(names.index(res) + 1, len(names) - 1)]


def _bar_count(start: int, end: int, step: int) -> int:
    """The most bars ``[start, end]`` can hold at ``step``."""
    return (end // step) - (start // step) + 1


class BarsResource:
    """``GET /api/mbo/bars``."""

    def __init__(self, store: Store, default_symbol: str = "NVDA", max_bars: int = 100_000) -> None:
        self.store = store
        self.default_symbol = default_symbol
        self.max_bars = max_bars

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        p = Params.from_query(req, ("symbol", "start", "end", "resolution", "tz"))
        asked = p.string("resolution")
        pick_resolution(asked, 0, 1)  # validate the name before any store call
        symbol, start, end, _ = _symbol_and_range(self.store, p, self.default_symbol)
        if asked in (None, "auto"):
            # auto always answers: only the span the symbol has data in counts, and the finest
            # resolution whose bars fit the cap is taken
            r = self.store.time_range(symbol)
            lo, hi = (max(start, r.start), min(end, r.end)) if r is not None else (start, start)
            res = pick_resolution(asked, lo, max(hi, lo))
            while _bar_count(lo, max(hi, lo), RESOLUTIONS[res]) > self.max_bars and res != _COARSEST:
                res = _next_coarser(res)
        else:
            res = pick_resolution(asked, start, end)
        step = RESOLUTIONS[res]
        n_max = _bar_count(start, end, step)
        if asked not in (None, "auto") and n_max > self.max_bars:
            msg = f"{res} bars over {start}..{end} could be {n_max} bars, more than {self.max_bars}; use a coarser `resolution` or `auto`"
            raise QueryError(msg)
        query = RangeQuery(symbol, start, end, actions=("T",), order="event")  # bars: ts_event order
        bars = self.store.bars(query, step)  # computed by the store (QuestDB: SAMPLE BY), or here
        if bars is None:
            bars = bars_from_trades(self.store.scan(query, columns=("ts_event", "price_raw", "size")), step)
        if wants_arrow(req):
            resp.content_type = ARROW_STREAM
            resp.set_header("X-Resolution", res)
            resp.data = arrow_body(bars.to_arrow())
            return
        resp.media = {
            "symbol": symbol, "resolution": res, "step_ns": step, "start": start, "end": end,
            "count": len(bars), "bars": bars.to_rows(),
        }  # fmt: skip


def tick_rows(table: pa.Table) -> list[dict[str, object]]:
    """JSON-ready rows: integer ns timestamps, DBN unsigned values, price null when undefined."""
    names = table.schema.names
    cols = []
    for name in names:
        col = table.column(name).combine_chunks() if table.num_rows else table.column(name)
        if pa.types.is_timestamp(col.type):
            vals = col.cast(pa.int64()).to_pylist() if table.num_rows else []
        elif pa.types.is_dictionary(col.type):
            vals = col.cast(pa.string()).to_pylist()
        elif name == "price":
            vals = [None if math.isnan(v) else v for v in col.to_numpy(zero_copy_only=False).tolist()]
        else:
            vals = col.to_pylist()
        cols.append(vals)
    return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]


class TicksResource:
    """``GET /api/mbo/ticks``."""

    def __init__(self, store: Store, default_symbol: str = "NVDA", max_offset: int = 50_000_000) -> None:
        self.store = store
        self.default_symbol = default_symbol
        self.max_offset = max_offset

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        p = Params.from_query(req, ("symbol", "start", "end", "limit", "offset", "tz"))
        limit = int(p.integer("limit", 1, MAX_TICKS, default=1_000) or 0)
        offset = int(p.integer("offset", 0, self.max_offset, default=0) or 0)
        symbol, start, end, _ = _symbol_and_range(self.store, p, self.default_symbol)
        query = RangeQuery(symbol, start, end)
        parts: list[pa.RecordBatch] = []
        if offset == 0 or offset < self.store.count(query):  # an offset past the rows reads none
            query, skip = self.store.seek(query, offset)  # QuestDB finds the row; the lake skips to it
            seen = 0
            for b in limit_batches(self.store.scan(query), skip + limit + 1):
                lo = max(0, skip - seen)
                if lo < b.num_rows:
                    parts.append(b.slice(lo))
                seen += b.num_rows
        table = pa.Table.from_batches([unsigned_batch(b) for b in parts]) if parts else None
        has_more = table is not None and table.num_rows > limit
        if table is not None:
            table = table.slice(0, limit)
        count = 0 if table is None else table.num_rows
        if wants_arrow(req):
            resp.content_type = ARROW_STREAM
            resp.set_header("X-Has-More", "true" if has_more else "false")
            if has_more:
                resp.set_header("X-Next-Offset", str(offset + count))
            resp.data = arrow_body(table if table is not None else ANSWER_SCHEMA.empty_table())
            return
        body: dict[str, object] = {
            "symbol": symbol, "start": start, "end": end, "offset": offset, "limit": limit,
            "count": count, "has_more": has_more,
        }  # fmt: skip
        if has_more:
            body["next_offset"] = offset + count
        body["ticks"] = tick_rows(table) if table is not None else []
        resp.media = body
