"""BBO-1s / BBO-1m rows (top of book and last sale sampled per interval) derived while replaying MBO.

Databento's BBO schemas: "the last best bid, best offer, and sale at 1-second or 1-minute
intervals"; no record when neither a trade nor a BBO update happened in the interval; the last
sale is forward-filled when only the BBO changed and the BBO when only a trade happened;
``ts_recv`` is the interval's end, ``ts_event`` the last trade's (UNDEF_TIMESTAMP if none),
``price``/``size``/``side`` the last trade's (UNDEF_PRICE, 0, N if none), ``sequence`` the last
update's. Our choices where that leaves room:

- Intervals are ``[k*I, (k+1)*I)`` of ``ts_recv`` (a record at exactly ``k*I`` opens interval
  ``k``), and a row's ``ts_recv`` is ``(k+1)*I``.
- The top of book is sampled after records with F_LAST only (the book is consistent then); a
  "BBO update" is a change of any of bid/ask price, size or count at such a point (a clear
  that empties the book is one). A trade is a **T** record (fills are not sales of their own).
- ``sequence`` and ``flags`` are those of the last record that updated the row (a trade or a
  BBO change) in its book.
- One row per book (``instrument_id``, ``publisher_id``) per interval; within an interval, rows
  come in the order their books were first updated. Rows of an interval are emitted when a record
  of a later interval arrives, or by ``final=True`` at the end of the input.
- Prices are int64 ``price_raw`` (1e-9), sizes and counts int64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from engine.book.book import OrderBooks
from engine.book.codes import (
    ACT_TRADE,
    BOOK_COLUMNS,
    C_RECORDS,
    F_LAST,
    SIDE_NONE,
    UNDEF_PRICE,
    UNDEF_TIMESTAMP,
    column_arrays,
)
from engine.book.kernels import apply_record, book_of, check_cross, record_fields
from engine.book.pointers import data_ptr
from engine.book.state import (
    L_COUNT,
    L_KEY,
    L_SIZE,
    LW,
    M_COUNTERS,
    M_STATUS,
    NEED_BOOKS,
    NEED_LEVELS,
    NEED_OUTPUT,
    OK,
    S_N,
    S_OFF,
    SW,
)
from engine.book.table import set_capacities

__all__ = ["BBO_COLUMNS", "INTERVALS", "BboSampler", "bbo_block", "derive_bbo"]

INTERVALS = {"1s": 1_000_000_000, "1m": 60_000_000_000}
"""Interval names (Databento's ``bbo-1s`` and ``bbo-1m``) in nanoseconds."""

_DTYPES = {
    "action": np.int8, "side": np.int8, "price_raw": np.int64, "size": np.int32, "order_id": np.int64,
    "flags": np.int16, "instrument_id": np.int32, "publisher_id": np.int16, "ts_event": np.int64,
    "ts_recv": np.int64, "sequence": np.int64,
}  # fmt: skip

BBO_COLUMNS = (
    "ts_recv", "ts_event", "instrument_id", "publisher_id", "price_raw", "size", "side", "flags",
    "sequence", "bid_px_00", "ask_px_00", "bid_sz_00", "ask_sz_00", "bid_ct_00", "ask_ct_00",
)  # fmt: skip

# per-book sampler state: columns of ``bbo``
(B_DIRTY, B_TRADE_PX, B_TRADE_SZ, B_TRADE_SIDE, B_TRADE_TS, B_SEQ, B_FLAGS,
 B_BID_PX, B_BID_SZ, B_BID_CT, B_ASK_PX, B_ASK_SZ, B_ASK_CT) = range(13)  # fmt: skip
BW = 13
# sampler scalars: ``bmeta``
BM_END, BM_NDIRTY, BM_NINIT = range(3)
# rows of the output (one column per BBO row): book index, then BBO_COLUMNS without the ids
OUT_ROWS = 14


@njit(cache=True)
def _init_books(bb, bm, nbooks):  # pragma: no cover - compiled
    for b in range(bm[BM_NINIT], nbooks):
        r = b * BW
        for f in range(BW):
            bb[r + f] = 0
        bb[r + B_TRADE_PX] = UNDEF_PRICE
        bb[r + B_TRADE_SIDE] = SIDE_NONE
        bb[r + B_TRADE_TS] = UNDEF_TIMESTAMP
        bb[r + B_BID_PX] = UNDEF_PRICE
        bb[r + B_ASK_PX] = UNDEF_PRICE
    bm[BM_NINIT] = max(bm[BM_NINIT], nbooks)


@njit(cache=True)
def _touch(bb, bm, dirty, b, seq, fl):  # pragma: no cover - compiled
    r = b * BW
    bb[r + B_SEQ] = seq
    bb[r + B_FLAGS] = fl
    if bb[r + B_DIRTY] == 0:
        bb[r + B_DIRTY] = 1
        dirty[bm[BM_NDIRTY]] = b
        bm[BM_NDIRTY] += 1


@njit(cache=True)
def _sample_top(s, lv, bb, b):  # pragma: no cover - compiled
    """Store book ``b``'s top of book; True if it differs from the stored one."""
    changed = False
    for side in range(2):
        bs = 2 * b + side
        n = s[bs * SW + S_N]
        px = np.int64(UNDEF_PRICE)
        sz = np.int64(0)
        ct = np.int64(0)
        if n > 0:
            i = (s[bs * SW + S_OFF] + n - 1) * LW
            px = lv[i + L_KEY] if side == 1 else -lv[i + L_KEY]
            sz = lv[i + L_SIZE]
            ct = lv[i + L_COUNT]
        r = b * BW + (B_BID_PX if side == 1 else B_ASK_PX)
        if bb[r] != px or bb[r + 1] != sz or bb[r + 2] != ct:
            bb[r] = px
            bb[r + 1] = sz
            bb[r + 2] = ct
            changed = True
    return changed


@njit(cache=True)
def _flush(bb, bm, dirty, out, w):  # pragma: no cover - compiled
    """Emit a row per dirty book (interval end ``bm[BM_END]``); returns the next output column."""
    for k in range(bm[BM_NDIRTY]):
        b = dirty[k]
        r = b * BW
        out[0, w] = b
        out[1, w] = bm[BM_END]
        out[2, w] = bb[r + B_TRADE_TS]
        out[3, w] = bb[r + B_TRADE_PX]
        out[4, w] = bb[r + B_TRADE_SZ]
        out[5, w] = bb[r + B_TRADE_SIDE]
        out[6, w] = bb[r + B_FLAGS]
        out[7, w] = bb[r + B_SEQ]
        out[8, w] = bb[r + B_BID_PX]
        out[9, w] = bb[r + B_ASK_PX]
        out[10, w] = bb[r + B_BID_SZ]
        out[11, w] = bb[r + B_ASK_SZ]
        out[12, w] = bb[r + B_BID_CT]
        out[13, w] = bb[r + B_ASK_CT]
        bb[r + B_DIRTY] = 0
        w += 1
    bm[BM_NDIRTY] = 0
    return w


@njit(cache=True)
def bbo_block(orders, sides, levels, books, meta, bbo, bmeta, dirty, action, side, price, size, order_id, flags, instrument_id, publisher_id, ts_event, ts_recv, sequence, start, stop, interval, final, out, w):  # pragma: no cover - compiled  # fmt: skip
    """Replay rows ``[start, stop)`` and write the BBO rows of every interval that ends into ``out``.

    ``bbo`` (int64 ``[book capacity, 13]``), ``bmeta`` (int64[3]) and ``dirty`` (int64[book
    capacity]) are the sampler's state. ``out`` is int64 ``[14, capacity]``, one column per row
    from column ``w`` on: book index, then :data:`BBO_COLUMNS` without the two ids. With ``final``
    the pending interval is emitted at the end. Returns ``(next_row, next_w)``; ``meta[M_STATUS]``
    says why it stopped (``NEED_OUTPUT``: call again with room).
    """
    set_capacities(orders, levels, books, meta)
    o = data_ptr(orders)
    s = data_ptr(sides)
    lv = data_ptr(levels)
    bk = data_ptr(books)
    m = data_ptr(meta)
    bb = data_ptr(bbo)
    bm = data_ptr(bmeta)
    m[M_STATUS] = OK
    cap = out.shape[1]
    last_iid = np.int64(-1)
    last_pid = np.int64(-1)
    b = np.int64(-1)
    for i in range(start, stop):
        t = np.int64(ts_recv[i])
        if bm[BM_END] >= 0 and t >= bm[BM_END]:  # a new interval: emit the last one
            if w + bm[BM_NDIRTY] > cap:
                m[M_STATUS] = NEED_OUTPUT
                return i, w
            w = _flush(bb, bm, dirty, out, w)
            bm[BM_END] = -1
        if bm[BM_END] < 0:
            bm[BM_END] = (t // interval + 1) * interval
        iid = np.int64(instrument_id[i])
        pid = np.int64(publisher_id[i])
        if b < 0 or iid != last_iid or pid != last_pid:
            b = book_of(bk, s, m, iid, pid)
            if b < 0:
                m[M_STATUS] = NEED_BOOKS if b == -1 else NEED_LEVELS
                return i, w
            _init_books(bb, bm, b + 1)
            last_iid = iid
            last_pid = pid
        sz, fl = record_fields(size, flags, i)
        act = np.int64(action[i])
        status = apply_record(
            o, s, lv, m, b, act, np.int64(side[i]), np.int64(price[i]), sz, np.int64(order_id[i]), fl
        )
        if status != OK:
            m[M_STATUS] = status
            return i, w
        m[M_COUNTERS + C_RECORDS] += 1
        if act == ACT_TRADE:
            r = b * BW
            bb[r + B_TRADE_PX] = price[i]
            bb[r + B_TRADE_SZ] = sz
            bb[r + B_TRADE_SIDE] = side[i]
            bb[r + B_TRADE_TS] = ts_event[i]
            _touch(bb, bm, dirty, b, sequence[i], fl)
        if fl & F_LAST:
            check_cross(s, lv, m, b)
            if _sample_top(s, lv, bb, b):
                _touch(bb, bm, dirty, b, sequence[i], fl)
    if final and bm[BM_NDIRTY] > 0:
        if w + bm[BM_NDIRTY] > cap:
            m[M_STATUS] = NEED_OUTPUT
            return stop, w
        w = _flush(bb, bm, dirty, out, w)
        bm[BM_END] = -1
    return stop, w


def _interval_ns(interval: str | int) -> int:
    if isinstance(interval, str):
        if interval not in INTERVALS:
            msg = f"The BBO `interval` must be one of {sorted(INTERVALS)} or nanoseconds, got {interval!r}."
            raise ValueError(msg)
        return INTERVALS[interval]
    ns = int(interval)
    if ns <= 0:
        msg = f"The BBO `interval` must be positive, got {interval!r}."
        raise ValueError(msg)
    return ns


class BboSampler:
    """BBO rows of an MBO stream, block by block (the books replay as they are sampled).

    The sampler must see every record of its books: replaying into ``books`` some other way in
    between would change their top of book unseen.

    Parameters
    ----------
    books : OrderBooks
        The books to replay into (their state moves on with every block).
    interval : "1s", "1m" or int
        Sampling interval (nanoseconds if an int).
    """

    def __init__(self, books: OrderBooks, interval: str | int = "1s"):
        self.books = books
        self.interval = _interval_ns(interval)
        nb = books.state.book_capacity
        self._bbo = np.zeros((nb, BW), dtype=np.int64)
        self._dirty = np.zeros(nb, dtype=np.int64)
        self._bmeta = np.array([-1, 0, 0], dtype=np.int64)

    def _fit_books(self) -> None:
        nb = self.books.state.book_capacity
        if len(self._bbo) < nb:
            bbo = np.zeros((nb, BW), dtype=np.int64)
            bbo[: len(self._bbo)] = self._bbo
            dirty = np.zeros(nb, dtype=np.int64)
            dirty[: len(self._dirty)] = self._dirty
            self._bbo, self._dirty = bbo, dirty

    def apply(
        self, columns: Mapping[str, np.ndarray], upto: int | None = None, start: int = 0, final: bool = False
    ) -> dict[str, np.ndarray]:
        """Replay rows ``[start, upto)``; returns the BBO rows of the intervals that ended (all with ``final``).

        ``columns`` needs what :meth:`OrderBooks.apply` needs plus ``ts_event``, ``ts_recv`` and
        ``sequence``.
        """
        cols = column_arrays(columns, (*BOOK_COLUMNS, "ts_event", "ts_recv", "sequence"))
        n = len(cols[0])
        stop = n if upto is None else int(upto)
        if not 0 <= start <= stop <= n:
            msg = f"The rows [`start`, `upto`) = [{start}, {stop}) are outside the block of {n} rows."
            raise ValueError(msg)
        parts = []
        i = start
        while True:
            self._fit_books()
            room = max(4096, 4 * self.books.state.book_capacity, (stop - i) // 16)
            out = np.empty((OUT_ROWS, room), dtype=np.int64)
            state = (self._bbo, self._bmeta, self._dirty)
            args: tuple[Any, ...] = (*self.books.state, *state, *cols, i, stop, self.interval, final, out, 0)
            i, w = bbo_block(*args)
            parts.append(out[:, :w])
            status = int(self.books.state.meta[M_STATUS])
            if status == OK:
                break
            if status != NEED_OUTPUT:
                self.books.grow(status)
        self.books.tune()
        return self._columns(np.concatenate(parts, axis=1))

    def flush(self) -> dict[str, np.ndarray]:
        """The rows of the pending interval (as ``apply(..., final=True)`` would end with)."""
        return self.apply({name: np.empty(0, dt) for name, dt in _DTYPES.items()}, final=True)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The sampler's own state (the books checkpoint separately), as new arrays."""
        nb = self.books.state.nbooks
        return {
            "bbo_interval": np.array([self.interval], np.int64),
            "bbo_meta": self._bmeta.copy(),
            "bbo_books": self._bbo[:nb].copy(),
            "bbo_dirty": self._dirty[: int(self._bmeta[BM_NDIRTY])].copy(),
        }

    @classmethod
    def from_state_arrays(cls, books: OrderBooks, arrays: Mapping[str, np.ndarray]) -> BboSampler:
        """A sampler that continues from :meth:`state_arrays` (with ``books`` restored from theirs)."""
        sampler = cls(books, int(arrays["bbo_interval"][0]))
        sampler._fit_books()
        rows = np.asarray(arrays["bbo_books"], np.int64)
        sampler._bbo[: len(rows)] = rows
        dirty = np.asarray(arrays["bbo_dirty"], np.int64)
        sampler._dirty[: len(dirty)] = dirty
        sampler._bmeta[:] = np.asarray(arrays["bbo_meta"], np.int64)
        return sampler

    def _columns(self, out: np.ndarray) -> dict[str, np.ndarray]:
        keys = self.books.state.books[out[0]]
        cols = {"ts_recv": out[1].copy(), "ts_event": out[2].copy()}
        cols["instrument_id"] = (keys >> 16).astype(np.uint32).view(np.int32)
        cols["publisher_id"] = (keys & 0xFFFF).astype(np.uint16).view(np.int16)
        for r, name in enumerate(BBO_COLUMNS[4:], start=3):
            cols[name] = out[r].copy()
        cols["side"] = cols["side"].astype(np.int8)
        return cols


def derive_bbo(
    books: OrderBooks, columns: Mapping[str, np.ndarray], interval: str | int = "1s"
) -> dict[str, np.ndarray]:
    """Every BBO row of ``columns`` replayed into ``books`` (the last interval included)."""
    return BboSampler(books, interval).apply(columns, final=True)
