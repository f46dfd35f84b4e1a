"""Chart bars from the lake without reading the day again for every zoom step.

A chart asks for bars over ever narrower windows of one symbol. Each window's trades are the
symbol's trade rows of the row groups it overlaps, so they are kept, per row group, in a small
cache: the first request over a day (the whole-day chart) fills it, and every later window
aggregates cached trades only (a few percent of the rows, four columns). The bars equal the
generic path's (:func:`service.bars.bars_from_trades` over the store's ``ts_event``-ordered scan):
trades are put in the scan's order, ``(ts_event, ts_recv, instrument_id, publisher_id)`` and then
the files' order, before they are aggregated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa

from engine.lake.arrow import action_mask, ints, symbol_mask
from service.bars import Bars, bars_from_trades
from service.stores.base import EVENT_KEY_COLUMNS, RangeQuery, key_order
from service.stores.lakefiles import FileIndex, RowGroupCache

__all__ = ["TRADE_COLUMNS", "TradeBars"]

TRADE_COLUMNS = (*EVENT_KEY_COLUMNS, "price_raw", "size")
_READ = [*TRADE_COLUMNS, "symbol", "action"]

Reader = Callable[[FileIndex, int, list[str]], pa.Table]


class TradeBars:
    """Per row group and symbol, the trade rows (:data:`TRADE_COLUMNS`), bounded in bytes."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.cache = RowGroupCache(max_bytes)

    def _trades(self, f: FileIndex, group: int, symbol: str, read: Reader) -> pa.Table:
        key = (f.path, f.stamp, group, symbol)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        t = read(f, group, _READ)
        mask = symbol_mask(t.column("symbol"), symbol) & action_mask(t.column("action"), ("T",))
        trades = t.select(list(TRADE_COLUMNS)).filter(pa.array(mask)).combine_chunks()
        self.cache.put(key, trades)
        return trades

    def bars(self, files: Iterable[FileIndex], query: RangeQuery, step: int, read: Reader) -> Bars:
        """The bars of ``query`` (its trades) at ``step`` ns over ``files`` (the symbol's files)."""
        lo, hi = query.first_ts, query.end
        parts = [
            self._trades(f, g.index, query.symbol, read)
            for f in sorted(files, key=lambda f: str(f.path))  # file order breaks the ties, as the scan does
            for g in f.groups
            if g.may_hold(query.symbol, lo, hi)
        ]
        parts = [p for p in parts if p.num_rows]
        if not parts:
            return bars_from_trades([], step)
        t = pa.concat_tables(parts).combine_chunks()
        ts = ints(t.column("ts_event"))
        t = t.filter(pa.array((ts >= lo) & (ts <= hi)))
        return bars_from_trades(t.take(key_order(t, "event")).to_batches(), step)  # ties: the files' order
