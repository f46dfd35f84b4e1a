"""Per-record keys and per-file counts for QuestDB loads.

``day_seq``: the ordinal (from 0) of a record among the records of the same ``instrument_id`` on
the same UTC day of ts_recv, in source (feed) order, across publishers. The numbers depend only on
what the file itself fixes (instrument ids, ts_recv, record order), not on its symbology: a file
downloaded again with changed symbol mappings numbers its records the same way. A symbol filter
keeps or drops whole instruments on a day, so the numbers do not depend on it either; a file split
into days, or a day loaded from a multi-day file, numbers the same way. With
``(ts_event, ts_recv, instrument_id, publisher_id)`` it identifies one record, even among records
that agree on every field (see ``sql/README.md``).

A symbol is one instrument on a day, so within a symbol ``ORDER BY ts_recv, day_seq`` is feed
order (ts_recv orders the days, day_seq the records of a day, ties in ts_recv included).

:class:`FileStats` counts what one file sends, per (symbol, publisher_id), with the ts_event and
ts_recv ranges, so the load can be verified with ``count()`` and recorded in the ingest log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from engine.dbn.columns import ColumnBlock
from engine.dbn.kernels import NS_PER_DAY

__all__ = [
    "DaySequencer",
    "FileStats",
    "number_by_key",
    "number_by_key_reference",
    "number_in_groups",
    "number_in_groups_reference",
]

_EPOCH = dt.date(1970, 1, 1)
_EMPTY = -1


@njit(cache=True)
def number_in_groups(codes, counters, out):  # pragma: no cover - compiled
    """``out[i]`` = how many earlier records had ``codes[i]`` (continuing ``counters``, updated).

    ``counters`` must be longer than the largest code. Returns the number of rows numbered.
    """
    for i in range(len(codes)):
        c = codes[i]
        out[i] = counters[c]
        counters[c] += 1
    return len(codes)


def number_in_groups_reference(codes: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Plain-NumPy reference of :func:`number_in_groups` (updates ``counters`` too)."""
    out = np.empty(len(codes), dtype=np.int64)
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        out[idx] = counters[c] + np.arange(len(idx))
        counters[c] += len(idx)
    return out


@njit(cache=True)
def _slot(k, slots):  # pragma: no cover - compiled
    """Where key ``k`` is, or the empty slot it would take (Fibonacci hashing, linear probing)."""
    mask = len(slots) - 1
    shift = np.uint64(64 - int(np.log2(len(slots))))
    j = np.int64((np.uint64(k) * np.uint64(0x9E3779B97F4A7C15)) >> shift) & mask
    while slots[j] != k and slots[j] != -1:
        j = (j + 1) & mask
    return j


@njit(cache=True)
def rehash(old_slots, old_counts, slots, counts):  # pragma: no cover - compiled
    """Move every filled slot of the old table into the (empty, bigger) new one."""
    for i in range(len(old_slots)):
        k = old_slots[i]
        if k != -1:
            j = _slot(k, slots)
            slots[j] = k
            counts[j] = old_counts[i]


@njit(cache=True)
def number_by_key(keys, start, slots, counts, used, out):  # pragma: no cover - compiled
    """``out[i]`` = how many earlier records had ``keys[i]``, for ``i >= start`` (non-negative keys).

    ``slots``/``counts`` are an open-addressing hash table (linear probing, power-of-two size,
    ``slots`` -1 where empty) carried across calls; ``used[0]`` counts its filled slots. Stops when
    the table is half full and returns the first row not numbered (``len(keys)`` when done): the
    caller grows the table and calls again from there.
    """
    n_used = used[0]
    for i in range(start, len(keys)):
        k = keys[i]
        j = _slot(k, slots)
        if slots[j] == -1:
            if 2 * (n_used + 1) > len(slots):
                used[0] = n_used
                return i
            slots[j] = k
            n_used += 1
        out[i] = counts[j]
        counts[j] += 1
    used[0] = n_used
    return len(keys)


def number_by_key_reference(keys: np.ndarray, seen: dict[int, int]) -> np.ndarray:
    """Plain-Python reference of :func:`number_by_key` (``seen`` maps key -> records so far)."""
    out = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys.tolist()):
        out[i] = seen.get(k, 0)
        seen[k] = out[i] + 1
    return out


class _KeyCounter:
    """Records seen so far per key (one UTC day's instruments), a growable hash table."""

    def __init__(self, size: int = 64) -> None:
        self.slots = np.full(size, _EMPTY, dtype=np.int64)
        self.counts = np.zeros(size, dtype=np.int64)
        self.used = np.zeros(1, dtype=np.int64)

    def number(self, keys: np.ndarray, out: np.ndarray) -> None:
        done = 0
        while (done := number_by_key(keys, done, self.slots, self.counts, self.used, out)) < len(keys):
            self._grow()

    def _grow(self) -> None:
        slots = np.full(len(self.slots) * 4, _EMPTY, dtype=np.int64)
        counts = np.zeros(len(slots), dtype=np.int64)
        rehash(self.slots, self.counts, slots, counts)
        self.slots, self.counts = slots, counts


class DaySequencer:
    """Numbers the records of one source file per (instrument_id, UTC day of ts_recv), block by block."""

    def __init__(self) -> None:
        self._days: dict[int, _KeyCounter] = {}

    def _counter(self, day: int) -> _KeyCounter:
        ctr = self._days.get(day)
        if ctr is None:
            ctr = self._days[day] = _KeyCounter()
        return ctr

    def number(self, block: ColumnBlock) -> np.ndarray:
        """``day_seq`` of every row of ``block`` (int64), continuing from the earlier blocks."""
        n = len(block)
        out = np.empty(n, dtype=np.int64)
        if n == 0:
            return out
        keys = block.arrays["instrument_id"].astype(np.int64).view(np.int64) & 0xFFFFFFFF  # the u32 ids
        ts = block.arrays["ts_recv"]
        first, last = int(ts[0]) // NS_PER_DAY, int(ts[-1]) // NS_PER_DAY
        days = None if first == last else ts // NS_PER_DAY
        if days is None or bool(np.all(days == first)):
            self._counter(first).number(keys, out)
            return out
        for d in np.unique(days):  # a block across midnight (never from iter_column_blocks)
            idx = np.flatnonzero(days == d)
            part = np.empty(len(idx), dtype=np.int64)
            self._counter(int(d)).number(np.ascontiguousarray(keys[idx]), part)
            out[idx] = part
        return out


@dataclass
class FileStats:
    """Rows one file sent: per (symbol, publisher_id), per day, and the timestamp ranges."""

    rows: int = 0
    ts_event_min: int = 2**63 - 1
    ts_event_max: int = -(2**63)
    ts_recv_min: int = 2**63 - 1
    ts_recv_max: int = -(2**63)
    rows_by_day: dict[str, int] = field(default_factory=dict)
    _by_pub: dict[int, np.ndarray] = field(default_factory=dict)
    _symbols: list[str] = field(default_factory=list)

    def add(self, block: ColumnBlock) -> None:
        """Count a block (any length)."""
        n = len(block)
        if n == 0:
            return
        a = block.arrays
        self._symbols = block.symbols
        self.rows += n
        self.ts_event_min = min(self.ts_event_min, int(a["ts_event"].min()))
        self.ts_event_max = max(self.ts_event_max, int(a["ts_event"].max()))
        self.ts_recv_min = min(self.ts_recv_min, int(a["ts_recv"].min()))
        self.ts_recv_max = max(self.ts_recv_max, int(a["ts_recv"].max()))
        days = a["ts_recv"] // NS_PER_DAY
        d0 = int(days[0])
        if int(days[-1]) == d0 and bool(np.all(days == d0)):
            key = (_EPOCH + dt.timedelta(days=d0)).isoformat()
            self.rows_by_day[key] = self.rows_by_day.get(key, 0) + n
        else:
            ud, cnt = np.unique(days, return_counts=True)
            for d, c in zip(ud.tolist(), cnt.tolist(), strict=True):
                key = (_EPOCH + dt.timedelta(days=int(d))).isoformat()
                self.rows_by_day[key] = self.rows_by_day.get(key, 0) + int(c)
        codes = a["symbol"]
        pubs = a["publisher_id"]
        m = len(block.symbols)
        p0 = int(pubs[0])
        if bool(np.all(pubs == p0)):
            self._add_counts(p0, np.bincount(codes, minlength=m))
        else:
            for p in np.unique(pubs).tolist():
                self._add_counts(int(p), np.bincount(codes[pubs == p], minlength=m))

    def _add_counts(self, pub: int, counts: np.ndarray) -> None:
        cur = self._by_pub.get(pub)
        if cur is None or len(cur) < len(counts):
            grown = np.zeros(len(counts), dtype=np.int64)
            if cur is not None:
                grown[: len(cur)] = cur
            cur = grown
        cur[: len(counts)] += counts
        self._by_pub[pub] = cur

    @property
    def counts(self) -> dict[tuple[str, int], int]:
        """Rows per (symbol, publisher_id), zero counts left out."""
        out: dict[tuple[str, int], int] = {}
        for pub, arr in self._by_pub.items():
            for code in np.flatnonzero(arr).tolist():
                out[(self._symbols[code], pub)] = int(arr[code])
        return out
