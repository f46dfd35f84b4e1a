"""Order books from MBO records: Numba replay kernels, MBP-N and BBO derivation, checkpoints.

Input is plain NumPy column arrays in feed order, the lake's columns: ``action`` and ``side`` as
int8 codes into :data:`ACTIONS` / :data:`SIDES`, ``price_raw``, ``size``, ``order_id``, ``flags``,
``instrument_id``, ``publisher_id`` (MBP and BBO also read ``ts_event``, ``ts_recv``,
``ts_in_delta``, ``sequence``); :func:`columns_from_records` makes them from databento's
``to_ndarray()``. The kernel modules (everything this ``__init__`` imports) may import only NumPy,
Numba, the standard library and :mod:`engine.errors` (nothing else from the engine), so they do
not depend on how the rest of the engine decodes files. The lake glue sits beside them and is
not imported here: :mod:`~engine.book.rows` (a symbol-day's lake rows in feed order),
:mod:`~engine.book.index` (minute checkpoints in ``LAKE/_book``), :mod:`~engine.book.snapshot`
(the book at any instant), :mod:`~engine.book.derive` (MBP/BBO Parquet series) and the CLI
``python -m engine.book`` (``datapair-book``); they may read the lake (``tests/test_layout.py``).

Modules: :mod:`~engine.book.codes` (codes, flags, counter names, column helpers),
:mod:`~engine.book.state` (the state arrays), :mod:`~engine.book.pointers` (why the per-record
helpers take raw pointers), :mod:`~engine.book.table` (book map, order hash table, level pool),
:mod:`~engine.book.kernels` (replay), :mod:`~engine.book.reads` (read kernels), :mod:`~engine.book.checkpoint` (dense checkpoints, table
growth), :mod:`~engine.book.book` (:class:`OrderBooks`), :mod:`~engine.book.mbp` (MBP-N rows),
:mod:`~engine.book.bbo` (BBO-1s/1m rows), :mod:`~engine.book.cache` (drops a stale Numba cache).

Semantics
---------
Databento's MBO normalization, as its MBO schema, MBO snapshot and limit-order-book example
pages state it:

- One book per ``(instrument_id, publisher_id)``; an order id is looked up in its own book.
- Add (A) rests the order at the back of the queue of its price level.
- Cancel (C) takes its size off the order (a partial cancel); the order leaves at size 0.
- Modify (M) sets the order's price and size. A new price, or a larger size, loses queue
  priority (back of the queue at the new level); a smaller or equal size at the same price keeps
  it. A Modify of an unknown order is an Add.
- Clear (R) empties the book (both sides, every order). Snapshots (F_SNAPSHOT) start with one.
- Trade (T), Fill (F) and None (N) leave the book unchanged (Databento follows fills with
  explicit Cancels).
- Top-of-book venues (F_TOB, e.g. IEX and NYSE National in DBEQ): an A/C/M with F_TOB replaces
  every level of its side (and drops the side's orders) by one level ``(price, size)`` with an
  order count of 0; an UNDEF price, or size 0, leaves that side empty.
- The books are consistent after a record with F_LAST: crossed books are counted there.

Decisions where the docs are silent, each counted in :attr:`OrderBooks.counters`:

- ``unknown_cancel``: a Cancel of an order not in its book is ignored (e.g. a Cancel before its
  Add in a non-causal feed; the later Add then rests).
- ``unknown_modify``: a Modify of an unknown order is applied as an Add.
- ``size_underflow``: a Cancel larger than the order removes the order; its level loses only the
  order's remaining size, so a level stays the sum of its orders.
- ``side_mismatch``: a Cancel whose side is not the order's applies to the order where it rests.
  A Modify with the other side moves the order there (new priority); a Modify with side N keeps
  the order's side.
- ``price_mismatch``: a Cancel whose price is not the order's applies at the order's price.
- ``duplicate_add``: an Add of an id already resting in its book replaces that order (the old one
  leaves, the new one rests at the back of its queue).
- ``zero_size``: an Add (or an unknown Modify) of size 0 is ignored; a Modify to size 0 removes
  the order.
- ``undef_price``: an Add (or an unknown Modify) with UNDEF price is ignored; a Modify with UNDEF
  price keeps the order's price.
- ``bad_side``: an Add (or an unknown Modify, or an F_TOB record) with side N is ignored.
  An ignored Add is checked in this order: side, price, size (one counter per record).
- ``bad_action``: an action code outside 0..6 is ignored.
- ``crossed_at_last`` / ``locked_at_last``: after an F_LAST record its book has best bid > best
  ask / best bid == best ask. Books are kept as the feed makes them, never repaired.
- ``records`` (rows applied), ``clears`` (R records), ``tob_updates`` (F_TOB records) are volumes.
- A Cancel of size 0, or a Modify to the same price and size, changes no level.
- Priority is one sequence number across all books, assigned on Add and on priority loss, so
  snapshot Adds keep the snapshot's queue order.
- Sizes are uint32 and flags uint8 values even when the columns hold them signed (the lake's
  int32/int16); order ids are uint64 bits in int64.
"""

from __future__ import annotations

from engine.book.bbo import BBO_COLUMNS, BboSampler, derive_bbo
from engine.book.book import Levels, OrderBooks, Orders, book_key
from engine.book.cache import drop_stale_cache
from engine.book.codes import (
    ACTIONS,
    COUNTERS,
    F_LAST,
    F_SNAPSHOT,
    F_TOB,
    SIDES,
    UNDEF_PRICE,
    action_codes,
    columns_from_records,
    side_codes,
)
from engine.book.mbp import derive_mbp, iter_mbp, level_columns, price_to_float

drop_stale_cache()  # kernels load their Numba cache on first call, so this runs first

__all__ = [
    "ACTIONS",
    "BBO_COLUMNS",
    "COUNTERS",
    "F_LAST",
    "F_SNAPSHOT",
    "F_TOB",
    "SIDES",
    "UNDEF_PRICE",
    "BboSampler",
    "Levels",
    "OrderBooks",
    "Orders",
    "action_codes",
    "book_key",
    "columns_from_records",
    "derive_bbo",
    "derive_mbp",
    "iter_mbp",
    "level_columns",
    "price_to_float",
    "side_codes",
]
