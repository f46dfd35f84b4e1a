"""The lake store's view of its files: footers, row-group statistics, sources, and a cache.

A file is known by (inode, mtime, size) with the footer read from it; :meth:`FileIndex.open`
opens the path and refuses (:class:`Stale`) when it now names another file, so rows are never
decoded with the offsets of a footer from an earlier version.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.lake.layout import source_keys
from engine.lake.store import LakePath, parquet_file, parquet_metadata
from service.stores.base import EVENT_KEY_COLUMNS, KEY_COLUMNS, SymbolRange, ints, is_sorted

__all__ = [
    "MAX", "FileIndex", "RowGroup", "RowGroupCache", "Stale", "file_stamp", "index_file", "merge_sorted",
]  # fmt: skip

MAX = 2**63 - 1

_SYM_LO = ""
_SYM_HI = "\U0010ffff"


@dataclass
class RowGroup:
    index: int
    rows: int
    ts_min: int
    ts_max: int
    sym_min: str
    sym_max: str
    has_ts_stats: bool = True
    recv_min: int = 0
    recv_max: int = MAX

    def may_hold(self, symbol: str, lo: int, hi: int) -> bool:
        return self.sym_min <= symbol <= self.sym_max and self.ts_max >= lo and self.ts_min <= hi

    def only(self, symbol: str) -> bool:
        return self.sym_min == symbol == self.sym_max


class Stale(Exception):
    """The file under a path is no longer the one whose footer the store holds."""


def file_stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_size


@dataclass
class FileIndex:
    path: LakePath
    stamp: tuple[int, int, int]
    metadata: pq.FileMetaData
    groups: list[RowGroup]
    symbol: str | None
    sources: frozenset[tuple[str, int, int]] = frozenset()
    _symbols: set[str] | None = None
    _ranges: dict[str, SymbolRange | None] = field(default_factory=dict)

    def open(self) -> pq.ParquetFile:
        """The file this footer was read from, or :class:`Stale` when the path now names another.

        An object-store key is opened by name (the lake publishes each key once, whole).
        """
        if not isinstance(self.path, Path):
            return parquet_file(self.path, metadata=self.metadata, pre_buffer=True)
        try:
            handle = pa.OSFile(str(self.path))
            same = file_stamp(os.stat(self.path)) == self.stamp  # after the open: the handle is this file
        except FileNotFoundError:
            raise Stale(self.path) from None
        if not same:
            handle.close()
            raise Stale(self.path)
        return pq.ParquetFile(handle, metadata=self.metadata, pre_buffer=True)


def _stat(md: pq.ColumnChunkMetaData | None) -> tuple[object, object] | None:
    if md is None:
        return None
    s = md.statistics
    if s is None or not s.has_min_max:
        return None
    return s.min_raw, s.max_raw


def index_file(path: LakePath, stamp: tuple[int, int, int], symbol: str | None) -> FileIndex:
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
        ts_min, ts_max = (int(ts[0]), int(ts[1])) if ts else (0, MAX)  # type: ignore[call-overload]
        recv_min, recv_max = (int(recv[0]), int(recv[1])) if recv else (0, MAX)  # type: ignore[call-overload]
        if sym:
            lo, hi = (v.decode() if isinstance(v, bytes) else str(v) for v in sym)
        elif symbol is not None:
            lo = hi = symbol
        else:
            lo, hi = _SYM_LO, _SYM_HI
        groups.append(RowGroup(i, rg.num_rows, ts_min, ts_max, lo, hi, ts is not None, recv_min, recv_max))
    return FileIndex(path, stamp, md, groups, symbol, source_keys(md))


class RowGroupCache:
    """Decoded row groups (all columns), least recently used out first, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple, pa.Table] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> pa.Table | None:
        with self._lock:
            t = self._items.get(key)
            if t is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return t

    def put(self, key: tuple, table: pa.Table) -> None:
        size = table.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = table
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.nbytes


def merge_sorted(table: pa.Table, rank: np.ndarray, order: str) -> pa.Table:
    """Rows of several runs in key order; rows equal on the key in file order (run rank, then row)."""
    cols = KEY_COLUMNS if order == "feed" else EVENT_KEY_COLUMNS
    keys = [ints(table.column(c)) for c in cols]
    idx = np.lexsort((np.arange(table.num_rows), rank, *reversed(keys)))
    return table if is_sorted(idx) else table.take(idx)
