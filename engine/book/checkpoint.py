"""Book state <-> a dict of dense NumPy arrays (a checkpoint), and the table growth steps.

A checkpoint holds only what defines the books, densely, so it can be written to Parquet (one
table per key prefix) and read back into a fresh, compact state:

==================  ======================================================================
key                 contents
==================  ======================================================================
``scalars``         int64 ``[FORMAT_VERSION, priority counter, hash mode]``
``counters``        int64, in the order of :data:`engine.book.codes.COUNTERS`
``book_key``        int64 per book: ``(instrument_id << 16) | publisher_id``
``n_levels``        int64 per book side (``2*b`` ask, ``2*b + 1`` bid)
``level_key``       int64 per level, sides back to back in book-side order, best level last
``level_size``      int64 per level
``level_count``     int64 per level
``order_book``      int32 per live order, sorted by priority
``order_id``        int64 (uint64 bits)
``order_side``      int8
``order_price``     int64
``order_size``      int64
``order_priority``  int64
==================  ======================================================================
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book.codes import COUNTERS
from engine.book.pointers import data_ptr
from engine.book.state import (
    FORMAT_VERSION,
    INIT_LEVELS,
    M_COUNTERS,
    M_HASH_MODE,
    M_LIVE,
    M_LONG_PROBES,
    M_MAX_FILL,
    M_NBOOKS,
    M_POOL_USED,
    M_PRIO,
    O_OID,
    O_PRICE,
    O_PRIO,
    O_SIZE,
    O_TAG,
    S_CAP,
    S_N,
    S_OFF,
    SW,
    BookState,
    empty_books,
    empty_orders,
    max_fill,
    new_state,
    pow2_at_least,
)
from engine.book.table import compact_pool, insert_orders, rebuild_book_map, rehash_orders, slot_live

__all__ = [
    "CHECKPOINT_KEYS",
    "grow_books",
    "grow_pool",
    "rehash",
    "state_from_arrays",
    "state_to_arrays",
]

CHECKPOINT_KEYS = (
    "scalars", "counters", "book_key", "n_levels", "level_key", "level_size", "level_count",
    "order_book", "order_id", "order_side", "order_price", "order_size", "order_priority",
)  # fmt: skip


# -- growth (Python, between kernel calls) ----------------------------------------------------------
def rehash(st: BookState, mixing: bool = False) -> BookState:
    """A new order table with the live orders, at least twice their number plus headroom (never smaller)."""
    live = int(st.meta[M_LIVE])
    cap = max(len(st.orders), pow2_at_least((live * 16) // 5 + 1))
    if max_fill(cap) - live < cap // 4:  # mostly live orders: double
        cap *= 2
    if mixing:
        st.meta[M_HASH_MODE] = 1
    new = empty_orders(cap)
    rehash_orders(st.orders, st.sides, st.meta, new)
    st.meta[M_MAX_FILL] = max_fill(cap)
    st.meta[M_LONG_PROBES] = 0
    return st._replace(orders=new)


def grow_pool(st: BookState, spare_books: int = 16) -> BookState:
    """Compact the level pool (full segments get twice the room); grow it when it would be over half full."""
    nbs = 2 * st.nbooks
    n = st.sides[:nbs, S_N]
    cap = st.sides[:nbs, S_CAP]
    needed = int(np.where(n >= cap, 2 * cap, cap).sum()) + 2 * INIT_LEVELS * max(spare_books, 16)
    size = len(st.levels)
    if 2 * needed > size:
        size = pow2_at_least(2 * needed)
    new = np.zeros((size, 3), dtype=np.int64)
    compact_pool(st.levels, st.sides, st.meta, new)
    return st._replace(levels=new)


def grow_books(st: BookState) -> BookState:
    """Twice the book capacity (per-side rows copied, book map rebuilt), and pool room for them."""
    nb = st.book_capacity
    books = empty_books(2 * nb)
    books[:nb] = st.books[:nb]
    rebuild_book_map(books, st.nbooks)
    sides = np.zeros((4 * nb, SW), dtype=np.int64)
    sides[: 2 * nb] = st.sides
    return grow_pool(st._replace(books=books, sides=sides), spare_books=2 * nb)


# -- checkpoint -------------------------------------------------------------------------------------
@njit(cache=True)
def _live_slots(orders, sides, out):  # pragma: no cover - compiled
    o = data_ptr(orders)
    s = data_ptr(sides)
    n = 0
    for j in range(len(orders)):
        if slot_live(o, s, j):
            out[n] = j
            n += 1
    return n


def state_to_arrays(st: BookState) -> dict[str, np.ndarray]:
    """The checkpoint of a state (new arrays; see the module doc)."""
    nb = st.nbooks
    live = int(st.meta[M_LIVE])
    slots = np.empty(live, np.int64)
    n = _live_slots(st.orders, st.sides, slots)
    if n != live:
        msg = f"order table holds {n} live orders, its count says {live}"
        raise AssertionError(msg)
    rows = st.orders[slots]
    rows = rows[np.argsort(rows[:, O_PRIO], kind="stable")]
    tag = rows[:, O_TAG]
    n_levels = st.sides[: 2 * nb, S_N].copy()
    idx = [np.arange(st.sides[bs, S_OFF], st.sides[bs, S_OFF] + n_levels[bs]) for bs in range(2 * nb)]
    flat = np.concatenate(idx) if idx else np.empty(0, np.int64)
    levels = st.levels[flat]
    scalars = np.array([FORMAT_VERSION, st.meta[M_PRIO], st.meta[M_HASH_MODE]], dtype=np.int64)
    return {
        "scalars": scalars,
        "counters": st.counters.copy(),
        "book_key": st.books[:nb].copy(),
        "n_levels": n_levels,
        "level_key": levels[:, 0].copy(),
        "level_size": levels[:, 1].copy(),
        "level_count": levels[:, 2].copy(),
        "order_book": (tag & 0xFFFFFFFF).astype(np.int32),
        "order_id": rows[:, O_OID].copy(),
        "order_side": ((tag >> 32) & 1).astype(np.int8),
        "order_price": rows[:, O_PRICE].copy(),
        "order_size": rows[:, O_SIZE].copy(),
        "order_priority": rows[:, O_PRIO].copy(),
    }


def state_from_arrays(arrays: dict[str, np.ndarray]) -> BookState:
    """A fresh state from a checkpoint made by :func:`state_to_arrays`."""
    missing = [k for k in CHECKPOINT_KEYS if k not in arrays]
    if missing:
        msg = f"The checkpoint `arrays` lack {', '.join(missing)}."
        raise ValueError(msg)
    scalars = np.asarray(arrays["scalars"], dtype=np.int64)
    if int(scalars[0]) != FORMAT_VERSION:
        msg = f"Checkpoint format {int(scalars[0])} is not {FORMAT_VERSION}."
        raise ValueError(msg)
    counters = np.asarray(arrays["counters"], dtype=np.int64)
    if len(counters) != len(COUNTERS):
        msg = f"The checkpoint has {len(counters)} counters, expected {len(COUNTERS)}."
        raise ValueError(msg)
    book_key = np.asarray(arrays["book_key"], dtype=np.int64)
    n_levels = np.asarray(arrays["n_levels"], dtype=np.int64)
    nb = len(book_key)
    live = len(arrays["order_id"])
    caps = np.array([pow2_at_least(int(n) + 1, INIT_LEVELS) for n in n_levels], dtype=np.int64)
    st = new_state(
        order_capacity=(live * 16) // 5 + 1,
        book_capacity=nb,
        pool_capacity=2 * int(caps.sum()) + 2 * INIT_LEVELS * 16,
    )
    meta = st.meta
    meta[M_PRIO] = scalars[1]
    meta[M_HASH_MODE] = scalars[2]
    meta[M_COUNTERS:] = counters
    st.books[:nb] = book_key
    meta[M_NBOOKS] = nb
    rebuild_book_map(st.books, nb)
    offs = np.concatenate([[0], np.cumsum(caps)[:-1]]).astype(np.int64)[: 2 * nb]
    st.sides[: 2 * nb, S_OFF] = offs
    st.sides[: 2 * nb, S_CAP] = caps
    st.sides[: 2 * nb, S_N] = n_levels
    meta[M_POOL_USED] = int(caps.sum())
    src = 0
    for bs in range(2 * nb):
        k = int(n_levels[bs])
        o = int(offs[bs])
        st.levels[o : o + k, 0] = arrays["level_key"][src : src + k]
        st.levels[o : o + k, 1] = arrays["level_size"][src : src + k]
        st.levels[o : o + k, 2] = arrays["level_count"][src : src + k]
        src += k
    insert_orders(
        st.orders, st.sides, meta,
        np.asarray(arrays["order_book"], dtype=np.int64),
        np.asarray(arrays["order_id"], dtype=np.int64),
        np.asarray(arrays["order_side"], dtype=np.int64),
        np.asarray(arrays["order_price"], dtype=np.int64),
        np.asarray(arrays["order_size"], dtype=np.int64),
        np.asarray(arrays["order_priority"], dtype=np.int64),
    )  # fmt: skip
    return st
