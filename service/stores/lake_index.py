"""The lake store's index of one file: its footer and each row group's statistics (read once)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq

from engine.lake.store import LakePath, parquet_file, parquet_metadata
from service.stores.base import SymbolRange

__all__ = ["index_file"]

_MAX = 2**63 - 1
_SYM_LO = ""
_SYM_HI = "\U0010ffff"


@dataclass
class _RowGroup:
    index: int
    rows: int
    ts_min: int
    ts_max: int
    sym_min: str
    sym_max: str
    has_ts_stats: bool = True
    recv_min: int = 0
    recv_max: int = _MAX

    def may_hold(self, symbol: str, lo: int, hi: int) -> bool:
        return self.sym_min <= symbol <= self.sym_max and self.ts_max >= lo and self.ts_min <= hi

    def only(self, symbol: str) -> bool:
        return self.sym_min == symbol == self.sym_max


@dataclass
class _FileIndex:
    path: LakePath
    stamp: tuple[int, int]
    metadata: pq.FileMetaData
    groups: list[_RowGroup]
    symbol: str | None
    _symbols: set[str] | None = None
    _ranges: dict[str, SymbolRange | None] = field(default_factory=dict)

    def open(self) -> pq.ParquetFile:
        return parquet_file(self.path, metadata=self.metadata, pre_buffer=True)


def _stat(md: pq.ColumnChunkMetaData | None) -> tuple[object, object] | None:
    if md is None:
        return None
    s = md.statistics
    if s is None or not s.has_min_max:
        return None
    return s.min_raw, s.max_raw


def index_file(path: LakePath, stamp: tuple[int, int], symbol: str | None) -> _FileIndex:
    md = parquet_metadata(path)
    names = md.schema.names
    ts_col = names.index("ts_event") if "ts_event" in names else None
    recv_col = names.index("ts_recv") if "ts_recv" in names else None
    sym_col = names.index("symbol") if "symbol" in names else None
    groups = []
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        ts = _stat(rg.column(ts_col)) if ts_col is not None else None
        recv = _stat(rg.column(recv_col)) if recv_col is not None else None
        sym = _stat(rg.column(sym_col)) if sym_col is not None else None
        ts_min, ts_max = (int(ts[0]), int(ts[1])) if ts else (0, _MAX)  # type: ignore[call-overload]
        recv_min, recv_max = (int(recv[0]), int(recv[1])) if recv else (0, _MAX)  # type: ignore[call-overload]
        if sym:
            lo, hi = (v.decode() if isinstance(v, bytes) else str(v) for v in sym)
        elif symbol is not None:
            lo = hi = symbol
        else:
            lo, hi = _SYM_LO, _SYM_HI
        groups.append(_RowGroup(i, rg.num_rows, ts_min, ts_max, lo, hi, ts is not None, recv_min, recv_max))
    return _FileIndex(path, stamp, md, groups, symbol)
