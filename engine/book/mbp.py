"""MBP-N (market by price) rows derived while replaying MBO: MBP-10, MBP-1 or any depth.

Emission rule (Databento's MBP schemas give "every order book event across the top N price
levels ... includes every trade"; the exact rule is ours):

- A Trade (T) record emits a row (the book is unchanged by it).
- An Add, Cancel or Modify record emits a row if it changed a level and one level it touched was
  within the top N of its side, before the change (a level that went away or the old level of a
  price change) or after it. So do Clear (R) records and F_TOB records.
- Fill (F) and None (N) records, and records that change no level (an unknown Cancel, a
  Cancel of size 0, a Modify to the same price and size, ignored bad records) emit nothing.

Each row is the book *after* its record. ``action``, ``side``, ``price_raw`` (the MBP price),
``size``, ``flags``, ``ts_event``, ``ts_recv``, ``ts_in_delta``, ``sequence``, ``instrument_id``,
``publisher_id`` are the MBO record's own and ``row`` is its index in the input; rows keep feed order, one row per record at most, so a multi-record event
emits several rows and only its last carries F_LAST (consumers wanting consistent books keep
the F_LAST rows). ``depth`` is the level (0 = best) the event touched on its side: the level's
depth after the change, or, when that is not in the top N (or the level went away), the depth
it had before; for a trade, the depth of the trade price on the resting side (the side opposite
the aggressor; for side N the bid side, then the ask side), 0 if no level has that price.

Level columns: ``bid_px_00 .. bid_px_{N-1}``, ``ask_px_..`` (int64 price_raw, 1e-9 units,
UNDEF_PRICE for a missing level, as Databento), ``bid_sz_..``, ``ask_sz_..``, ``bid_ct_..``,
``ask_ct_..`` (int64, 0 for a missing level; int64 rather than Databento's uint32 so a large
aggregate cannot wrap). :func:`price_to_float` gives float prices (NaN for UNDEF).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numba import njit

from engine.book.book import OrderBooks
from engine.book.codes import (
    ACT_CLEAR,
    ACT_TRADE,
    BOOK_COLUMNS,
    C_RECORDS,
    F_LAST,
    SIDE_ASK,
    SIDE_BID,
    UNDEF_PRICE,
    column_arrays,
)
from engine.book.kernels import apply_record, book_of, check_cross, record_fields
from engine.book.pointers import data_ptr
from engine.book.state import (
    EV_CHANGED,
    EV_DEPTH,
    EV_MIN_DEPTH,
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
from engine.book.table import level_search, set_capacities

__all__ = ["MBP_RECORD_COLUMNS", "derive_mbp", "iter_mbp", "level_columns", "mbp_block", "price_to_float"]

MBP_RECORD_COLUMNS = (
    "ts_recv", "ts_event", "instrument_id", "publisher_id", "action", "side", "price_raw", "size",
    "flags", "ts_in_delta", "sequence",
)  # fmt: skip
"""Columns an MBP row copies from its MBO record (``price_raw`` is the MBP ``price``)."""

_FIELDS = ("bid_px", "ask_px", "bid_sz", "ask_sz", "bid_ct", "ask_ct")


def level_columns(depth: int) -> list[str]:
    """Names of the level columns: ``bid_px_00, ..., ask_ct_{depth-1:02d}``, field by field."""
    return [f"{f}_{k:02d}" for f in _FIELDS for k in range(depth)]


@njit(cache=True)
def _level_depth(s, lv, bs, price):  # pragma: no cover - compiled
    """Depth of level ``price`` on side ``bs``, or -1."""
    key = price if (bs & 1) == SIDE_BID else -price
    pos = level_search(lv, s, bs, key)
    n = s[bs * SW + S_N]
    if pos < n and lv[(s[bs * SW + S_OFF] + pos) * LW + L_KEY] == key:
        return n - 1 - pos
    return -1


@njit(cache=True)
def _trade_depth(s, lv, b, sd, price):  # pragma: no cover - compiled
    if sd == SIDE_ASK:
        d = _level_depth(s, lv, 2 * b + SIDE_BID, price)
    elif sd == SIDE_BID:
        d = _level_depth(s, lv, 2 * b + SIDE_ASK, price)
    else:
        d = _level_depth(s, lv, 2 * b + SIDE_BID, price)
        if d < 0:
            d = _level_depth(s, lv, 2 * b + SIDE_ASK, price)
    return max(d, 0)


@njit(cache=True)
def _snapshot(s, lv, b, depth, out, w):  # pragma: no cover - compiled
    """Write the top ``depth`` levels of book ``b`` into column ``w`` of ``out`` (rows 2..)."""
    for side in range(2):
        bs = 2 * b + side
        n = s[bs * SW + S_N]
        off = s[bs * SW + S_OFF]
        px_row = 2 + (1 - side) * depth  # bid fields first, as Databento
        for k in range(depth):
            if k < n:
                i = (off + n - 1 - k) * LW
                key = lv[i + L_KEY]
                out[px_row + k, w] = key if side == SIDE_BID else -key
                out[px_row + 2 * depth + k, w] = lv[i + L_SIZE]
                out[px_row + 4 * depth + k, w] = lv[i + L_COUNT]
            else:
                out[px_row + k, w] = UNDEF_PRICE
                out[px_row + 2 * depth + k, w] = 0
                out[px_row + 4 * depth + k, w] = 0


@njit(cache=True)
def mbp_block(orders, sides, levels, books, meta, action, side, price, size, order_id, flags, instrument_id, publisher_id, start, stop, depth, out, w):  # pragma: no cover - compiled  # fmt: skip
    """Replay rows ``[start, stop)`` and write an MBP-``depth`` row per emitting record into ``out``.

    ``out`` is int64 ``[2 + 6*depth, capacity]``: one column per MBP row, so every output field
    is a contiguous row of ``out``, filled from column ``w`` on: input row index, depth, then the
    level fields (``bid_px`` x depth, ``ask_px``, ``bid_sz``, ``ask_sz``, ``bid_ct``,
    ``ask_ct``). Returns ``(next_row, next_w)``; ``meta[M_STATUS]`` says why it stopped
    (``NEED_OUTPUT`` when ``out`` is full).
    """
    set_capacities(orders, levels, books, meta)
    o = data_ptr(orders)
    s = data_ptr(sides)
    lv = data_ptr(levels)
    bk = data_ptr(books)
    m = data_ptr(meta)
    m[M_STATUS] = OK
    cap = out.shape[1]
    last_iid = np.int64(-1)
    last_pid = np.int64(-1)
    b = np.int64(-1)
    for i in range(start, stop):
        if w >= cap:
            m[M_STATUS] = NEED_OUTPUT
            return i, w
        iid = np.int64(instrument_id[i])
        pid = np.int64(publisher_id[i])
        if b < 0 or iid != last_iid or pid != last_pid:
            b = book_of(bk, s, m, iid, pid)
            if b < 0:
                m[M_STATUS] = NEED_BOOKS if b == -1 else NEED_LEVELS
                return i, w
            last_iid = iid
            last_pid = pid
        sz, fl = record_fields(size, flags, i)
        act = np.int64(action[i])
        sd = np.int64(side[i])
        px = np.int64(price[i])
        status = apply_record(o, s, lv, m, b, act, sd, px, sz, np.int64(order_id[i]), fl)
        if status != OK:
            m[M_STATUS] = status
            return i, w
        m[M_COUNTERS + C_RECORDS] += 1
        if fl & F_LAST:
            check_cross(s, lv, m, b)
        if act == ACT_TRADE:
            d = _trade_depth(s, lv, b, sd, px)
        elif m[EV_CHANGED] != 0 and (act == ACT_CLEAR or m[EV_MIN_DEPTH] < depth):
            d = m[EV_DEPTH] if (m[EV_DEPTH] < depth or act == ACT_CLEAR) else m[EV_MIN_DEPTH]
        else:
            continue
        out[0, w] = i
        out[1, w] = d
        _snapshot(s, lv, b, depth, out, w)
        w += 1
    return stop, w


def price_to_float(price_raw: np.ndarray) -> np.ndarray:
    """int64 prices (1e-9 units) -> float64, NaN where UNDEF_PRICE."""
    out = price_raw.astype(np.float64) / 1e9
    out[price_raw == UNDEF_PRICE] = np.nan
    return out


def iter_mbp(
    books: OrderBooks,
    columns: Mapping[str, np.ndarray],
    depth: int = 10,
    start: int = 0,
    upto: int | None = None,
    chunk_rows: int = 1 << 16,
) -> Iterator[dict[str, np.ndarray]]:
    """Replay rows ``[start, upto)`` into ``books`` and yield MBP-``depth`` rows, ``chunk_rows`` at most at a time.

    Each chunk is a dict of new arrays: :data:`MBP_RECORD_COLUMNS` (gathered from ``columns``),
    ``depth`` (int64), ``row`` (the input row of each MBP row) and :func:`level_columns`.
    ``columns`` needs what :meth:`OrderBooks.apply` needs plus :data:`MBP_RECORD_COLUMNS`.
    """
    if not 1 <= depth <= 255:
        msg = f"The MBP `depth` must be 1..255, got {depth}."
        raise ValueError(msg)
    cols = column_arrays(columns, BOOK_COLUMNS)
    column_arrays(columns, [BOOK_COLUMNS[0], *MBP_RECORD_COLUMNS])
    n = len(cols[0])
    stop = n if upto is None else int(upto)
    if not 0 <= start <= stop <= n:
        msg = f"The rows [`start`, `upto`) = [{start}, {stop}) are outside the block of {n} rows."
        raise ValueError(msg)
    names = level_columns(depth)
    i = start
    while i < stop:
        out = np.empty((2 + 6 * depth, min(chunk_rows, stop - i)), dtype=np.int64)
        w = 0
        while True:
            args: tuple[Any, ...] = (*books.state, *cols, i, stop, depth, out, w)
            i, w = mbp_block(*args)
            status = int(books.state.meta[M_STATUS])
            if status in (OK, NEED_OUTPUT):
                break
            books.grow(status)
        if w == 0:
            continue
        rows = out[0, :w]
        chunk = {name: np.asarray(columns[name]).take(rows) for name in MBP_RECORD_COLUMNS}
        chunk["depth"] = out[1, :w]
        chunk["row"] = rows
        for r, name in enumerate(names):
            chunk[name] = out[2 + r, :w]  # contiguous views of this chunk's own buffer
        yield chunk
    books.tune()


def derive_mbp(
    books: OrderBooks,
    columns: Mapping[str, np.ndarray],
    depth: int = 10,
    start: int = 0,
    upto: int | None = None,
) -> dict[str, np.ndarray]:
    """All the MBP-``depth`` rows of rows ``[start, upto)`` at once (see :func:`iter_mbp`)."""
    chunks = list(iter_mbp(books, columns, depth, start, upto))
    if not chunks:
        names = [*MBP_RECORD_COLUMNS, "depth", "row", *level_columns(depth)]
        return {name: np.empty(0, np.int64) for name in names}
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
