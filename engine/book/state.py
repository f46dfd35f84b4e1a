"""The book state: five int64 NumPy arrays that the Numba kernels take one by one.

Few, flat int64 arrays: the kernels take them as arrays and hand their per-record helpers raw
data pointers (:mod:`engine.book.pointers`), indexing rows as ``row * width + column``.

``orders[C, 5]``
    Open-addressing table (linear probing, ``C`` a power of two) keyed by ``(book, order_id)``:
    columns ``O_OID``, ``O_TAG``, ``O_PRICE``, ``O_SIZE``, ``O_PRIO``. The tag is ``EMPTY`` (-1),
    ``TOMBSTONE`` (-2) or ``(epoch << 33) | (side << 32) | book``; a slot is live when its epoch is
    its book side's epoch. Stale (cleared) and deleted slots are reused by inserts and dropped by
    a rehash. The default hash keeps sequential order ids of a book in neighbouring slots (cache
    friendly); when probes get long the table switches to a mixing hash (``meta[M_HASH_MODE]``).
``sides[2*NB, 6]``
    Per book side ``bs = 2*b + side`` (0 ask, 1 bid): ``S_EPOCH`` (a clear bumps it, dropping every
    order of the side in O(1)), ``S_LIVE`` (orders), ``S_OFF``/``S_CAP`` (its segment of the level
    pool), ``S_N`` (levels), ``S_FINGER`` (the position the last level search found: searches
    gallop from there, as activity stays near the last touched price).
``levels[P, 3]``
    The level pool: ``L_KEY``, ``L_SIZE``, ``L_COUNT``. A side's levels fill rows
    ``[S_OFF, S_OFF + S_N)`` sorted ascending by key with the best level last (bids ``key =
    price``, asks ``key = -price``): updates near the top shift few rows, top N reads backwards.
    A full segment moves to the pool's end with twice the room (in the kernel); a full pool is
    compacted, and grown if needed, in Python between kernel calls.
``books[3*NB]``
    ``[0, NB)``: book keys ``(instrument_id << 16) | publisher_id`` (-1 unused); ``[NB, 3*NB)``: an
    open-addressing map key -> book index (-1 empty).
``meta[...]``
    Scalars (``M_*``), the event of the last record (``EV_*``, see :mod:`engine.book.kernels`) and
    from ``M_COUNTERS`` on, the counters named by :data:`engine.book.codes.COUNTERS`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from engine.book.codes import COUNTERS

__all__ = [
    "EMPTY",
    "EV_CHANGED",
    "EV_DEPTH",
    "EV_MIN_DEPTH",
    "EV_SIDE",
    "FORMAT_VERSION",
    "INIT_LEVELS",
    "LW",
    "L_COUNT",
    "L_KEY",
    "L_SIZE",
    "M_BOOK_CAP",
    "M_COUNTERS",
    "M_FILLED",
    "M_HASH_MODE",
    "M_LIVE",
    "M_LONG_PROBES",
    "M_MAX_FILL",
    "M_NBOOKS",
    "M_ORDER_CAP",
    "M_POOL_CAP",
    "M_POOL_USED",
    "M_PRIO",
    "M_STATUS",
    "NEED_BOOKS",
    "NEED_LEVELS",
    "NEED_ORDERS",
    "NEED_OUTPUT",
    "OK",
    "OW",
    "O_OID",
    "O_PRICE",
    "O_PRIO",
    "O_SIZE",
    "O_TAG",
    "SW",
    "S_CAP",
    "S_EPOCH",
    "S_FINGER",
    "S_LIVE",
    "S_N",
    "S_OFF",
    "TOMBSTONE",
    "BookState",
    "max_fill",
    "new_state",
    "pow2_at_least",
]

FORMAT_VERSION = 1
"""Version of the checkpoint layout (:mod:`engine.book.checkpoint`)."""

EMPTY = -1
TOMBSTONE = -2
INIT_LEVELS = 8
"""Level room per side given to a new book."""

O_OID, O_TAG, O_PRICE, O_SIZE, O_PRIO = range(5)
S_EPOCH, S_LIVE, S_OFF, S_CAP, S_N, S_FINGER = range(6)
L_KEY, L_SIZE, L_COUNT = range(3)

# meta: scalars, then the last record's event, then the counters
M_NBOOKS, M_FILLED, M_LIVE, M_PRIO, M_HASH_MODE, M_MAX_FILL, M_POOL_USED, M_STATUS, M_LONG_PROBES = range(9)
EV_CHANGED, EV_SIDE, EV_DEPTH, EV_MIN_DEPTH = range(9, 13)
M_ORDER_CAP, M_POOL_CAP, M_BOOK_CAP = range(13, 16)  # rows of orders, levels, books (set by kernels)
M_COUNTERS = 16
OW, SW, LW = 5, 6, 3  # row widths of orders, sides, levels

# kernel status (meta[M_STATUS]): why a kernel stopped before the requested row
OK, NEED_ORDERS, NEED_LEVELS, NEED_BOOKS, NEED_OUTPUT = range(5)


class BookState(NamedTuple):
    """The state arrays (see the module doc)."""

    orders: np.ndarray
    sides: np.ndarray
    levels: np.ndarray
    books: np.ndarray
    meta: np.ndarray

    @property
    def counters(self) -> np.ndarray:
        """The counters (a view into ``meta``)."""
        return self.meta[M_COUNTERS:]

    @property
    def nbooks(self) -> int:
        """Books registered."""
        return int(self.meta[M_NBOOKS])

    @property
    def book_capacity(self) -> int:
        """Books the arrays have room for."""
        return len(self.books) // 3


def pow2_at_least(n: int, floor: int = 16) -> int:
    """The smallest power of two >= ``max(n, floor)``."""
    n = max(int(n), floor)
    return 1 << (n - 1).bit_length()


def max_fill(capacity: int) -> int:
    """Occupied (live, stale or deleted) slots that make the order table ask for a rehash: 5/8."""
    return (capacity * 5) // 8


def empty_orders(c: int) -> np.ndarray:
    """An empty order table of ``c`` slots."""
    orders = np.zeros((c, 5), dtype=np.int64)
    orders[:, O_TAG] = EMPTY
    return orders


def empty_books(nb: int) -> np.ndarray:
    """Book keys and map for ``nb`` books, all unused."""
    return np.full(3 * nb, -1, dtype=np.int64)


def new_state(
    order_capacity: int = 1 << 16, book_capacity: int = 16, pool_capacity: int = 1 << 12
) -> BookState:
    """An empty state with room for ``order_capacity * 5/8`` orders and ``book_capacity`` books.

    Every table grows on demand (:mod:`engine.book.checkpoint` has the steps), so the capacities
    only size the first allocation.
    """
    c = pow2_at_least(order_capacity)
    nb = pow2_at_least(book_capacity, 4)
    p = max(int(pool_capacity), 2 * nb * INIT_LEVELS)
    meta = np.zeros(M_COUNTERS + len(COUNTERS), dtype=np.int64)
    meta[M_MAX_FILL] = max_fill(c)
    return BookState(
        orders=empty_orders(c),
        sides=np.zeros((2 * nb, SW), dtype=np.int64),
        levels=np.zeros((p, 3), dtype=np.int64),
        books=empty_books(nb),
        meta=meta,
    )
