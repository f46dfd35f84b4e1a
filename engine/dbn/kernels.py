"""Numba kernels: record walking, record -> column conversion, symbology lookup, day splitting.

Every kernel is ``@njit(cache=True)``, takes flat arrays and preallocated outputs, holds no Python
objects, and is tested against a plain-NumPy reference in ``tests/test_kernels.py``.

MBO records are read as rows of 64-bit little-endian words (7 words, 8 with ``ts_out``):

====  =========================================================
word  contents
====  =========================================================
0     length u8 | rtype u8 | publisher_id u16 | instrument_id u32
1     ts_event
2     order_id
3     price (i64, 1e-9 fixed point)
4     size u32 | flags u8 | channel_id u8 | action u8 | side u8
5     ts_recv
6     ts_in_delta i32 | sequence u32
====  =========================================================
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.dbn.metadata import NS_PER_DAY

__all__ = [
    "ACTIONS",
    "NS_PER_DAY",
    "SIDES",
    "check_fixed_records",
    "decode_records",
    "keep_codes",
    "map_symbols",
    "map_symbols_dense",
    "scale_prices",
    "split_days",
    "walk_records",
]

UNDEF_PRICE = np.int64(2**63 - 1)

ACTIONS = ("A", "C", "M", "R", "T", "F", "N")
"""Dictionary of the ``action`` column: its codes index this tuple."""
SIDES = ("A", "B", "N")
"""Dictionary of the ``side`` column."""


def _code_table(values: tuple[str, ...]) -> np.ndarray:
    table = np.full(256, -1, dtype=np.int8)
    for code, v in enumerate(values):
        table[ord(v)] = code
    return table


ACTION_CODES = _code_table(ACTIONS)
SIDE_CODES = _code_table(SIDES)


@njit(cache=True, nogil=True)
def check_fixed_records(data, size, rtype, length_words):  # pragma: no cover - compiled
    """Return -1 if every ``size``-byte record in ``data`` has this rtype and length, else the first bad offset."""
    n = len(data) // size
    for i in range(n):
        off = i * size
        if data[off] != length_words or data[off + 1] != rtype:
            return off
    return -1


@njit(cache=True, nogil=True)
def walk_records(data, rtype, length_words, mbo_starts, other_starts):  # pragma: no cover - compiled
    """Walk variable-length records by ``length * 4``.

    Writes the byte offsets of records of ``rtype`` (which must be ``length_words`` long) to
    ``mbo_starts`` and of every other record to ``other_starts``. Returns
    ``(n_mbo, n_other, consumed, error_offset)``: ``consumed`` is where the first incomplete
    record starts; ``error_offset`` is -1, or the offset of a record shorter than a record
    header (16 bytes: the outputs hold ``len(data) // 16 + 1`` offsets, so no record may be
    shorter) or an MBO record of the wrong length.
    """
    n = len(data)
    pos = 0
    n_mbo = 0
    n_other = 0
    cap = min(len(mbo_starts), len(other_starts))
    while pos < n:
        length = np.int64(data[pos]) * 4
        if length < 16 or n_mbo + n_other >= cap:
            return n_mbo, n_other, pos, pos
        if pos + length > n or pos + 1 >= n:
            break
        if data[pos + 1] == rtype:
            if data[pos] != length_words:
                return n_mbo, n_other, pos, pos
            mbo_starts[n_mbo] = pos
            n_mbo += 1
        else:
            other_starts[n_other] = pos
            n_other += 1
        pos += length
    return n_mbo, n_other, pos, -1


@njit(cache=True, nogil=True)
def decode_records(
    words, action_table, side_table,
    instrument_id, publisher_id, ts_event, order_id, price_raw, size, flags, channel_id,
    action, side, ts_recv, ts_in_delta, sequence,
):  # fmt: skip  # pragma: no cover - compiled
    """One pass over MBO records (rows of u64 words) into contiguous columns.

    Returns -1, or the index of the first record whose action or side is not a known code.
    """
    n = words.shape[0]
    bad = -1
    for i in range(n):
        w0 = words[i, 0]
        w4 = words[i, 4]
        w6 = words[i, 6]
        publisher_id[i] = np.int16((w0 >> np.uint64(16)) & np.uint64(0xFFFF))
        instrument_id[i] = np.int32(np.uint32(w0 >> np.uint64(32)))
        ts_event[i] = np.int64(words[i, 1])
        order_id[i] = np.int64(words[i, 2])
        price_raw[i] = np.int64(words[i, 3])
        size[i] = np.int32(np.uint32(w4 & np.uint64(0xFFFFFFFF)))
        flags[i] = np.int16((w4 >> np.uint64(32)) & np.uint64(0xFF))
        channel_id[i] = np.int16((w4 >> np.uint64(40)) & np.uint64(0xFF))
        a = action_table[(w4 >> np.uint64(48)) & np.uint64(0xFF)]
        s = side_table[(w4 >> np.uint64(56)) & np.uint64(0xFF)]
        if (a < 0 or s < 0) and bad < 0:
            bad = i
        action[i] = a
        side[i] = s
        ts_recv[i] = np.int64(words[i, 5])
        ts_in_delta[i] = np.int32(np.uint32(w6 & np.uint64(0xFFFFFFFF)))
        sequence[i] = np.int64(w6 >> np.uint64(32))
    return bad


@njit(cache=True, nogil=True)
def scale_prices(price_raw, out):  # pragma: no cover - compiled
    """price_raw (1e-9 fixed point) -> float price, NaN where the price is UNDEF_PRICE."""
    for i in range(len(price_raw)):
        p = price_raw[i]
        out[i] = np.nan if p == UNDEF_PRICE else p / 1e9
    return len(price_raw)


@njit(cache=True, nogil=True)
def map_symbols(instrument_id, ts_recv, ids, start_days, end_days, codes, out):  # pragma: no cover - compiled
    """Resolve (instrument_id, UTC day of ts_recv) to a symbol code through sorted intervals.

    ``ids`` is sorted ascending; interval ``j`` maps ``ids[j]`` to ``codes[j]`` on days
    ``start_days[j] <= day < end_days[j]``. Unmapped records get -1. Returns the number unmapped.
    """
    n = len(instrument_id)
    m = len(ids)
    missing = 0
    last_id = np.int64(-1)
    last_day = np.int64(-1)
    last_code = np.int32(-1)
    for i in range(n):
        iid = np.int64(np.uint32(instrument_id[i]))
        day = ts_recv[i] // NS_PER_DAY
        if iid == last_id and day == last_day:
            out[i] = last_code
            if last_code < 0:
                missing += 1
            continue
        lo = 0
        hi = m
        while lo < hi:
            mid = (lo + hi) // 2
            if ids[mid] < iid:
                lo = mid + 1
            else:
                hi = mid
        code = np.int32(-1)
        j = lo
        while j < m and ids[j] == iid:
            if start_days[j] <= day < end_days[j]:
                code = codes[j]
                break
            j += 1
        out[i] = code
        if code < 0:
            missing += 1
        last_id = iid
        last_day = day
        last_code = code
    return missing


@njit(cache=True, nogil=True)
def map_symbols_dense(
    instrument_id, ts_recv, day, lut, ids, start_days, end_days, codes, out
):  # pragma: no cover - compiled
    """:func:`map_symbols` with a dense table for one UTC ``day``: ``lut[instrument_id]`` is the code.

    ``lut`` holds the resolution of every id below ``len(lut)`` on ``day`` (-1: unmapped). Records
    of another day, or with a larger id, take the interval search. Returns the number unmapped.
    """
    n = len(instrument_id)
    m = len(lut)
    missing = 0
    for i in range(n):
        iid = np.int64(np.uint32(instrument_id[i]))
        if iid < m and ts_recv[i] // NS_PER_DAY == day:
            code = lut[iid]
            out[i] = code
            if code < 0:
                missing += 1
        else:
            missing += map_symbols(
                instrument_id[i : i + 1], ts_recv[i : i + 1], ids, start_days, end_days, codes, out[i : i + 1]
            )
    return missing


@njit(cache=True, nogil=True)
def split_days(ts_recv, bounds):  # pragma: no cover - compiled
    """Cut points where the UTC day of ``ts_recv`` changes (records arrive in ts_recv order).

    Writes ``[0, cut_1, ..., n]`` to ``bounds`` and returns how many entries it wrote. A record
    whose day differs from its predecessor's opens a new run, so the kernel is exact even if the
    input is not sorted (it then returns more runs).
    """
    n = len(ts_recv)
    k = 0
    bounds[k] = 0
    k += 1
    if n == 0:
        bounds[k] = 0
        return 2
    prev = ts_recv[0] // NS_PER_DAY
    for i in range(1, n):
        d = ts_recv[i] // NS_PER_DAY
        if d != prev:
            bounds[k] = i
            k += 1
            prev = d
    bounds[k] = n
    return k + 1


@njit(cache=True, nogil=True)
def keep_codes(codes, wanted, out):  # pragma: no cover - compiled
    """out[i] = wanted[codes[i]] (a boolean per dictionary code); returns how many are kept."""
    kept = 0
    for i in range(len(codes)):
        c = codes[i]
        k = c >= 0 and c < len(wanted) and wanted[c]
        out[i] = k
        kept += k
    return kept
