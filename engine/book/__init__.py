"""Order books from MBO records: Numba replay kernels, MBP-10/MBP-1 and BBO derivation, checkpoints.

Input is plain NumPy column arrays in feed order (the lake's columns: ``action`` and ``side`` as
int8 codes into ``ACTIONS``/``SIDES``, ``price_raw``, ``size``, ``order_id``, ``flags``,
``instrument_id``, ``publisher_id``; MBP/BBO also read ``ts_event``, ``ts_recv``,
``ts_in_delta``, ``sequence``). This package imports only NumPy, Numba and
:mod:`engine.errors`, so it does not depend on how the rest of the engine decodes files.

Modules: :mod:`~engine.book.codes` (codes, flags, counters), :mod:`~engine.book.state` (the
arrays), :mod:`~engine.book.table` (hash tables and level arrays), :mod:`~engine.book.kernels`
(replay), :mod:`~engine.book.checkpoint` (dense arrays and table growth),
:mod:`~engine.book.book` (:class:`OrderBooks`), :mod:`~engine.book.mbp` (MBP-N rows),
:mod:`~engine.book.bbo` (BBO-1s/1m rows).

Semantics
---------
Databento's MBO normalization, as its schema docs and its limit-order-book example read:

- One book per ``(instrument_id, publisher_id)``; order ids are looked up within their book.
- **A**\\ dd inserts the order at the back of the queue of its price level.
- **C**\\ ancel takes its size off the order (partial cancel); the order leaves the book at size 0.
- **M**\\ odify sets the order's price and size. A new price, or a larger size, loses queue
  priority (back of the queue at the new level); a smaller or equal size at the same price keeps it.
  A Modify of an unknown order is an Add.
- clea\\ **R** empties the book (both sides, every order). Snapshots (F_SNAPSHOT) start with one.
- **T**\\ rade, **F**\\ ill and **N**\\ one leave the book unchanged: Databento follows fills with
  explicit Cancels.
- Records with ``F_TOB`` (top-of-book venues, e.g. IEX and NYSE National in DBEQ): an A/C/M with
  F_TOB replaces every level of its side by one level ``(price, size)`` with order count 0;
  an UNDEF price (or size 0) leaves that side empty. The side's resting orders are dropped too.
- The books are consistent after a record with F_LAST; that is when crossed books are counted.

Decisions where the docs are silent (each is counted in :attr:`OrderBooks.counters`):

- ``unknown_cancel``: a Cancel of an order not in its book is ignored.
- ``unknown_modify``: a Modify of an unknown order is applied as an Add (counted).
- ``size_underflow``: a Cancel larger than the order removes the order (the level loses only the
  order's remaining size, so levels stay the sum of their orders).
- ``side_mismatch``: a Cancel whose side differs from the order's applies to the order where it
  rests. A Modify with the other side moves the order there (new priority); a Modify with side N
  keeps the order's side.
- ``price_mismatch``: a Cancel whose price differs from the order's applies at the order's price.
- ``duplicate_add``: an Add of an order id already resting in its book replaces that order
  (old one removed, new one at the back of its queue).
- ``zero_size``: an Add (or unknown Modify) of size 0 is ignored; a Modify to size 0 removes the order.
- ``undef_price``: an Add (or unknown Modify) with UNDEF price is ignored; a Modify with UNDEF
  price keeps the order's price.
- ``bad_side``: an Add (or unknown Modify, or F_TOB record) with side N is ignored.
- ``bad_action``: an action code outside 0..6 is ignored.
- ``crossed_at_last`` / ``locked_at_last``: after an F_LAST record its book has best bid > best
  ask / best bid == best ask. Crossed books are kept as they are, never repaired.
- ``records`` (rows applied), ``clears`` (R records), ``tob_updates`` (F_TOB records): volumes.
- A Cancel of size 0 or a Modify to the same price and size changes no level.
- Priority is one sequence number across all books, assigned on Add and on priority loss;
  snapshot Adds therefore keep the snapshot's queue order.
"""

from __future__ import annotations

from engine.book.book import Levels, OrderBooks, Orders, book_key
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

__all__ = [
    "ACTIONS",
    "COUNTERS",
    "F_LAST",
    "F_SNAPSHOT",
    "F_TOB",
    "SIDES",
    "UNDEF_PRICE",
    "Levels",
    "OrderBooks",
    "Orders",
    "action_codes",
    "book_key",
    "columns_from_records",
    "side_codes",
]
