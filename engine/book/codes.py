"""Codes, flags, counters and column helpers shared by the order-book kernels.

The action and side codes are the project's dictionary codes (the ``action`` and ``side``
columns of the lake): ``ACTIONS = ("A", "C", "M", "R", "T", "F", "N")`` -> 0..6 and
``SIDES = ("A", "B", "N")`` -> 0..2. Anything else (e.g. -1 for an unknown byte) is counted as
``bad_action`` / ``bad_side`` by the kernels and otherwise ignored.

This module holds no Numba code: the constants are plain ints, frozen into the kernels when
they compile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ACTIONS",
    "ACT_ADD",
    "ACT_CANCEL",
    "ACT_CLEAR",
    "ACT_FILL",
    "ACT_MODIFY",
    "ACT_NONE",
    "ACT_TRADE",
    "BOOK_COLUMNS",
    "COUNTERS",
    "C_BAD_ACTION",
    "C_BAD_SIDE",
    "C_CLEARS",
    "C_CROSSED_AT_LAST",
    "C_DUPLICATE_ADD",
    "C_LOCKED_AT_LAST",
    "C_PRICE_MISMATCH",
    "C_RECORDS",
    "C_SIDE_MISMATCH",
    "C_SIZE_UNDERFLOW",
    "C_TOB_UPDATES",
    "C_UNDEF_PRICE",
    "C_UNKNOWN_CANCEL",
    "C_UNKNOWN_MODIFY",
    "C_ZERO_SIZE",
    "F_BAD_TS_RECV",
    "F_LAST",
    "F_MAYBE_BAD_BOOK",
    "F_MBP",
    "F_SNAPSHOT",
    "F_TOB",
    "SIDES",
    "SIDE_ASK",
    "SIDE_BID",
    "SIDE_NONE",
    "UNDEF_PRICE",
    "UNDEF_TIMESTAMP",
    "action_codes",
    "column_arrays",
    "columns_from_records",
    "side_code",
    "side_codes",
]

ACTIONS = ("A", "C", "M", "R", "T", "F", "N")
"""Action dictionary: a code indexes this tuple (add, cancel, modify, clear, trade, fill, none)."""
SIDES = ("A", "B", "N")
"""Side dictionary: ask, bid, none."""

ACT_ADD, ACT_CANCEL, ACT_MODIFY, ACT_CLEAR, ACT_TRADE, ACT_FILL, ACT_NONE = range(7)
SIDE_ASK, SIDE_BID, SIDE_NONE = range(3)

F_LAST = 128
F_TOB = 64
F_SNAPSHOT = 32
F_MBP = 16
F_BAD_TS_RECV = 8
F_MAYBE_BAD_BOOK = 4

UNDEF_PRICE = 2**63 - 1
"""Databento's "no price" (e.g. on a clear record, or an empty level in MBP rows)."""
UNDEF_TIMESTAMP = -1
"""Databento's UNDEF_TIMESTAMP (2**64 - 1) as the int64 the project's timestamp columns hold."""

COUNTERS = (
    "records",
    "unknown_cancel",
    "unknown_modify",
    "crossed_at_last",
    "locked_at_last",
    "size_underflow",
    "side_mismatch",
    "price_mismatch",
    "duplicate_add",
    "zero_size",
    "undef_price",
    "bad_side",
    "bad_action",
    "tob_updates",
    "clears",
)
"""Counter names, in the order of the kernels' ``counters`` array (see :mod:`engine.book.kernels`)."""
(
    C_RECORDS,
    C_UNKNOWN_CANCEL,
    C_UNKNOWN_MODIFY,
    C_CROSSED_AT_LAST,
    C_LOCKED_AT_LAST,
    C_SIZE_UNDERFLOW,
    C_SIDE_MISMATCH,
    C_PRICE_MISMATCH,
    C_DUPLICATE_ADD,
    C_ZERO_SIZE,
    C_UNDEF_PRICE,
    C_BAD_SIDE,
    C_BAD_ACTION,
    C_TOB_UPDATES,
    C_CLEARS,
) = range(len(COUNTERS))

BOOK_COLUMNS = ("action", "side", "price_raw", "size", "order_id", "flags", "instrument_id", "publisher_id")
"""The columns :meth:`engine.book.OrderBooks.apply` reads (MBP/BBO also read ts_event, ts_recv,
ts_in_delta and sequence)."""


def _table(values: tuple[str, ...]) -> np.ndarray:
    table = np.full(256, -1, dtype=np.int8)
    for code, v in enumerate(values):
        table[ord(v)] = code
    return table


_ACTION_TABLE = _table(ACTIONS)
_SIDE_TABLE = _table(SIDES)


def action_codes(values: np.ndarray) -> np.ndarray:
    """Databento ``S1`` action bytes (e.g. ``to_ndarray()["action"]``) -> int8 codes (-1 if unknown)."""
    return _ACTION_TABLE[np.ascontiguousarray(values).view(np.uint8)]


def side_codes(values: np.ndarray) -> np.ndarray:
    """Databento ``S1`` side bytes -> int8 codes (-1 if unknown)."""
    return _SIDE_TABLE[np.ascontiguousarray(values).view(np.uint8)]


def side_code(side: str | int) -> int:
    """``"A"``/``"B"``/``"N"`` (or ``"ask"``/``"bid"``, or a code) -> the side code."""
    if isinstance(side, str):
        s = side.strip().upper()[:1]
        if s in SIDES:
            return SIDES.index(s)
        msg = f"The `side` must be 'A', 'B' or 'N', got {side!r}."
        raise ValueError(msg)
    code = int(side)
    if code not in (SIDE_ASK, SIDE_BID, SIDE_NONE):
        msg = f"The `side` code must be 0, 1 or 2, got {side!r}."
        raise ValueError(msg)
    return code


def column_arrays(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """``columns[name]`` for each name, contiguous, checked: present, integer, all of one length.

    The kernels index every column by the same row and do not bounds-check, so a short column
    must be refused here.
    """
    missing = [name for name in names if name not in columns]
    if missing:
        msg = f"The `columns` lack {', '.join(missing)}."
        raise ValueError(msg)
    arrays = [np.ascontiguousarray(columns[name]) for name in names]
    for name, arr in zip(names, arrays, strict=True):
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            msg = f"The column `{name}` must be a 1-d integer array (codes for action and side), got {arr.dtype}."
            raise ValueError(msg)
        if len(arr) != len(arrays[0]):
            msg = f"The column `{name}` has {len(arr)} rows, `{names[0]}` has {len(arrays[0])}."
            raise ValueError(msg)
    return arrays


def columns_from_records(records: np.ndarray) -> dict[str, np.ndarray]:
    """Databento MBO records (``DBNStore.to_ndarray()``) -> the project's column arrays.

    Keeps only rtype 0xA0 rows when ``rtype`` is present. The result has the keys the book
    kernels read, with the project's dtypes (codes for action and side, ``price_raw`` int64,
    uint values in signed columns as in the lake).
    """
    if "rtype" in (records.dtype.names or ()):
        records = records[records["rtype"] == 0xA0]
    return {
        "ts_event": records["ts_event"].astype(np.int64),
        "instrument_id": records["instrument_id"].astype(np.int32),
        "publisher_id": records["publisher_id"].astype(np.int16),
        "order_id": records["order_id"].astype(np.int64),
        "price_raw": records["price"].astype(np.int64),
        "size": records["size"].astype(np.int32),
        "flags": records["flags"].astype(np.int16),
        "action": action_codes(records["action"]),
        "side": side_codes(records["side"]),
        "ts_recv": records["ts_recv"].astype(np.int64),
        "ts_in_delta": records["ts_in_delta"].astype(np.int32),
        "sequence": records["sequence"].astype(np.int64),
    }
