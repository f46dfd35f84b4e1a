"""Numba primitives over the state: the book map, the order table, the level pool.

The per-record helpers take raw pointers (:func:`engine.book.pointers.data_ptr`) named after
the arrays of :mod:`engine.book.state`: ``o`` orders, ``s`` sides, ``lv`` levels, ``bk`` books,
``m`` meta; rows are ``row * width + column``. They allocate nothing and hold no Python
objects. The rebuild kernels at the end (rehash, pool compaction, book map) take arrays: the
Python layer calls them between replay calls when a table is full.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book.pointers import data_ptr
from engine.book.state import (
    EMPTY,
    INIT_LEVELS,
    L_COUNT,
    L_KEY,
    L_SIZE,
    LW,
    M_BOOK_CAP,
    M_FILLED,
    M_HASH_MODE,
    M_LIVE,
    M_LONG_PROBES,
    M_NBOOKS,
    M_ORDER_CAP,
    M_POOL_CAP,
    M_POOL_USED,
    O_OID,
    O_PRICE,
    O_PRIO,
    O_SIZE,
    O_TAG,
    OW,
    S_CAP,
    S_EPOCH,
    S_FINGER,
    S_LIVE,
    S_N,
    S_OFF,
    SW,
    TOMBSTONE,
)

__all__ = [
    "book_hash",
    "claim_slot",
    "compact_pool",
    "find_book",
    "insert_book",
    "insert_orders",
    "level_insert",
    "level_remove",
    "level_room",
    "level_search",
    "locate_order",
    "move_order",
    "order_hash",
    "rebuild_book_map",
    "rehash_orders",
    "remove_order",
    "set_capacities",
    "slot_live",
    "tag_book",
    "tag_side",
]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LONG_PROBE = 64
_BOOK_MASK = 0xFFFFFFFF


@njit(cache=True)
def set_capacities(orders, levels, books, meta):  # pragma: no cover - compiled
    """Record the arrays' row counts in ``meta`` (every top-level kernel does it on entry)."""
    meta[M_ORDER_CAP] = len(orders)
    meta[M_POOL_CAP] = len(levels)
    meta[M_BOOK_CAP] = len(books) // 3


# -- books ------------------------------------------------------------------------------------------
@njit(cache=True)
def book_hash(key, mask):  # pragma: no cover - compiled
    """Slot of a book key in a map of ``mask + 1`` slots (splitmix64 finalizer)."""
    x = np.uint64(key) * _GOLDEN
    x ^= x >> np.uint64(31)
    x *= _MIX1
    x ^= x >> np.uint64(29)
    return np.int64(x & np.uint64(mask))


@njit(cache=True)
def find_book(bk, m, key):  # pragma: no cover - compiled
    """Book index of ``key``, or -1."""
    nb = m[M_BOOK_CAP]
    mask = 2 * nb - 1
    j = book_hash(key, mask)
    while True:
        b = bk[nb + j]
        if b < 0:
            return -1
        if bk[b] == key:
            return b
        j = (j + 1) & mask


@njit(cache=True)
def _map_book(bk, nb, b):  # pragma: no cover - compiled
    mask = 2 * nb - 1
    j = book_hash(bk[b], mask)
    while bk[nb + j] >= 0:
        j = (j + 1) & mask
    bk[nb + j] = b


@njit(cache=True)
def insert_book(bk, s, m, key):  # pragma: no cover - compiled
    """Register a new book (the caller checked there is room for it and its levels); returns its index."""
    b = m[M_NBOOKS]
    m[M_NBOOKS] = b + 1
    bk[b] = key
    _map_book(bk, m[M_BOOK_CAP], b)
    used = m[M_POOL_USED]
    for side in range(2):
        r = (2 * b + side) * SW
        s[r + S_OFF] = used
        s[r + S_CAP] = INIT_LEVELS
        s[r + S_N] = 0
        used += INIT_LEVELS
    m[M_POOL_USED] = used
    return b


@njit(cache=True)
def rebuild_book_map(books, nbooks):  # pragma: no cover - compiled
    """Fill the (empty) map part of ``books`` from its first ``nbooks`` keys."""
    bk = data_ptr(books)
    for b in range(nbooks):
        _map_book(bk, len(books) // 3, b)


# -- orders -----------------------------------------------------------------------------------------
@njit(cache=True)
def order_hash(oid, book, mode, mask):  # pragma: no cover - compiled
    """Home slot of ``(book, order_id)``.

    Mode 0 keeps consecutive order ids of a book in consecutive slots (venues number orders
    sequentially and recent orders are the busy ones); mode 1 mixes every bit.
    """
    x = np.uint64(oid) + np.uint64(book) * _GOLDEN
    if mode != 0:
        x ^= x >> np.uint64(30)
        x *= _MIX1
        x ^= x >> np.uint64(27)
        x *= _MIX2
        x ^= x >> np.uint64(31)
    return np.int64(x & np.uint64(mask))


@njit(cache=True)
def tag_book(tag):  # pragma: no cover - compiled
    """Book index in a (non-negative) tag."""
    return tag & _BOOK_MASK


@njit(cache=True)
def tag_side(tag):  # pragma: no cover - compiled
    """Side in a (non-negative) tag."""
    return (tag >> 32) & 1


@njit(cache=True)
def _stale(s, tag):  # pragma: no cover - compiled
    """True if an occupied slot's epoch is not its book side's (a clear dropped it)."""
    return (tag >> 33) != s[(2 * (tag & _BOOK_MASK) + ((tag >> 32) & 1)) * SW + S_EPOCH]


@njit(cache=True)
def slot_live(o, s, j):  # pragma: no cover - compiled
    """True if slot ``j`` holds a live order (not empty, deleted, or dropped by a clear)."""
    tag = o[j * OW + O_TAG]
    return tag >= 0 and not _stale(s, tag)


@njit(cache=True)
def locate_order(o, s, m, book, oid):  # pragma: no cover - compiled
    """``(live_slot, free_slot)`` of ``(book, order_id)``.

    ``live_slot`` is the live order's slot or -1; ``free_slot`` is where an insert would go (the
    first deleted or stale slot on the probe path, else the empty slot ending it), -1 when the
    order is live. Probes longer than 64 slots are counted in ``meta[M_LONG_PROBES]``.
    """
    mask = m[M_ORDER_CAP] - 1
    j = order_hash(oid, book, m[M_HASH_MODE], mask)
    free = -1
    steps = 0
    live = -1
    while True:
        tag = o[j * OW + O_TAG]
        if tag == EMPTY:
            if free < 0:
                free = j
            break
        if tag == TOMBSTONE or _stale(s, tag):
            if free < 0:
                free = j
        elif (tag & _BOOK_MASK) == book and o[j * OW + O_OID] == oid:
            live = j
            free = -1
            break
        j = (j + 1) & mask
        steps += 1
    if steps > _LONG_PROBE:
        m[M_LONG_PROBES] += 1
    return live, free


@njit(cache=True)
def claim_slot(o, s, m, j, book, oid, side):  # pragma: no cover - compiled
    """Take free slot ``j`` for a new live order on ``(book, side)``; the caller sets price, size, prio."""
    if o[j * OW + O_TAG] == EMPTY:
        m[M_FILLED] += 1
    r = (2 * book + side) * SW
    o[j * OW + O_OID] = oid
    o[j * OW + O_TAG] = (s[r + S_EPOCH] << 33) | (side << 32) | book
    s[r + S_LIVE] += 1
    m[M_LIVE] += 1


@njit(cache=True)
def remove_order(o, s, m, j):  # pragma: no cover - compiled
    """Delete the live order in slot ``j`` (leaves a tombstone)."""
    tag = o[j * OW + O_TAG]
    s[(2 * (tag & _BOOK_MASK) + ((tag >> 32) & 1)) * SW + S_LIVE] -= 1
    m[M_LIVE] -= 1
    o[j * OW + O_TAG] = TOMBSTONE


@njit(cache=True)
def move_order(o, s, j, side):  # pragma: no cover - compiled
    """Move the live order in slot ``j`` to the other ``side`` of its book (same slot)."""
    tag = o[j * OW + O_TAG]
    b = tag & _BOOK_MASK
    s[(2 * b + ((tag >> 32) & 1)) * SW + S_LIVE] -= 1
    r = (2 * b + side) * SW
    s[r + S_LIVE] += 1
    o[j * OW + O_TAG] = (s[r + S_EPOCH] << 33) | (side << 32) | b


@njit(cache=True)
def rehash_orders(orders, sides, meta, new):  # pragma: no cover - compiled
    """Copy the live orders into the empty table ``new`` (hash mode from ``meta``); returns how many."""
    o = data_ptr(orders)
    s = data_ptr(sides)
    mask = len(new) - 1
    mode = meta[M_HASH_MODE]
    n = 0
    for j in range(len(orders)):
        if not slot_live(o, s, j):
            continue
        k = order_hash(orders[j, O_OID], orders[j, O_TAG] & _BOOK_MASK, mode, mask)
        while new[k, O_TAG] != EMPTY:
            k = (k + 1) & mask
        for f in range(OW):
            new[k, f] = orders[j, f]
        n += 1
    meta[M_FILLED] = n
    return n


@njit(cache=True)
def insert_orders(orders, sides, meta, book, oid, side, price, size, prio):  # pragma: no cover - compiled
    """Insert live orders (not present yet) into an empty-enough table; for checkpoint restores."""
    o = data_ptr(orders)
    s = data_ptr(sides)
    m = data_ptr(meta)
    mask = len(orders) - 1
    mode = meta[M_HASH_MODE]
    for i in range(len(oid)):
        b = np.int64(book[i])
        j = order_hash(oid[i], b, mode, mask)
        while orders[j, O_TAG] != EMPTY:
            j = (j + 1) & mask
        claim_slot(o, s, m, j, b, oid[i], np.int64(side[i]))
        orders[j, O_PRICE] = price[i]
        orders[j, O_SIZE] = size[i]
        orders[j, O_PRIO] = prio[i]


# -- levels -----------------------------------------------------------------------------------------
@njit(cache=True)
def _lower_bound(lv, at, lo, hi, key):  # pragma: no cover - compiled
    """First position in ``[lo, hi)`` whose key is >= ``key`` (``hi`` if none); branch-free halving."""
    base = lo
    n = hi - lo
    if n <= 0:
        return lo
    while n > 1:
        half = n >> 1
        base = base + half if lv[at + (base + half - 1) * LW] < key else base
        n -= half
    return base + (1 if lv[at + base * LW] < key else 0)


@njit(cache=True)
def level_search(lv, s, bs, key):  # pragma: no cover - compiled
    """Position (0-based within the side's segment) of the first level with key >= ``key``.

    Gallops from the side's finger (the last position found) to bracket the answer, then halves
    the bracket: O(log distance) when activity stays near the last touched price.
    """
    r = bs * SW
    n = s[r + S_N]
    if n == 0:
        return 0
    at = s[r + S_OFF] * LW + L_KEY
    f = min(s[r + S_FINGER], n - 1)
    step = 1
    if lv[at + f * LW] < key:  # the answer is in (f, n]
        lo = f + 1
        hi = n
        while lo + step - 1 < n:
            probe = lo + step - 1
            if lv[at + probe * LW] >= key:
                hi = probe
                break
            lo = probe + 1
            step <<= 1
    else:  # the answer is in [0, f]
        hi = f
        lo = 0
        while hi - step >= 0:
            probe = hi - step
            if lv[at + probe * LW] < key:
                lo = probe + 1
                break
            hi = probe
            step <<= 1
    pos = _lower_bound(lv, at, lo, hi, key)
    s[r + S_FINGER] = pos
    return pos


@njit(cache=True)
def level_room(lv, s, m, bs):  # pragma: no cover - compiled
    """Make room for one more level on side ``bs``; False if the pool is full (Python must compact)."""
    r = bs * SW
    n = s[r + S_N]
    cap = s[r + S_CAP]
    if n < cap:
        return True
    used = m[M_POOL_USED]
    if used + 2 * cap > m[M_POOL_CAP]:
        return False
    off = s[r + S_OFF]
    for i in range(n * LW):
        lv[used * LW + i] = lv[off * LW + i]
    s[r + S_OFF] = used
    s[r + S_CAP] = 2 * cap
    m[M_POOL_USED] = used + 2 * cap
    return True


@njit(cache=True)
def level_insert(lv, s, bs, pos, key):  # pragma: no cover - compiled
    """Insert an empty level ``key`` at ``pos`` (the caller made room with :func:`level_room`)."""
    r = bs * SW
    at = (s[r + S_OFF] + pos) * LW
    for i in range((s[r + S_OFF] + s[r + S_N]) * LW - 1, at - 1, -1):
        lv[i + LW] = lv[i]
    lv[at + L_KEY] = key
    lv[at + L_SIZE] = 0
    lv[at + L_COUNT] = 0
    s[r + S_N] += 1


@njit(cache=True)
def level_remove(lv, s, bs, pos):  # pragma: no cover - compiled
    """Remove the level at ``pos``."""
    r = bs * SW
    end = (s[r + S_OFF] + s[r + S_N] - 1) * LW
    for i in range((s[r + S_OFF] + pos) * LW, end):
        lv[i] = lv[i + LW]
    s[r + S_N] -= 1


@njit(cache=True)
def compact_pool(levels, sides, meta, new):  # pragma: no cover - compiled
    """Copy every side's levels into pool ``new``, segments back to back (full ones get twice the room).

    Updates the segments in ``sides`` and the used count; the caller swaps ``new`` in.
    """
    used = 0
    for bs in range(2 * meta[M_NBOOKS]):
        n = sides[bs, S_N]
        cap = sides[bs, S_CAP]
        if n >= cap:
            cap = 2 * cap
        off = sides[bs, S_OFF]
        for i in range(n):
            for f in range(LW):
                new[used + i, f] = levels[off + i, f]
        sides[bs, S_OFF] = used
        sides[bs, S_CAP] = cap
        used += cap
    meta[M_POOL_USED] = used
    return used
