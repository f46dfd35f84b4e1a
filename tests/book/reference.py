"""A plain-Python order book: the oracle of the kernel tests (no Numba, no engine imports).

Written from the semantics stated in :mod:`engine.book`'s docstring: a dict of orders per book
and, per side, a dict of price levels whose orders keep queue order (a dict keeps insertion
order; losing priority is delete and re-insert). Level size and count are computed when read.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

ADD, CANCEL, MODIFY, CLEAR, TRADE, FILL, NONE = "ACMRTFN"
ACTIONS = "ACMRTFN"
ASK, BID = 0, 1
UNDEF_PRICE = 2**63 - 1
F_LAST = 128
F_TOB = 64

COUNTER_NAMES = (
    "records", "unknown_cancel", "unknown_modify", "crossed_at_last", "locked_at_last",
    "size_underflow", "side_mismatch", "price_mismatch", "duplicate_add", "zero_size",
    "undef_price", "bad_side", "bad_action", "tob_updates", "clears",
)  # fmt: skip


@dataclass
class Order:
    side: int
    price: int
    size: int
    priority: int


@dataclass
class Level:
    tob_size: int = 0  # size of a top-of-book (F_TOB) level, which has no orders
    size: int = 0  # sum of its orders' sizes
    queue: dict[int, None] = field(default_factory=dict)  # order ids in priority order


@dataclass
class Book:
    orders: dict[int, Order] = field(default_factory=dict)
    sides: tuple[dict[int, Level], dict[int, Level]] = field(default_factory=lambda: ({}, {}))
    prices: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))  # ascending

    def new_level(self, side: int, price: int, level: Level) -> None:
        self.sides[side][price] = level
        bisect.insort(self.prices[side], price)

    def drop_level(self, side: int, price: int) -> None:
        del self.sides[side][price]
        prices = self.prices[side]
        del prices[bisect.bisect_left(prices, price)]

    def clear_side(self, side: int) -> None:
        self.sides[side].clear()
        self.prices[side].clear()

    def level_rows(
        self, side: int, depth: int | None = None, check: bool = False
    ) -> list[tuple[int, int, int]]:
        """``(price, size, count)`` best first (``check``: verify each size is the sum of its orders)."""
        prices = self.prices[side]
        k = len(prices) if depth is None else min(depth, len(prices))
        best_first = prices[::-1][:k] if side == BID else prices[:k]
        levels = self.sides[side]
        rows = []
        for price in best_first:
            lvl = levels[price]
            if check:
                assert lvl.size == sum(self.orders[o].size for o in lvl.queue)
            rows.append((price, lvl.tob_size + lvl.size, len(lvl.queue)))
        return rows

    def best(self, side: int) -> int | None:
        prices = self.prices[side]
        if not prices:
            return None
        return prices[-1] if side == BID else prices[0]


class ReferenceBooks:
    """Every ``(instrument_id, publisher_id)`` book, applied one record at a time."""

    def __init__(self) -> None:
        self.books: dict[tuple[int, int], Book] = {}
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.priority = 0

    # -- helpers ------------------------------------------------------------------------------------
    def _count(self, name: str) -> None:
        self.counters[name] += 1

    def _next_priority(self) -> int:
        self.priority += 1
        return self.priority

    @staticmethod
    def _drop(book: Book, oid: int) -> None:
        o = book.orders.pop(oid)
        lvl = book.sides[o.side][o.price]
        del lvl.queue[oid]
        lvl.size -= o.size
        if not lvl.queue and lvl.tob_size == 0:
            book.drop_level(o.side, o.price)

    def _rest(self, book: Book, oid: int, side: int, price: int, size: int) -> None:
        book.orders[oid] = Order(side, price, size, self._next_priority())
        if price not in book.sides[side]:
            book.new_level(side, price, Level())
        lvl = book.sides[side][price]
        lvl.queue[oid] = None
        lvl.size += size

    # -- one record ---------------------------------------------------------------------------------
    def apply(self, instrument_id, publisher_id, action, side, price, size, order_id, flags) -> None:
        """Apply one record; ``action`` a letter (anything else is a bad action), ``side`` 0/1/2."""
        key = (int(instrument_id) & 0xFFFFFFFF, int(publisher_id) & 0xFFFF)
        book = self.books.setdefault(key, Book())
        oid = int(order_id)
        price = int(price)
        size = int(size)
        side = int(side)
        if action in (ADD, CANCEL, MODIFY) and flags & F_TOB:
            self._top_of_book(book, side, price, size)
        elif action == ADD:
            self._add(book, oid, side, price, size)
        elif action == CANCEL:
            self._cancel(book, oid, side, price, size)
        elif action == MODIFY:
            self._modify(book, oid, side, price, size)
        elif action == CLEAR:
            book.orders.clear()
            book.clear_side(ASK)
            book.clear_side(BID)
            self._count("clears")
        elif action not in (TRADE, FILL, NONE):
            self._count("bad_action")
        self._count("records")
        if flags & F_LAST:
            bid, ask = book.best(BID), book.best(ASK)
            if bid is not None and ask is not None:
                if bid > ask:
                    self._count("crossed_at_last")
                elif bid == ask:
                    self._count("locked_at_last")

    def _top_of_book(self, book: Book, side: int, price: int, size: int) -> None:
        if side not in (ASK, BID):
            self._count("bad_side")
            return
        self._count("tob_updates")
        for oid in [o for o, v in book.orders.items() if v.side == side]:
            del book.orders[oid]
        book.clear_side(side)
        if price != UNDEF_PRICE and size > 0:
            book.new_level(side, price, Level(tob_size=size))

    def _add(self, book: Book, oid: int, side: int, price: int, size: int) -> None:
        if side not in (ASK, BID):
            self._count("bad_side")
        elif price == UNDEF_PRICE:
            self._count("undef_price")
        elif size <= 0:
            self._count("zero_size")
        else:
            if oid in book.orders:
                self._count("duplicate_add")
                self._drop(book, oid)
            self._rest(book, oid, side, price, size)

    def _cancel(self, book: Book, oid: int, side: int, price: int, size: int) -> None:
        o = book.orders.get(oid)
        if o is None:
            self._count("unknown_cancel")
            return
        if side != o.side:
            self._count("side_mismatch")
        if price != o.price:
            self._count("price_mismatch")
        if size > o.size:
            self._count("size_underflow")
            size = o.size
        o.size -= size
        book.sides[o.side][o.price].size -= size
        if o.size == 0:
            self._drop(book, oid)

    def _modify(self, book: Book, oid: int, side: int, price: int, size: int) -> None:
        o = book.orders.get(oid)
        if o is None:
            self._count("unknown_modify")
            self._add(book, oid, side, price, size)
            return
        if side != o.side:
            self._count("side_mismatch")
        if price == UNDEF_PRICE:
            self._count("undef_price")
        new_side = side if side in (ASK, BID) else o.side
        new_price = o.price if price == UNDEF_PRICE else price
        if size <= 0:
            self._count("zero_size")
            self._drop(book, oid)
        elif new_side != o.side or new_price != o.price:
            self._drop(book, oid)
            self._rest(book, oid, new_side, new_price, size)
        else:
            lvl = book.sides[o.side][o.price]
            lvl.size += size - o.size
            if size > o.size:  # loses priority: back of the queue
                del lvl.queue[oid]
                lvl.queue[oid] = None
                o.priority = self._next_priority()
            o.size = size

    # -- reads --------------------------------------------------------------------------------------
    def levels(
        self, instrument_id: int, publisher_id: int, side: int, depth: int | None = None, check: bool = False
    ) -> list[tuple[int, int, int]]:
        """``(price, size, count)`` of the best ``depth`` levels (all if None), best first."""
        book = self.books.get((instrument_id, publisher_id))
        return [] if book is None else book.level_rows(side, depth, check)

    def queue(
        self, instrument_id: int, publisher_id: int, side: int, price: int
    ) -> list[tuple[int, int, int]]:
        """``(order_id, size, priority)`` of one level in queue order."""
        book = self.books.get((instrument_id, publisher_id))
        if book is None or price not in book.sides[side]:
            return []
        return [(o, book.orders[o].size, book.orders[o].priority) for o in book.sides[side][price].queue]


def replay(ref: ReferenceBooks, cols: dict[str, np.ndarray], start: int, stop: int) -> None:
    """Apply rows ``[start, stop)`` of project columns (action/side codes) to the reference."""
    act = cols["action"][start:stop].tolist()
    rows = zip(
        cols["instrument_id"][start:stop].tolist(),
        cols["publisher_id"][start:stop].tolist(),
        act,
        cols["side"][start:stop].tolist(),
        cols["price_raw"][start:stop].tolist(),
        (cols["size"][start:stop].astype(np.int64) & 0xFFFFFFFF).tolist(),
        cols["order_id"][start:stop].tolist(),
        (cols["flags"][start:stop].astype(np.int64) & 0xFF).tolist(),
        strict=True,
    )
    for iid, pid, a, side, price, size, oid, flags in rows:
        letter = ACTIONS[a] if 0 <= a < len(ACTIONS) else "?"
        ref.apply(iid, pid, letter, side, price, size, oid, flags)


def assert_books_equal(
    books, ref: ReferenceBooks, where: str = "", queues: int = 0, depth: int | None = None
) -> None:
    """Every level (or the best ``depth``) of both sides of every book, and the counters, equal.

    ``books`` is an :class:`engine.book.OrderBooks`. With ``queues > 0`` the orders of the best
    ``queues`` levels of each side (ids, sizes, priorities in queue order) must match too, and
    the reference checks that its level sizes are the sums of their orders.
    """
    kernel_books = set(books.books())
    assert kernel_books == set(ref.books), where
    for iid, pid in sorted(kernel_books):
        for side in (ASK, BID):
            got = books.levels(iid, pid, side, depth)
            got_rows = list(zip(got.price.tolist(), got.size.tolist(), got.count.tolist(), strict=True))
            want_rows = ref.levels(iid, pid, side, depth, check=queues > 0)
            assert got_rows == want_rows, f"{where}: book ({iid}, {pid}) side {side}"
            for price, _, _ in want_rows[:queues]:
                q = books.orders(iid, pid, side, price)
                got_q = list(zip(q.order_id.tolist(), q.size.tolist(), q.priority.tolist(), strict=True))
                assert got_q == ref.queue(iid, pid, side, price), f"{where}: queue at {price}"
    assert books.counters == ref.counters, where


# -- MBP and BBO from the reference book ------------------------------------------------------------
def top(ref: ReferenceBooks, key: tuple[int, int], depth: int) -> tuple[list, list]:
    """``(bids, asks)``: the best ``depth`` ``(price, size, count)`` of a book, best first."""
    book = ref.books.get(key)
    if book is None:
        return [], []
    return book.level_rows(BID, depth), book.level_rows(ASK, depth)


def mbp_levels(row: dict, depth: int, k: int) -> tuple[list, list]:
    """``(bids, asks)`` of MBP row ``k`` in the layout of :func:`top` (missing levels dropped)."""
    out = []
    for side in ("bid", "ask"):
        levels = []
        for d in range(depth):
            px = int(row[f"{side}_px_{d:02d}"][k])
            sz, ct = int(row[f"{side}_sz_{d:02d}"][k]), int(row[f"{side}_ct_{d:02d}"][k])
            if px == UNDEF_PRICE:
                assert sz == 0 and ct == 0
                continue
            levels.append((px, sz, ct))
        out.append(levels)
    return out[0], out[1]


def reference_bbo(cols: dict[str, np.ndarray], interval: int) -> dict[str, list[int]]:
    """BBO rows computed from the reference book, following :mod:`engine.book.bbo`'s rules."""
    ref = ReferenceBooks()
    rows: dict[str, list[int]] = {k: [] for k in (
        "ts_recv", "ts_event", "instrument_id", "publisher_id", "price_raw", "size", "side", "flags",
        "sequence", "bid_px_00", "ask_px_00", "bid_sz_00", "ask_sz_00", "bid_ct_00", "ask_ct_00")}  # fmt: skip
    state: dict[tuple[int, int], dict] = {}
    pending: dict[tuple[int, int], None] = {}  # books updated in the open interval, in order
    end = None

    def emit(at: int) -> None:
        for key in pending:
            st = state[key]
            for name, value in (("ts_recv", at), ("instrument_id", key[0]), ("publisher_id", key[1])):
                rows[name].append(value)
            for name in rows:
                if name not in ("ts_recv", "instrument_id", "publisher_id"):
                    rows[name].append(st[name])
        pending.clear()

    n = len(cols["action"])
    for i in range(n):
        t = int(cols["ts_recv"][i])
        if end is not None and t >= end:
            emit(end)
            end = None
        if end is None:
            end = (t // interval + 1) * interval
        replay(ref, cols, i, i + 1)
        key = (int(cols["instrument_id"][i]) & 0xFFFFFFFF, int(cols["publisher_id"][i]) & 0xFFFF)
        st = state.setdefault(key, {
            "ts_event": -1, "price_raw": UNDEF_PRICE, "size": 0, "side": 2, "flags": 0, "sequence": 0,
            "bid_px_00": UNDEF_PRICE, "ask_px_00": UNDEF_PRICE, "bid_sz_00": 0, "ask_sz_00": 0,
            "bid_ct_00": 0, "ask_ct_00": 0})  # fmt: skip
        flags = int(cols["flags"][i]) & 0xFF
        updated = False
        if ACTIONS[cols["action"][i]] == TRADE:
            st.update(ts_event=int(cols["ts_event"][i]), price_raw=int(cols["price_raw"][i]),
                      size=int(cols["size"][i]) & 0xFFFFFFFF, side=int(cols["side"][i]))  # fmt: skip
            updated = True
        if flags & F_LAST:
            bids, asks = top(ref, key, 1)
            bid = bids[0] if bids else (UNDEF_PRICE, 0, 0)
            ask = asks[0] if asks else (UNDEF_PRICE, 0, 0)
            now = dict(zip(("bid_px_00", "bid_sz_00", "bid_ct_00", "ask_px_00", "ask_sz_00", "ask_ct_00"),
                           (*bid, *ask), strict=True))  # fmt: skip
            if any(st[k] != v for k, v in now.items()):
                st.update(now)
                updated = True
        if updated:
            st.update(sequence=int(cols["sequence"][i]), flags=flags)
            pending[key] = None
    if end is not None:
        emit(end)
    return rows
