"""The oracle side of the lake-book tests: a symbol's lake rows read plainly, replayed by the reference book."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tests.book.reference import ASK, BID, ReferenceBooks, replay

ACTIONS = "ACMRTFN"
SIDES = "ABN"


def symbol_columns(day_file: Path, symbol: str) -> dict[str, np.ndarray]:
    """The symbol's rows of a lake day file in file order (pyarrow filter, letters mapped by hand)."""
    t = pq.read_table(day_file)
    t = t.filter(pc.equal(t.column("symbol").cast("string"), symbol))
    out = {}
    for name in ("ts_recv", "instrument_id", "publisher_id", "order_id", "price_raw", "size", "flags"):
        col = t.column(name)
        if name == "ts_recv":
            col = col.cast("int64")
        out[name] = col.to_numpy()
    out["action"] = np.array(
        [ACTIONS.index(a) for a in t.column("action").cast("string").to_pylist()], np.int8
    )
    out["side"] = np.array([SIDES.index(s) for s in t.column("side").cast("string").to_pylist()], np.int8)
    return out


class ReferenceReplay:
    """The reference book moved forward instant by instant (instants must not decrease)."""

    def __init__(self, cols: dict[str, np.ndarray]) -> None:
        self.cols = cols
        self.ref = ReferenceBooks()
        self.done = 0

    def at(self, t: int, depth: int, publisher: int | None = None) -> tuple[list, list, int | None]:
        """``(bids, asks, ts_recv)``: merged ``(price, size, count)`` levels after every row with ts_recv <= t."""
        stop = int(np.searchsorted(self.cols["ts_recv"], t, side="right"))
        assert stop >= self.done, "instants must not go back"
        replay(self.ref, self.cols, self.done, stop)
        self.done = stop
        last = int(self.cols["ts_recv"][stop - 1]) if stop else None
        sides = []
        for side in (BID, ASK):
            merged: dict[int, list[int]] = {}
            for iid, pid in self.ref.books:
                if publisher is not None and pid != publisher:
                    continue
                for price, size, count in self.ref.levels(iid, pid, side):
                    acc = merged.setdefault(price, [0, 0])
                    acc[0] += size
                    acc[1] += count
            prices = sorted(merged, reverse=side == BID)[:depth]
            sides.append([(p, *merged[p]) for p in prices])
        return sides[0], sides[1], last


def levels(book: dict, side: str) -> list[tuple[int, int, int]]:
    return [(lv["price_raw"], lv["size"], lv["count"]) for lv in book[side]]
