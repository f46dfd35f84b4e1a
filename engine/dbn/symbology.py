"""instrument_id -> symbol, by UTC date of ts_recv, as a vectorised lookup.

Databento resolves a record's symbol from the metadata mappings: interval ``[start_date,
end_date)`` maps ``int(interval.symbol)`` to ``raw_symbol``; ids can be reused across days, so
the key is (instrument_id, UTC date of ts_recv), exactly as ``to_df(map_symbols=True)`` does.
Live-recorded files carry their mappings in-stream as SymbolMappingMsg records instead.

Records whose id has no mapping keep the id as text (``"6155"``) and are counted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np

from engine.dbn.kernels import NS_PER_DAY, map_symbols_dense
from engine.dbn.metadata import UNDEF_TIMESTAMP, Metadata
from engine.dbn.reader import SymbolMappingRecord
from engine.errors import QueryError

__all__ = ["MAX_SYMBOL_CHARS", "Symbology", "check_symbol"]

MAX_SYMBOL_CHARS = 70
"""The longest raw symbol DBN v2/v3 can hold (a 71-byte C string)."""


def check_symbol(value: object, name: str = "symbol") -> str:
    """``value`` if it can be a symbol: text of 1 to 70 printable characters, no edge spaces.

    The one rule every reader applies before looking a symbol up (the lake, QuestDB, the HTTP
    API, the export): real venues use spaces, ``!``, ``/``, ``^`` and more (``BRN FMJ0024!``), so
    no character class beyond "printable"; whether a symbol exists is the store's answer, and SQL
    never sees it unquoted.

    Raises
    ------
    QueryError
        Naming ``name`` and what was expected.
    """
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_SYMBOL_CHARS
        or not value.isprintable()
        or value != value.strip()
    ):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "..."
        msg = (
            f"`{name}` must be 1 to {MAX_SYMBOL_CHARS} printable characters without leading or trailing "
            f"spaces (e.g. NVDA or 'BRN FMJ0024!'), got {shown}"
        )
        raise QueryError(msg)
    return value


_EPOCH = dt.date(1970, 1, 1)
_MIN_DAY = -(2**62)
_MAX_DAY = 2**62
DENSE_MAX_ID = 1 << 22
"""Ids up to this get a dense per-day lookup table (16 MiB at most); larger ids use the search."""


class Symbology:
    """A growing symbol dictionary plus the interval table the ``map_symbols`` kernel searches.

    Codes are stable for the life of the object: ``symbols[code]`` is the text of a code, so
    blocks of one file share one dictionary.
    """

    def __init__(self) -> None:
        self.symbols: list[str] = []
        self._code_of: dict[str, int] = {}
        self._rows: list[tuple[int, int, int, int]] = []  # (instrument_id, start_day, end_day, code)
        self._tables: tuple[np.ndarray, ...] | None = None
        self._lut: tuple[int, np.ndarray] | None = None  # (day, code by instrument_id on that day)
        self.unmapped_records = 0
        self.unmapped_ids: set[int] = set()

    @classmethod
    def from_metadata(cls, metadata: Metadata) -> Symbology:
        sym = cls()
        for mapping in metadata.mappings:
            for iv in mapping.intervals:
                if not iv.symbol.isdigit():
                    continue
                sym.add(
                    int(iv.symbol),
                    (iv.start_date - _EPOCH).days,
                    (iv.end_date - _EPOCH).days,
                    mapping.raw_symbol,
                )
        return sym

    def add(self, instrument_id: int, start_day: int, end_day: int, symbol: str) -> None:
        """Map ``instrument_id`` to ``symbol`` on UTC days ``[start_day, end_day)`` (days since 1970)."""
        self._rows.append((instrument_id, start_day, end_day, self.code(symbol)))
        self._tables = None
        self._lut = None

    def add_mapping_records(self, records: Iterable[SymbolMappingRecord]) -> None:
        """Take SymbolMappingMsg records from a live stream (databento's rules for their dates)."""
        for r in records:
            start = _MIN_DAY if r.start_ts == UNDEF_TIMESTAMP else r.start_ts // NS_PER_DAY
            end = _MAX_DAY if r.end_ts == UNDEF_TIMESTAMP else r.end_ts // NS_PER_DAY
            self.add(r.instrument_id, start, end, r.symbol)

    def code(self, symbol: str) -> int:
        """The dictionary code of ``symbol``, added if new."""
        c = self._code_of.get(symbol)
        if c is None:
            c = len(self.symbols)
            self.symbols.append(symbol)
            self._code_of[symbol] = c
        return c

    def _table(self) -> tuple[np.ndarray, ...]:
        if self._tables is None:
            rows = sorted(self._rows)  # by id, then start day
            arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
            self._tables = (
                np.ascontiguousarray(arr[:, 0]),
                np.ascontiguousarray(arr[:, 1]),
                np.ascontiguousarray(arr[:, 2]),
                np.ascontiguousarray(arr[:, 3]).astype(np.int32),
            )
        return self._tables

    def _dense(self, day: int) -> np.ndarray:
        """Codes by instrument_id on ``day`` (-1 where unmapped), ids up to :data:`DENSE_MAX_ID`."""
        if self._lut is None or self._lut[0] != day:
            ids, starts, ends, codes = self._table()
            live = (starts <= day) & (day < ends) & (ids <= DENSE_MAX_ID)
            lut = np.full(int(ids[live].max()) + 1 if live.any() else 0, -1, dtype=np.int32)
            # intervals are sorted by (id, start): the first one holding the day wins, as in map_symbols
            first = np.unique(ids[live], return_index=True)[1]
            lut[ids[live][first]] = codes[live][first]
            self._lut = (day, lut)
        return self._lut[1]

    def resolve(
        self, instrument_id: np.ndarray, ts_recv: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Symbol codes (int32) for records; unmapped ids get a code for the id's text."""
        if out is None:
            out = np.empty(len(instrument_id), dtype=np.int32)
        ids, starts, ends, codes = self._table()
        day = int(ts_recv[0] // NS_PER_DAY) if len(ts_recv) else 0
        missing = map_symbols_dense(
            instrument_id, ts_recv, day, self._dense(day), ids, starts, ends, codes, out
        )
        if missing:
            holes = out < 0
            unknown = np.unique(instrument_id[holes].astype(np.uint32))
            lut = {int(i): self.code(str(int(i))) for i in unknown}
            self.unmapped_ids.update(lut)
            keys = np.fromiter(lut.keys(), dtype=np.int64, count=len(lut))
            vals = np.fromiter(lut.values(), dtype=np.int32, count=len(lut))
            pos = np.searchsorted(keys, instrument_id[holes].astype(np.uint32).astype(np.int64))
            out[holes] = vals[pos]
            self.unmapped_records += int(missing)
        return out
