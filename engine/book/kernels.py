"""Replay kernels: MBO records in feed order -> per-book order tables and price levels.

One book per ``(instrument_id, publisher_id)``. A record is applied by :func:`apply_record`
(Databento's MBO normalization; :mod:`engine.book` states the semantics and every decision
taken where the docs are silent); :func:`apply_block` loops it over a block of column arrays.
Kernels return the row they stopped at and leave the reason in ``meta[M_STATUS]``: ``OK`` (all
rows done) or ``NEED_*`` when a table is full. No row is half applied: the caller grows the
table (:mod:`engine.book.checkpoint`) and calls again from that row.

After each record ``meta[EV_*]`` describes its effect on the levels: ``EV_CHANGED`` (1 if a
level changed), ``EV_SIDE`` (side of the level it changed, -1 for a clear), ``EV_DEPTH`` (depth
of that level, 0 = best: after the change, or before it when the level went away),
``EV_MIN_DEPTH`` (smallest depth touched, also counting the old level of a price change). The
MBP derivation (:mod:`engine.book.mbp`) emits rows from it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book.codes import (
    ACT_ADD,
    ACT_CANCEL,
    ACT_CLEAR,
    ACT_FILL,
    ACT_MODIFY,
    ACT_NONE,
    ACT_TRADE,
    C_BAD_ACTION,
    C_BAD_SIDE,
    C_CLEARS,
    C_CROSSED_AT_LAST,
    C_DUPLICATE_ADD,
    C_LOCKED_AT_LAST,
    C_PRICE_MISMATCH,
    C_RECORDS,
    C_SIDE_MISMATCH,
    C_SIZE_UNDERFLOW,
    C_TOB_UPDATES,
    C_UNDEF_PRICE,
    C_UNKNOWN_CANCEL,
    C_UNKNOWN_MODIFY,
    C_ZERO_SIZE,
    F_LAST,
    F_TOB,
    SIDE_ASK,
    SIDE_BID,
    UNDEF_PRICE,
)
from engine.book.pointers import data_ptr
from engine.book.state import (
    EV_CHANGED,
    EV_DEPTH,
    EV_MIN_DEPTH,
    EV_SIDE,
    INIT_LEVELS,
    L_COUNT,
    L_KEY,
    L_SIZE,
    LW,
    M_BOOK_CAP,
    M_COUNTERS,
    M_FILLED,
    M_LIVE,
    M_MAX_FILL,
    M_NBOOKS,
    M_POOL_CAP,
    M_POOL_USED,
    M_PRIO,
    M_STATUS,
    NEED_BOOKS,
    NEED_LEVELS,
    NEED_ORDERS,
    O_PRICE,
    O_PRIO,
    O_SIZE,
    O_TAG,
    OK,
    OW,
    S_EPOCH,
    S_LIVE,
    S_N,
    S_OFF,
    SW,
)
from engine.book.table import (
    claim_slot,
    find_book,
    insert_book,
    level_insert,
    level_remove,
    level_room,
    level_search,
    locate_order,
    move_order,
    remove_order,
    set_capacities,
    tag_side,
)

__all__ = [
    "apply_block",
    "apply_record",
    "best_price",
    "book_key_of",
    "book_of",
    "check_cross",
    "record_fields",
]

_FAR = 1 << 40  # "no depth" for EV_MIN_DEPTH
_CR = M_COUNTERS  # counters start here in meta


@njit(cache=True)
def book_key_of(instrument_id, publisher_id):  # pragma: no cover - compiled
    """``(instrument_id << 16) | publisher_id`` over their uint32 / uint16 bits."""
    return ((np.int64(instrument_id) & 0xFFFFFFFF) << 16) | (np.int64(publisher_id) & 0xFFFF)


@njit(cache=True)
def book_of(bk, s, m, instrument_id, publisher_id):  # pragma: no cover - compiled
    """Book index of the pair, registering a new book; -1 if the book arrays are full, -2 the pool."""
    key = book_key_of(instrument_id, publisher_id)
    b = find_book(bk, m, key)
    if b >= 0:
        return b
    if m[M_NBOOKS] >= m[M_BOOK_CAP]:
        return -1
    if m[M_POOL_USED] + 2 * INIT_LEVELS > m[M_POOL_CAP]:
        return -2
    return insert_book(bk, s, m, key)


@njit(cache=True)
def record_fields(size, flags, i):  # pragma: no cover - compiled
    """Row ``i``'s size and flags as the unsigned values they are (the lake stores them signed)."""
    sz = np.int64(size[i])
    if sz < 0:
        sz += np.int64(1) << 32
    return sz, np.int64(flags[i]) & 0xFF


@njit(cache=True)
def _key(side, price):  # pragma: no cover - compiled
    return price if side == SIDE_BID else -price


@njit(cache=True)
def _next_prio(m):  # pragma: no cover - compiled
    m[M_PRIO] += 1
    return m[M_PRIO]


@njit(cache=True)
def _ev(m, side, depth, min_depth):  # pragma: no cover - compiled
    m[EV_CHANGED] = 1
    m[EV_SIDE] = side
    m[EV_DEPTH] = depth
    m[EV_MIN_DEPTH] = min_depth


@njit(cache=True)
def _room_for(lv, s, m, bs, price):  # pragma: no cover - compiled
    """True if side ``bs`` has level ``price`` or room for it (may move the segment)."""
    key = _key(bs & 1, price)
    pos = level_search(lv, s, bs, key)
    if pos < s[bs * SW + S_N] and lv[(s[bs * SW + S_OFF] + pos) * LW + L_KEY] == key:
        return True
    return level_room(lv, s, m, bs)


@njit(cache=True)
def _level_sub(lv, s, bs, price, size, count):  # pragma: no cover - compiled
    """Take ``size`` and ``count`` from level ``price``, dropped once empty; returns its depth before."""
    key = _key(bs & 1, price)
    pos = level_search(lv, s, bs, key)
    n = s[bs * SW + S_N]
    i = (s[bs * SW + S_OFF] + pos) * LW
    if pos >= n or lv[i + L_KEY] != key:  # unreachable: levels are the sum of their orders
        return _FAR
    lv[i + L_SIZE] -= size
    lv[i + L_COUNT] -= count
    if lv[i + L_COUNT] <= 0 and lv[i + L_SIZE] <= 0:
        level_remove(lv, s, bs, pos)
    return n - 1 - pos


@njit(cache=True)
def _level_add(lv, s, bs, price, size, count):  # pragma: no cover - compiled
    """Add to level ``price``, creating it (room was made by :func:`_room_for`); returns its depth."""
    key = _key(bs & 1, price)
    pos = level_search(lv, s, bs, key)
    i = (s[bs * SW + S_OFF] + pos) * LW
    if pos >= s[bs * SW + S_N] or lv[i + L_KEY] != key:
        level_insert(lv, s, bs, pos, key)
    lv[i + L_SIZE] += size
    lv[i + L_COUNT] += count
    return s[bs * SW + S_N] - 1 - pos


@njit(cache=True)
def _clear_side(s, m, bs):  # pragma: no cover - compiled
    """Drop every order and level of one book side in O(1): the epoch bump makes its orders stale."""
    r = bs * SW
    s[r + S_EPOCH] += 1
    m[M_LIVE] -= s[r + S_LIVE]
    s[r + S_LIVE] = 0
    s[r + S_N] = 0


@njit(cache=True)
def _new_order(o, s, lv, m, b, side, price, size, oid, j, min_depth):  # pragma: no cover - compiled
    claim_slot(o, s, m, j, b, oid, side)
    o[j * OW + O_PRICE] = price
    o[j * OW + O_SIZE] = size
    o[j * OW + O_PRIO] = _next_prio(m)
    d = _level_add(lv, s, 2 * b + side, price, size, 1)
    _ev(m, side, d, min(d, min_depth))


@njit(cache=True)
def _apply_add(o, s, lv, m, b, sd, px, sz, oid):  # pragma: no cover - compiled
    if sd != SIDE_ASK and sd != SIDE_BID:
        m[_CR + C_BAD_SIDE] += 1
        return OK
    if px == UNDEF_PRICE:
        m[_CR + C_UNDEF_PRICE] += 1
        return OK
    if sz <= 0:
        m[_CR + C_ZERO_SIZE] += 1
        return OK
    if m[M_FILLED] >= m[M_MAX_FILL]:
        return NEED_ORDERS
    bs = 2 * b + sd
    key = _key(sd, px)
    pos = level_search(lv, s, bs, key)
    found = pos < s[bs * SW + S_N] and lv[(s[bs * SW + S_OFF] + pos) * LW + L_KEY] == key
    if not found and not level_room(lv, s, m, bs):
        return NEED_LEVELS
    j, free = locate_order(o, s, m, b, oid)
    if j >= 0:  # an Add of a resting order id replaces it (back of the queue)
        m[_CR + C_DUPLICATE_ADD] += 1
        obs = 2 * b + tag_side(o[j * OW + O_TAG])
        min_depth = _level_sub(lv, s, obs, o[j * OW + O_PRICE], o[j * OW + O_SIZE], 1)
        remove_order(o, s, m, j)
        _new_order(o, s, lv, m, b, sd, px, sz, oid, j, min_depth)
        return OK
    # the common case: one level search for the whole record
    claim_slot(o, s, m, free, b, oid, sd)
    o[free * OW + O_PRICE] = px
    o[free * OW + O_SIZE] = sz
    o[free * OW + O_PRIO] = _next_prio(m)
    if not found:
        level_insert(lv, s, bs, pos, key)
    i = (s[bs * SW + S_OFF] + pos) * LW
    lv[i + L_SIZE] += sz
    lv[i + L_COUNT] += 1
    d = s[bs * SW + S_N] - 1 - pos
    _ev(m, sd, d, d)
    return OK


@njit(cache=True)
def _apply_cancel(o, s, lv, m, b, sd, px, sz, oid):  # pragma: no cover - compiled
    j, _ = locate_order(o, s, m, b, oid)
    if j < 0:
        m[_CR + C_UNKNOWN_CANCEL] += 1
        return OK
    osd = tag_side(o[j * OW + O_TAG])
    opx = o[j * OW + O_PRICE]
    osz = o[j * OW + O_SIZE]
    if sd != osd:
        m[_CR + C_SIDE_MISMATCH] += 1
    if px != opx:
        m[_CR + C_PRICE_MISMATCH] += 1
    c = sz
    if c > osz:
        m[_CR + C_SIZE_UNDERFLOW] += 1
        c = osz
    if c <= 0:
        return OK
    if c == osz:
        d = _level_sub(lv, s, 2 * b + osd, opx, c, 1)
        remove_order(o, s, m, j)
    else:
        o[j * OW + O_SIZE] = osz - c
        d = _level_sub(lv, s, 2 * b + osd, opx, c, 0)
    _ev(m, osd, d, d)
    return OK


@njit(cache=True)
def _apply_modify(o, s, lv, m, b, sd, px, sz, oid):  # pragma: no cover - compiled
    if m[M_FILLED] >= m[M_MAX_FILL]:
        return NEED_ORDERS
    j, free = locate_order(o, s, m, b, oid)
    osd = tag_side(o[j * OW + O_TAG]) if j >= 0 else np.int64(-1)
    nsd = sd if (sd in (SIDE_ASK, SIDE_BID)) else osd
    npx = o[j * OW + O_PRICE] if (px == UNDEF_PRICE and j >= 0) else px
    if nsd >= 0 and npx != UNDEF_PRICE and not _room_for(lv, s, m, 2 * b + nsd, npx):
        return NEED_LEVELS
    # no NEED_* return below this line: the record is applied
    if j < 0:  # a Modify of an unknown order is an Add
        m[_CR + C_UNKNOWN_MODIFY] += 1
        if nsd < 0:
            m[_CR + C_BAD_SIDE] += 1
        elif npx == UNDEF_PRICE:
            m[_CR + C_UNDEF_PRICE] += 1
        elif sz <= 0:
            m[_CR + C_ZERO_SIZE] += 1
        else:
            _new_order(o, s, lv, m, b, nsd, npx, sz, oid, free, _FAR)
        return OK
    opx = o[j * OW + O_PRICE]
    osz = o[j * OW + O_SIZE]
    obs = 2 * b + osd
    if sd != osd:
        m[_CR + C_SIDE_MISMATCH] += 1
    if px == UNDEF_PRICE:
        m[_CR + C_UNDEF_PRICE] += 1
    if sz <= 0:  # a Modify to size 0 removes the order
        m[_CR + C_ZERO_SIZE] += 1
        d = _level_sub(lv, s, obs, opx, osz, 1)
        remove_order(o, s, m, j)
        _ev(m, osd, d, d)
        return OK
    if nsd != osd or npx != opx:  # new price (or side): back of the queue at the new level
        d_old = _level_sub(lv, s, obs, opx, osz, 1)
        if nsd != osd:
            move_order(o, s, j, nsd)
        o[j * OW + O_PRICE] = npx
        o[j * OW + O_SIZE] = sz
        o[j * OW + O_PRIO] = _next_prio(m)
        d_new = _level_add(lv, s, 2 * b + nsd, npx, sz, 1)
        _ev(m, nsd, d_new, min(d_old, d_new))
        return OK
    if sz > osz:  # a larger size loses priority, a smaller one keeps it
        o[j * OW + O_PRIO] = _next_prio(m)
    if sz != osz:
        o[j * OW + O_SIZE] = sz
        d = _level_add(lv, s, obs, opx, sz - osz, 0)
        _ev(m, osd, d, d)
    return OK


@njit(cache=True)
def _apply_tob(s, lv, m, b, sd, px, sz):  # pragma: no cover - compiled
    """A top-of-book record (F_TOB): its side becomes one level with no orders (or empty)."""
    if sd != SIDE_ASK and sd != SIDE_BID:
        m[_CR + C_BAD_SIDE] += 1
        return OK
    bs = 2 * b + sd
    m[_CR + C_TOB_UPDATES] += 1
    _clear_side(s, m, bs)
    if px != UNDEF_PRICE and sz > 0:
        level_insert(lv, s, bs, 0, _key(sd, px))
        lv[s[bs * SW + S_OFF] * LW + L_SIZE] = sz
    _ev(m, sd, 0, 0)
    return OK


@njit(cache=True)
def apply_record(o, s, lv, m, b, act, sd, px, sz, oid, fl):  # pragma: no cover - compiled
    """Apply one MBO record to book ``b``; returns ``OK`` or a ``NEED_*`` status (then nothing changed).

    ``o``, ``s``, ``lv``, ``m`` are :func:`~engine.book.pointers.data_ptr` pointers to the state's
    orders, sides, levels and meta.
    """
    m[EV_CHANGED] = 0
    m[EV_SIDE] = -1
    m[EV_DEPTH] = 0
    m[EV_MIN_DEPTH] = _FAR
    if act in (ACT_ADD, ACT_CANCEL, ACT_MODIFY):
        if fl & F_TOB:
            return _apply_tob(s, lv, m, b, sd, px, sz)
        if act == ACT_ADD:
            return _apply_add(o, s, lv, m, b, sd, px, sz, oid)
        if act == ACT_CANCEL:
            return _apply_cancel(o, s, lv, m, b, sd, px, sz, oid)
        return _apply_modify(o, s, lv, m, b, sd, px, sz, oid)
    if act == ACT_CLEAR:
        _clear_side(s, m, 2 * b)
        _clear_side(s, m, 2 * b + 1)
        m[_CR + C_CLEARS] += 1
        _ev(m, -1, 0, 0)
    elif act != ACT_TRADE and act != ACT_FILL and act != ACT_NONE:
        m[_CR + C_BAD_ACTION] += 1
    return OK


@njit(cache=True)
def best_price(s, lv, bs):  # pragma: no cover - compiled
    """Best price of book side ``bs``, or UNDEF_PRICE if it is empty."""
    n = s[bs * SW + S_N]
    if n == 0:
        return np.int64(UNDEF_PRICE)
    key = lv[(s[bs * SW + S_OFF] + n - 1) * LW + L_KEY]
    return key if (bs & 1) == SIDE_BID else -key


@njit(cache=True)
def check_cross(s, lv, m, b):  # pragma: no cover - compiled
    """Count book ``b`` as crossed (best bid > best ask) or locked (equal) if it is."""
    if s[2 * b * SW + S_N] > 0 and s[(2 * b + 1) * SW + S_N] > 0:
        ask = best_price(s, lv, 2 * b)
        bid = best_price(s, lv, 2 * b + 1)
        if bid > ask:
            m[_CR + C_CROSSED_AT_LAST] += 1
        elif bid == ask:
            m[_CR + C_LOCKED_AT_LAST] += 1


@njit(cache=True)
def apply_block(orders, sides, levels, books, meta, action, side, price, size, order_id, flags, instrument_id, publisher_id, start, stop):  # pragma: no cover - compiled  # fmt: skip
    """Apply rows ``[start, stop)`` in order; returns the first row not applied (``stop`` when done).

    On return ``meta[M_STATUS]`` is ``OK``, or why the kernel stopped early (a full table).
    """
    set_capacities(orders, levels, books, meta)
    o = data_ptr(orders)
    s = data_ptr(sides)
    lv = data_ptr(levels)
    bk = data_ptr(books)
    m = data_ptr(meta)
    m[M_STATUS] = OK
    last_iid = np.int64(-1)
    last_pid = np.int64(-1)
    b = np.int64(-1)
    for i in range(start, stop):
        iid = np.int64(instrument_id[i])
        pid = np.int64(publisher_id[i])
        if b < 0 or iid != last_iid or pid != last_pid:
            b = book_of(bk, s, m, iid, pid)
            if b < 0:
                m[M_STATUS] = NEED_BOOKS if b == -1 else NEED_LEVELS
                return i
            last_iid = iid
            last_pid = pid
        sz, fl = record_fields(size, flags, i)
        status = apply_record(
            o, s, lv, m, b, np.int64(action[i]), np.int64(side[i]), np.int64(price[i]), sz,
            np.int64(order_id[i]), fl,
        )  # fmt: skip
        if status != OK:
            m[M_STATUS] = status
            return i
        m[_CR + C_RECORDS] += 1
        if fl & F_LAST:
            check_cross(s, lv, m, b)
    return stop
