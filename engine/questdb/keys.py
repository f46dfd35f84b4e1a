"""Per-record keys and per-file counts for QuestDB loads.

``day_seq``: the ordinal (from 0) of a record among the records of the same symbol on the same
UTC day of ts_recv, in source order. A symbol filter keeps or drops whole symbols, so the numbers
do not depend on it; a file split into days, or a day loaded from a multi-day file, numbers the
same way. With ``(ts_event, ts_recv, symbol, publisher_id)`` it identifies one record, even
among records that agree on every field (see ``sql/README.md``).

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

__all__ = ["DaySequencer", "FileStats", "number_in_groups", "number_in_groups_reference"]

_EPOCH = dt.date(1970, 1, 1)


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


class DaySequencer:
    """Numbers the records of one source file per (symbol, UTC day of ts_recv), block by block."""

    def __init__(self) -> None:
        self._counters: dict[int, np.ndarray] = {}

    def _counter(self, day: int, n_symbols: int) -> np.ndarray:
        ctr = self._counters.get(day)
        if ctr is None or len(ctr) < n_symbols:
            grown = np.zeros(max(n_symbols, 16) * 2, dtype=np.int64)
            if ctr is not None:
                grown[: len(ctr)] = ctr
            ctr = grown
            self._counters[day] = ctr
        return ctr

    def number(self, block: ColumnBlock) -> np.ndarray:
        """``day_seq`` of every row of ``block`` (int64), continuing from the earlier blocks."""
        n = len(block)
        out = np.empty(n, dtype=np.int64)
        if n == 0:
            return out
        codes = np.ascontiguousarray(block.arrays["symbol"], dtype=np.int32)
        ts = block.arrays["ts_recv"]
        first, last = int(ts[0]) // NS_PER_DAY, int(ts[-1]) // NS_PER_DAY
        days = None if first == last else ts // NS_PER_DAY
        if days is None or bool(np.all(days == first)):
            number_in_groups(codes, self._counter(first, len(block.symbols)), out)
            return out
        for d in np.unique(days):  # a block across midnight (never from iter_column_blocks)
            idx = np.flatnonzero(days == d)
            part = np.empty(len(idx), dtype=np.int64)
            number_in_groups(
                np.ascontiguousarray(codes[idx]), self._counter(int(d), len(block.symbols)), part
            )
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
