"""``OrderBooks``: the Python face of the book kernels (apply blocks, read levels and orders, checkpoint).

Example
-------
>>> import databento as db
>>> from engine.book import OrderBooks, columns_from_records
>>> cols = columns_from_records(db.DBNStore.from_file("day.mbo.dbn.zst").to_ndarray())
>>> books = OrderBooks()
>>> books.apply(cols)                       # or apply(cols, upto=k): the books after row k-1
>>> books.levels(6155, 2, "B", depth=10)    # Levels(price, size, count), best first
>>> books.counters["unknown_cancel"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from engine.book.checkpoint import grow_books, grow_pool, rehash, state_from_arrays, state_to_arrays
from engine.book.codes import BOOK_COLUMNS, COUNTERS, SIDE_ASK, SIDE_BID, column_arrays, side_code
from engine.book.kernels import apply_block
from engine.book.reads import level_orders, order_info, top_levels
from engine.book.state import (
    M_HASH_MODE,
    M_LIVE,
    M_LONG_PROBES,
    M_STATUS,
    NEED_BOOKS,
    NEED_LEVELS,
    NEED_ORDERS,
    OK,
    S_LIVE,
    S_N,
    BookState,
    new_state,
)

__all__ = ["Levels", "OrderBooks", "Orders", "book_key"]

_MIXING_AFTER = 4096  # long probes (> 64 slots) seen before the order table switches to a mixing hash


@dataclass(frozen=True)
class Levels:
    """Price levels of one book side, best first: ``price`` (int64, 1e-9), ``size``, ``count`` (orders)."""

    price: np.ndarray
    size: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.price)


class Orders(NamedTuple):
    """The orders of one level in queue order: ``order_id`` (uint64 bits in int64), ``size``, ``priority``."""

    order_id: np.ndarray
    size: np.ndarray
    priority: np.ndarray


def book_key(instrument_id: int, publisher_id: int) -> int:
    """The int64 key of a book: ``(instrument_id << 16) | publisher_id`` over their unsigned bits."""
    return ((int(instrument_id) & 0xFFFFFFFF) << 16) | (int(publisher_id) & 0xFFFF)


def _side(side: str | int) -> int:
    s = side_code(side)
    if s not in (SIDE_ASK, SIDE_BID):
        msg = f"The `side` of a book must be 'A' (ask) or 'B' (bid), got {side!r}."
        raise ValueError(msg)
    return s


class OrderBooks:
    """Every book of an MBO stream, replayed by Numba kernels over column blocks in feed order.

    Parameters
    ----------
    order_capacity, book_capacity, pool_capacity : int
        First sizes of the order table, the book arrays and the level pool; each grows on demand.
    mixing_hash : bool
        Hash order ids with every bit mixed from the start. By default the table keeps sequential
        ids in neighbouring slots, and switches to the mixing hash by itself if probes get long.
    """

    def __init__(
        self,
        order_capacity: int = 1 << 16,
        book_capacity: int = 16,
        pool_capacity: int = 1 << 12,
        mixing_hash: bool = False,
    ):
        self._st = new_state(order_capacity, book_capacity, pool_capacity)
        self._st.meta[M_HASH_MODE] = int(mixing_hash)

    # -- replay -------------------------------------------------------------------------------------
    @property
    def state(self) -> BookState:
        """The live state tuple (kernels take it as is; it is replaced when a table grows)."""
        return self._st

    def grow(self, status: int) -> None:
        """Grow the table a kernel reported full (``status`` from ``meta[M_STATUS]``)."""
        if status == NEED_ORDERS:
            self._st = rehash(self._st)
        elif status == NEED_LEVELS:
            self._st = grow_pool(self._st, spare_books=self._st.book_capacity - self._st.nbooks)
        elif status == NEED_BOOKS:
            self._st = grow_books(self._st)
        elif status != OK:
            msg = f"unknown kernel status {status}"
            raise ValueError(msg)

    def tune(self) -> None:
        """Switch the order table to a mixing hash if probes got long (called after each block)."""
        st = self._st
        if st.meta[M_HASH_MODE] == 0 and st.meta[M_LONG_PROBES] > _MIXING_AFTER + st.meta[M_LIVE] // 16:
            self._st = rehash(st, mixing=True)

    def apply(self, columns: Mapping[str, np.ndarray], upto: int | None = None, start: int = 0) -> int:
        """Apply rows ``[start, upto)`` of a block of columns (feed order); returns ``upto``.

        ``columns`` needs :data:`engine.book.codes.BOOK_COLUMNS` (action and side as int8 codes,
        ``price_raw``, ``size``, ``order_id``, ``flags``, ``instrument_id``, ``publisher_id``).
        Stopping at ``upto`` gives the books as they were after row ``upto - 1``; call again with
        ``start=upto`` to continue.
        """
        cols = column_arrays(columns, BOOK_COLUMNS)
        n = len(cols[0])
        stop = n if upto is None else int(upto)
        if not 0 <= start <= stop <= n:
            msg = f"The rows [`start`, `upto`) = [{start}, {stop}) are outside the block of {n} rows."
            raise ValueError(msg)
        i = start
        while True:
            args: tuple[Any, ...] = (*self._st, *cols, i, stop)
            i = apply_block(*args)
            status = int(self._st.meta[M_STATUS])
            if status == OK:
                break
            self.grow(status)
        self.tune()
        return stop

    # -- reads --------------------------------------------------------------------------------------
    def book_index(self, instrument_id: int, publisher_id: int) -> int | None:
        """Dense index of a book, or None if no record of it was seen."""
        hit = np.flatnonzero(self._st.books[: self._st.nbooks] == book_key(instrument_id, publisher_id))
        return int(hit[0]) if len(hit) else None

    def books(self) -> list[tuple[int, int]]:
        """``(instrument_id, publisher_id)`` of every book, in the order they first appeared."""
        keys = self._st.books[: self._st.nbooks]
        return [(int(k) >> 16, int(k) & 0xFFFF) for k in keys]

    def levels(
        self, instrument_id: int, publisher_id: int, side: str | int, depth: int | None = None
    ) -> Levels:
        """The best ``depth`` levels (all if None) of one side of one book, best first."""
        s = _side(side)
        b = self.book_index(instrument_id, publisher_id)
        if b is None:
            return Levels(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
        n = int(self._st.sides[2 * b + s, S_N])
        k = n if depth is None else min(int(depth), n)
        out = Levels(np.empty(k, np.int64), np.empty(k, np.int64), np.empty(k, np.int64))
        top_levels(self._st.sides, self._st.levels, 2 * b + s, k, out.price, out.size, out.count)
        return out

    def merged_levels(self, instrument_id: int, side: str | int, depth: int | None = None) -> Levels:
        """One instrument's levels across every publisher: merged by price, sizes and counts summed."""
        s = _side(side)
        parts = [self.levels(i, p, s) for i, p in self.books() if i == int(instrument_id) & 0xFFFFFFFF]
        if not parts:
            return Levels(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
        price = np.concatenate([p.price for p in parts])
        uniq, inv = np.unique(price, return_inverse=True)
        size = np.zeros(len(uniq), np.int64)
        count = np.zeros(len(uniq), np.int64)
        np.add.at(size, inv, np.concatenate([p.size for p in parts]))
        np.add.at(count, inv, np.concatenate([p.count for p in parts]))
        if s == SIDE_BID:
            uniq, size, count = uniq[::-1], size[::-1], count[::-1]
        k = len(uniq) if depth is None else min(int(depth), len(uniq))
        return Levels(uniq[:k].copy(), size[:k].copy(), count[:k].copy())

    def orders(self, instrument_id: int, publisher_id: int, side: str | int, price: int) -> Orders:
        """The orders resting at one price level, in queue (priority) order."""
        s = _side(side)
        b = self.book_index(instrument_id, publisher_id)
        n = 0 if b is None else int(self._st.sides[2 * b + s, S_LIVE])
        out = Orders(np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64))
        k = 0 if b is None else level_orders(self._st.orders, self._st.sides, 2 * b + s, int(price), *out)
        order = np.argsort(out.priority[:k], kind="stable")
        return Orders(out.order_id[:k][order], out.size[:k][order], out.priority[:k][order])

    def order(self, instrument_id: int, publisher_id: int, order_id: int) -> dict[str, int] | None:
        """A resting order's ``side`` (code), ``price``, ``size`` and ``priority``, or None."""
        b = self.book_index(instrument_id, publisher_id)
        if b is None:
            return None
        out = np.empty(4, np.int64)
        oid = int(order_id)
        oid = oid - (1 << 64) if oid >= 1 << 63 else oid  # uint64 ids as their int64 bits
        if not order_info(self._st.orders, self._st.sides, self._st.meta, b, oid, out):
            return None
        return dict(zip(("side", "price", "size", "priority"), (int(v) for v in out), strict=True))

    @property
    def counters(self) -> dict[str, int]:
        """Records applied and the data-quality counters (see :mod:`engine.book`)."""
        return dict(zip(COUNTERS, (int(v) for v in self._st.counters), strict=True))

    @property
    def mixing_hash(self) -> bool:
        """True once the order table hashes with every bit mixed (see the constructor)."""
        return bool(self._st.meta[M_HASH_MODE])

    @property
    def live_orders(self) -> int:
        """Orders resting in every book."""
        return int(self._st.meta[M_LIVE])

    def nbytes(self) -> int:
        """Bytes held by the state arrays."""
        return sum(a.nbytes for a in self._st)

    # -- checkpoint ---------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The books as a dict of dense NumPy arrays (see :mod:`engine.book.checkpoint`)."""
        return state_to_arrays(self._st)

    @classmethod
    def from_state_arrays(cls, arrays: Mapping[str, np.ndarray]) -> OrderBooks:
        """Books restored from :meth:`state_arrays`: replay continues exactly where it stopped."""
        books = cls.__new__(cls)
        books._st = state_from_arrays(dict(arrays))
        return books
