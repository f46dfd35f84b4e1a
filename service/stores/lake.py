"""The Parquet-lake store: reads only the files and row groups a request needs.

Files are found with :func:`engine.lake.layout.list_lake` (``mbo_YYYY-MM-DD.parquet`` and per-symbol
``mbo_SYMBOL_YYYY-MM-DD.parquet``; for a symbol and day its own file is preferred). Row groups
are chosen by their footer statistics of ``symbol`` and ``ts_event``, never by the file's day, so
a ``ts_event`` range that crosses days (or a day file's snapshot rows stamped days earlier) is
found wherever it lies.

Each chosen row group is a *run*: once read and filtered, its rows are in feed order already (a
stripe keeps each symbol's rows in the file's order). Runs are merged lazily by their
statistics' minimum of ``ts_recv`` (feed order) or ``ts_event`` (``order="event"``, for bars):
rows below the smallest minimum of the runs not yet opened are final and go out, so at any time
only the runs that overlap in time are in memory (one or two for a lake written in stripes),
whatever the range. Runs that start together keep file order, so rows equal on the key keep the
file's order.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.book.snapshot import book_snapshot
from engine.errors import StoreUnavailableError
from engine.lake.layout import list_lake
from service.stores.base import (
    EVENT_KEY_COLUMNS,
    KEY_COLUMNS,
    RangeQuery,
    Store,
    StoreInfo,
    SymbolRange,
    ints,
    is_sorted,
    key_order,
    output_schema,
    read_columns,
    rebatch,
    skip_until_after,
)

__all__ = ["LakeStore"]

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
    path: Path
    stamp: tuple[int, int]
    metadata: pq.FileMetaData
    groups: list[_RowGroup]
    symbol: str | None
    _symbols: set[str] | None = None
    _ranges: dict[str, SymbolRange | None] = field(default_factory=dict)

    def open(self) -> pq.ParquetFile:
        return pq.ParquetFile(self.path, metadata=self.metadata, pre_buffer=True)


def _stat(md: pq.ColumnChunkMetaData | None) -> tuple[object, object] | None:
    if md is None:
        return None
    s = md.statistics
    if s is None or not s.has_min_max:
        return None
    return s.min_raw, s.max_raw


def _index_file(path: Path, stamp: tuple[int, int], symbol: str | None) -> _FileIndex:
    md = pq.read_metadata(path)
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


@dataclass
class _Run:
    file: _FileIndex
    group: _RowGroup
    order: str = "feed"

    @property
    def ts_min(self) -> int:
        """The smallest value of the merge key's first column (ts_recv, or ts_event for bars)."""
        return self.group.recv_min if self.order == "feed" else self.group.ts_min


class _RowGroupCache:
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


def _symbol_mask(col: pa.ChunkedArray | pa.Array, symbol: str) -> np.ndarray:
    """Boolean mask of rows equal to ``symbol`` (dictionary or plain strings)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.DictionaryArray):
        values = col.dictionary.to_pylist()
        codes = [i for i, v in enumerate(values) if v == symbol]
        idx = col.indices.to_numpy(zero_copy_only=False)
        if not codes:
            return np.zeros(len(idx), dtype=np.bool_)
        return np.isin(idx, codes) if len(codes) > 1 else idx == codes[0]
    return np.asarray(col.to_numpy(zero_copy_only=False) == symbol, dtype=np.bool_)


def _action_mask(col: pa.ChunkedArray | pa.Array, actions: tuple[str, ...]) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.DictionaryArray):
        values = col.dictionary.to_pylist()
        codes = [i for i, v in enumerate(values) if v in actions]
        return np.isin(col.indices.to_numpy(zero_copy_only=False), codes)
    return np.isin(col.to_numpy(zero_copy_only=False), list(actions))


def _merge_sorted(table: pa.Table, rank: np.ndarray, order: str) -> pa.Table:
    """Rows of several runs in key order; rows equal on the key in file order (run rank, then row)."""
    cols = KEY_COLUMNS if order == "feed" else EVENT_KEY_COLUMNS
    keys = [ints(table.column(c)) for c in cols]
    idx = np.lexsort((np.arange(table.num_rows), rank, *reversed(keys)))
    return table if is_sorted(idx) else table.take(idx)


class LakeStore(Store):
    """MBO rows from a Parquet lake directory.

    Parameters
    ----------
    lake_dir : path-like
        The lake directory (``DATAPAIR_LAKE``, default ``./data/parquet``).
    cache_bytes : int
        Budget of the cache of decoded row groups (``DATAPAIR_LAKE_CACHE_MB``; 0: no cache).
        Row groups read whole for ``/data`` are kept, so repeated and neighbouring requests skip
        the Parquet decode; narrower reads (keys, bars) use it when it holds their row group.
    checkpoints : bool
        ``/api/mbo/book`` starts from the book checkpoints (``datapair-book index``) when they
        exist and match the day file (default); False replays each day from its start.
    """

    kind = "lake"

    def __init__(
        self, lake_dir: str | os.PathLike[str], cache_bytes: int = 256 * 2**20, checkpoints: bool = True
    ) -> None:
        self.lake_dir = Path(lake_dir)
        self.checkpoints = checkpoints
        self._cache = _RowGroupCache(cache_bytes) if cache_bytes > 0 else None
        self._lock = threading.Lock()
        self._dir_stamp: int | None = None
        self._files: dict[Path, _FileIndex] = {}
        self._day_files: dict[str, _FileIndex] = {}
        self._symbol_files: dict[str, dict[str, _FileIndex]] = {}

    # -- listing -----------------------------------------------------------------------------

    def info(self) -> StoreInfo:
        return StoreInfo(self.kind, str(self.lake_dir))

    def _refresh(self) -> None:
        try:
            stamp = os.stat(self.lake_dir).st_mtime_ns
        except FileNotFoundError:
            msg = (
                f"the lake directory {self.lake_dir} does not exist (set DATAPAIR_LAKE or ingest a day first)"
            )
            raise StoreUnavailableError(msg) from None
        except OSError as exc:
            msg = f"the lake directory {self.lake_dir} cannot be read: {exc}"
            raise StoreUnavailableError(msg) from None
        if stamp == self._dir_stamp:
            return
        with self._lock:
            files: dict[Path, _FileIndex] = {}
            days: dict[str, _FileIndex] = {}
            per_symbol: dict[str, dict[str, _FileIndex]] = {}
            for lf in list_lake(self.lake_dir, by_symbol=None):
                try:
                    st = lf.path.stat()
                    fstamp = (st.st_mtime_ns, st.st_size)
                    old = self._files.get(lf.path)
                    idx = (
                        old
                        if old is not None and old.stamp == fstamp
                        else _index_file(lf.path, fstamp, lf.symbol)
                    )
                except (OSError, ValueError):
                    continue  # vanished or half-visible file: skipped until it is complete
                files[lf.path] = idx
                day = lf.day.isoformat()
                if lf.symbol is None:
                    days[day] = idx
                else:
                    per_symbol.setdefault(lf.symbol, {})[day] = idx
            self._files, self._day_files, self._symbol_files = files, days, per_symbol
            self._dir_stamp = stamp

    def _files_for(self, symbol: str) -> list[_FileIndex]:
        self._refresh()
        own = self._symbol_files.get(symbol, {})
        out = [own.get(day, f) for day, f in self._day_files.items()]
        out += [f for day, f in own.items() if day not in self._day_files]
        return out

    def _runs(self, symbol: str, lo: int, hi: int, order: str = "feed", first_recv: int | None = None) -> list[_Run]:
        runs = [
            _Run(f, g, order)
            for f in self._files_for(symbol)
            for g in f.groups
            if g.may_hold(symbol, lo, hi) and (first_recv is None or g.recv_max >= first_recv)
        ]
        runs.sort(key=lambda r: (r.ts_min, str(r.file.path), r.group.index))  # ties: file order
        return runs

    def ping(self) -> dict[str, object]:
        self._refresh()
        if not os.access(self.lake_dir, os.R_OK | os.X_OK):
            msg = f"the lake directory {self.lake_dir} is not readable"
            raise StoreUnavailableError(msg)
        rows = sum(f.metadata.num_rows for f in self._day_files.values())
        out: dict[str, object] = {"files": len(self._files), "day_files": len(self._day_files), "rows": rows}
        if self._cache is not None:
            out["cache"] = {
                "mib": round(self._cache.bytes / 2**20, 1),
                "budget_mib": self._cache.max_bytes // 2**20,
                "hits": self._cache.hits,
                "misses": self._cache.misses,
            }
        return out

    # -- metadata answers ----------------------------------------------------------------------

    def _file_symbols(self, f: _FileIndex) -> set[str]:
        if f._symbols is None:
            if f.symbol is not None:
                names = {f.symbol}
            else:
                names = {g.sym_min for g in f.groups if g.sym_min == g.sym_max}
                pf = f.open()
                for g in f.groups:  # one row group at a time: memory stays bounded
                    if g.sym_min != g.sym_max:
                        col = pf.read_row_group(g.index, columns=["symbol"]).column("symbol").combine_chunks()
                        if isinstance(col, pa.DictionaryArray):
                            col = col.dictionary.take(pc.unique(col.indices))
                        names |= {v for v in pc.unique(col.cast(pa.string())).to_pylist() if v}
            f._symbols = names
        return f._symbols

    def symbols(self) -> list[str]:
        self._refresh()
        names: set[str] = set(self._symbol_files)
        for f in self._day_files.values():
            names |= self._file_symbols(f)
        return sorted(names)

    def has_symbol(self, symbol: str) -> bool:
        self._refresh()
        if symbol in self._symbol_files:
            return True
        return any(symbol in self._file_symbols(f) for f in self._day_files.values())

    def _file_range(self, f: _FileIndex, symbol: str) -> SymbolRange | None:
        if symbol not in f._ranges:
            lo, hi, rows = _MAX, -1, 0
            pending = []
            for g in f.groups:
                if g.only(symbol) and g.has_ts_stats:
                    lo, hi, rows = min(lo, g.ts_min), max(hi, g.ts_max), rows + g.rows
                elif g.sym_min <= symbol <= g.sym_max:
                    pending.append(g.index)
            pf = f.open() if pending else None
            for i in pending:
                t = pf.read_row_group(i, columns=["ts_event", "symbol"])  # type: ignore[union-attr]
                ts = ints(t.column("ts_event"))[_symbol_mask(t.column("symbol"), symbol)]
                if len(ts):
                    lo, hi, rows = min(lo, int(ts.min())), max(hi, int(ts.max())), rows + len(ts)
            f._ranges[symbol] = SymbolRange(symbol, lo, hi, rows) if rows else None
        return f._ranges[symbol]

    def book(
        self, symbol: str, at: int, depth: int = 10, publisher: int | None = None, orders: bool = False
    ) -> dict[str, Any]:
        """The book from the day's checkpoints (``LAKE/_book``) and the rows after the nearest one."""
        try:
            return book_snapshot(self.lake_dir, symbol, at, depth, publisher, orders, checkpoints=self.checkpoints)
        except FileNotFoundError as exc:  # a day file replaced while it was read: the next request sees the new one
            msg = f"a lake file changed while it was read ({exc})"
            raise StoreUnavailableError(msg) from None

    def time_range(self, symbol: str) -> SymbolRange | None:
        parts = [r for f in self._files_for(symbol) if (r := self._file_range(f, symbol)) is not None]
        if not parts:
            return None
        return SymbolRange(
            symbol, min(p.start for p in parts), max(p.end for p in parts), sum(p.rows for p in parts)
        )

    def count(self, query: RangeQuery, cap: int | None = None) -> int:
        lo, hi = query.first_ts, query.end
        total = 0
        by_file: dict[Path, tuple[_FileIndex, list[int]]] = {}
        for run in self._runs(query.symbol, lo, hi):
            g = run.group
            if (
                query.actions is None
                and g.only(query.symbol)
                and g.has_ts_stats
                and lo <= g.ts_min
                and g.ts_max <= hi
            ):
                total += g.rows
            else:
                by_file.setdefault(run.file.path, (run.file, []))[1].append(g.index)
            if cap is not None and total > cap:
                return total
        cols = ["ts_event", "symbol"] + (["action"] if query.actions else [])
        for f, groups in by_file.values():
            for i in groups:
                t = self._read(f, i, cols)
                total += int(np.count_nonzero(self._mask(t, query, lo, hi)))
                if cap is not None and total > cap:
                    return total
        return total

    # -- rows ----------------------------------------------------------------------------------

    def _read(self, f: _FileIndex, group: int, cols: list[str]) -> pa.Table:
        """A row group's columns: from the cache when it holds the group, else from the file
        (kept in the cache when every column was read)."""
        key = (f.path, f.stamp, group)
        if self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None:
                return hit.select(cols)
        t = f.open().read_row_group(group, columns=cols, use_threads=False)
        if self._cache is not None and len(cols) == len(f.metadata.schema.names):
            self._cache.put(key, t)
        return t

    @staticmethod
    def _mask(t: pa.Table, query: RangeQuery, lo: int, hi: int) -> np.ndarray:
        ts = ints(t.column("ts_event"))
        mask = (ts >= lo) & (ts <= hi)
        mask &= _symbol_mask(t.column("symbol"), query.symbol)
        if query.actions is not None:
            mask &= _action_mask(t.column("action"), query.actions)
        return mask

    def _load(
        self, run: _Run, query: RangeQuery, lo: int, hi: int, cols: list[str], schema: pa.Schema
    ) -> pa.Table:
        t = self._read(run.file, run.group.index, cols)
        idx = np.flatnonzero(self._mask(t, query, lo, hi))
        if len(idx) == 0:
            return t.select(schema.names).slice(0, 0)
        sub = t.take(idx) if len(idx) < t.num_rows else t
        order = key_order(sub, query.order)  # stable: feed order inside a run is already the key's
        if not is_sorted(order):
            sub = sub.take(order)
        return sub.select(schema.names).cast(schema) if sub.schema != schema else sub.select(schema.names)

    def scan(
        self, query: RangeQuery, columns: Sequence[str] | None = None, batch_rows: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        schema = output_schema(read_columns(columns))
        out_names = output_schema(columns).names
        lo, hi = query.first_ts, query.end
        runs = self._runs(query.symbol, lo, hi, query.order, query.first_recv)
        merged = self._merge(runs, query, lo, hi, list(schema.names), schema)
        for b in skip_until_after(rebatch(merged, batch_rows), query.after):
            yield b.select(out_names) if b.schema.names != out_names else b

    def _merge(
        self, runs: list[_Run], query: RangeQuery, lo: int, hi: int, cols: list[str], schema: pa.Schema
    ) -> Iterator[pa.Table]:
        # rows equal on the key keep the files' order: each run's place in (file, row group) order
        file_rank = {id(r): k for k, r in enumerate(sorted(runs, key=lambda r: (str(r.file.path), r.group.index)))}
        first_col = "ts_recv" if query.order == "feed" else "ts_event"
        opened: list[tuple[pa.Table, np.ndarray, int]] = []  # (rows not yet sent, their key's first column, rank)
        i = 0
        while i < len(runs) or opened:
            bound = runs[i].ts_min if i < len(runs) else _MAX + 1
            ready = any(len(ts) and ts[0] < bound for _, ts, _ in opened)
            if not ready and i < len(runs):
                t = self._load(runs[i], query, lo, hi, cols, schema)
                if t.num_rows:
                    opened.append((t, ints(t.column(first_col)), file_rank[id(runs[i])]))
                i += 1
                continue
            pieces, ranks, rest = [], [], []
            for t, ts, rank in opened:
                cut = int(np.searchsorted(ts, bound, side="left"))
                if cut:
                    pieces.append(t.slice(0, cut))
                    ranks.append(np.full(cut, rank, dtype=np.int64))
                if cut < len(ts):
                    rest.append((t.slice(cut), ts[cut:], rank))
            opened = rest
            if len(pieces) == 1:
                yield pieces[0]
            elif pieces:
                yield _merge_sorted(pa.concat_tables(pieces), np.concatenate(ranks), query.order)
