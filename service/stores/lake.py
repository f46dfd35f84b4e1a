"""The Parquet-lake store: reads only the files and row groups a request needs.

Files are found with :func:`engine.lake.layout.list_lake` (``mbo_YYYY-MM-DD.parquet`` and per-symbol
``mbo_SYMBOL_YYYY-MM-DD.parquet``). For a symbol and day its own file is read when its footer's
sources include every source of the day file (it holds all the day file holds for the symbol),
else the day file: a day re-ingested with more sources is never shadowed by an older symbol file.
Row groups
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

Consistency while an ingest replaces files: a file is known by (inode, mtime, size) with the
footer read from it. A scan opens every file it will read before its first row and reads only
through those handles, so one answer comes from one version of each file, even when an ingest
renames a new day file into place mid-answer (the old inode stays readable while open). A file
that no longer matches its footer when opened makes the store list the lake again and retry.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.book.snapshot import book_snapshot
from engine.errors import StoreUnavailableError
from engine.lake.arrow import action_mask, symbol_mask
from engine.lake.layout import LakeFile, list_lake, parse_lake_name
from engine.lake.store import LakePath, resolve
from service.bars import Bars
from service.stores.base import (
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
from service.stores.lakebars import TradeBars
from service.stores.lakefiles import (
    MAX,
    FileIndex,
    RowGroup,
    RowGroupCache,
    Stale,
    file_stamp,
    index_file,
    merge_sorted,
)

__all__ = ["LakeStore"]

_RETRIES = 5
_T = TypeVar("_T")


@dataclass
class _Run:
    file: FileIndex
    group: RowGroup
    order: str = "feed"

    @property
    def ts_min(self) -> int:
        """The smallest value of the merge key's first column (ts_recv, or ts_event for bars)."""
        return self.group.recv_min if self.order == "feed" else self.group.ts_min


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
        self,
        lake_dir: str | os.PathLike[str],
        cache_bytes: int = 256 * 2**20,
        checkpoints: bool = True,
        relist_seconds: float = 2.0,
    ) -> None:
        self._where = resolve(lake_dir)
        self.lake_dir: LakePath = Path(self._where.root) if self._where.local else self._where.uri
        self.relist_seconds = relist_seconds
        self._listed_at = -float("inf")
        self.checkpoints = checkpoints
        self._cache = RowGroupCache(cache_bytes) if cache_bytes > 0 else None
        self._trades = TradeBars()
        self._lock = threading.Lock()
        self._dir_stamp: int | None = None
        self._files: dict[LakePath, FileIndex] = {}
        self._day_files: dict[str, FileIndex] = {}
        self._symbol_files: dict[str, dict[str, FileIndex]] = {}

    # -- listing -----------------------------------------------------------------------------

    def info(self) -> StoreInfo:
        return StoreInfo(self.kind, str(self.lake_dir))

    def _entries(self) -> list[tuple[LakeFile, tuple[int, int, int]]]:
        """Every lake file with its stamp: (inode, mtime_ns, size); inode 0 in an object store."""
        if not self._where.local:
            listed = [
                (parse_lake_name(n, self._where.path(n)), (0, m, z)) for n, z, m in self._where.listing()
            ]
            return [(lf, st) for lf, st in listed if lf is not None]
        out = []
        for lf in list_lake(self.lake_dir, by_symbol=None):
            try:
                out.append((lf, file_stamp(Path(lf.path).stat())))
            except OSError:
                continue  # vanished
        return out

    def _refresh(self) -> None:
        if not self._where.local:  # no directory mtime: listed again at most every relist_seconds
            now = time.monotonic()
            if now - self._listed_at < self.relist_seconds:
                return
            if not self._where.exists():
                msg = (
                    f"the lake {self.lake_dir} cannot be listed (check DATAPAIR_LAKE and the AWS_* variables)"
                )
                raise StoreUnavailableError(msg)
            self._reindex(None)
            self._listed_at = now
            return
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
        self._reindex(stamp)

    def _reindex(self, stamp: int | None) -> None:
        with self._lock:
            files: dict[LakePath, FileIndex] = {}
            days: dict[str, FileIndex] = {}
            per_symbol: dict[str, dict[str, FileIndex]] = {}
            for lf, fstamp in self._entries():
                try:
                    old = self._files.get(lf.path)
                    idx = (
                        old
                        if old is not None and old.stamp == fstamp
                        else index_file(lf.path, fstamp, lf.symbol)
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

    def _files_for(self, symbol: str) -> list[FileIndex]:
        self._refresh()
        own = self._symbol_files.get(symbol, {})
        out = []
        for day, f in self._day_files.items():
            mine = own.get(day)
            out.append(mine if mine is not None and mine.sources >= f.sources else f)
        out += [f for day, f in own.items() if day not in self._day_files]
        return out

    def _retrying(self, answer: Callable[[], _T]) -> _T:
        """``answer()``, listing the lake again when a file changed under it (an ingest replaced it)."""
        for _ in range(_RETRIES):
            try:
                return answer()
            except Stale:
                self._dir_stamp, self._listed_at = None, -float("inf")  # list again, whatever the mtime says
        msg = "the lake kept changing during the request; try again"
        raise StoreUnavailableError(msg)

    def _runs(
        self, symbol: str, lo: int, hi: int, order: str = "feed", first_recv: int | None = None
    ) -> list[_Run]:
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
        if self._where.local and not os.access(self.lake_dir, os.R_OK | os.X_OK):
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

    def _file_symbols(self, f: FileIndex) -> set[str]:
        if f._symbols is None:
            if f.symbol is not None:
                names = {f.symbol}
            else:
                names = {g.sym_min for g in f.groups if g.sym_min == g.sym_max}
                pf = f.open()
                try:
                    for g in f.groups:  # one row group at a time: memory stays bounded
                        if g.sym_min != g.sym_max:
                            col = (
                                pf.read_row_group(g.index, columns=["symbol"])
                                .column("symbol")
                                .combine_chunks()
                            )
                            if isinstance(col, pa.DictionaryArray):
                                col = col.dictionary.take(pc.unique(col.indices))
                            names |= {v for v in pc.unique(col.cast(pa.string())).to_pylist() if v}
                finally:
                    pf.close(force=True)
            f._symbols = names
        return f._symbols

    def symbols(self) -> list[str]:
        return self._retrying(self._symbols)

    def _symbols(self) -> list[str]:
        self._refresh()
        names: set[str] = set(self._symbol_files)
        for f in self._day_files.values():
            names |= self._file_symbols(f)
        return sorted(names)

    def has_symbol(self, symbol: str) -> bool:
        return self._retrying(lambda: self._has_symbol(symbol))

    def _has_symbol(self, symbol: str) -> bool:
        self._refresh()
        if symbol in self._symbol_files:
            return True
        return any(symbol in self._file_symbols(f) for f in self._day_files.values())

    def _file_range(self, f: FileIndex, symbol: str) -> SymbolRange | None:
        if symbol not in f._ranges:
            lo, hi, rows = MAX, -1, 0
            pending = []
            for g in f.groups:
                if g.only(symbol) and g.has_ts_stats:
                    lo, hi, rows = min(lo, g.ts_min), max(hi, g.ts_max), rows + g.rows
                elif g.sym_min <= symbol <= g.sym_max:
                    pending.append(g.index)
            for i in pending:
                t = self._read(f, i, ["ts_event", "symbol"])
                ts = ints(t.column("ts_event"))[symbol_mask(t.column("symbol"), symbol)]
                if len(ts):
                    lo, hi, rows = min(lo, int(ts.min())), max(hi, int(ts.max())), rows + len(ts)
            f._ranges[symbol] = SymbolRange(symbol, lo, hi, rows) if rows else None
        return f._ranges[symbol]

    def book(
        self, symbol: str, at: int, depth: int = 10, publisher: int | None = None, orders: bool = False
    ) -> dict[str, Any]:
        """The book from the day's checkpoints (``LAKE/_book``) and the rows after the nearest one."""
        try:
            return book_snapshot(
                self.lake_dir, symbol, at, depth, publisher, orders, checkpoints=self.checkpoints
            )
        except (
            FileNotFoundError
        ) as exc:  # a day file replaced while it was read: the next request sees the new one
            msg = f"a lake file changed while it was read ({exc})"
            raise StoreUnavailableError(msg) from None

    def time_range(self, symbol: str) -> SymbolRange | None:
        return self._retrying(lambda: self._time_range(symbol))

    def _time_range(self, symbol: str) -> SymbolRange | None:
        parts = [r for f in self._files_for(symbol) if (r := self._file_range(f, symbol)) is not None]
        if not parts:
            return None
        return SymbolRange(
            symbol, min(p.start for p in parts), max(p.end for p in parts), sum(p.rows for p in parts)
        )

    def count(self, query: RangeQuery, cap: int | None = None) -> int:
        return self._retrying(lambda: self._count(query, cap))

    def _count(self, query: RangeQuery, cap: int | None = None) -> int:
        lo, hi = query.first_ts, query.end
        total = 0
        by_file: dict[LakePath, tuple[FileIndex, list[int]]] = {}
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

    def _read(self, f: FileIndex, group: int, cols: list[str], pf: pq.ParquetFile | None = None) -> pa.Table:
        """A row group's columns: from the cache when it holds the group, else from the file
        (``pf``, the handle a scan pinned, or the file opened and checked now), kept in the
        cache when every column was read."""
        key = (f.path, f.stamp, group)
        if self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None:
                return hit.select(cols)
        if pf is None:
            opened = f.open()
            try:
                t = opened.read_row_group(group, columns=cols, use_threads=False)
            finally:
                opened.close(force=True)
        else:
            t = pf.read_row_group(group, columns=cols, use_threads=False)
        if self._cache is not None and len(cols) == len(f.metadata.schema.names):
            self._cache.put(key, t)
        return t

    def bars(self, query: RangeQuery, step: int) -> Bars | None:
        """Trade bars from the per-row-group trade cache (:mod:`service.stores.lakebars`)."""
        if query.actions != ("T",) or query.order != "event":
            return None
        return self._retrying(
            lambda: self._trades.bars(self._files_for(query.symbol), query, step, self._read)
        )

    @staticmethod
    def _mask(t: pa.Table, query: RangeQuery, lo: int, hi: int) -> np.ndarray:
        ts = ints(t.column("ts_event"))
        mask = (ts >= lo) & (ts <= hi)
        mask &= symbol_mask(t.column("symbol"), query.symbol)
        if query.actions is not None:
            mask &= action_mask(t.column("action"), query.actions)
        return mask

    def _load(
        self,
        run: _Run,
        query: RangeQuery,
        lo: int,
        hi: int,
        cols: list[str],
        schema: pa.Schema,
        pf: pq.ParquetFile,
    ) -> pa.Table:
        t = self._read(run.file, run.group.index, cols, pf)
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
        runs, pins = self._retrying(lambda: self._pinned_runs(query, lo, hi))
        try:
            merged = self._merge(runs, query, lo, hi, list(schema.names), schema, pins)
            for b in skip_until_after(rebatch(merged, batch_rows), query.after):
                yield b.select(out_names) if b.schema.names != out_names else b
        finally:
            for pf in pins.values():
                pf.close(force=True)

    def _pinned_runs(
        self, query: RangeQuery, lo: int, hi: int
    ) -> tuple[list[_Run], dict[LakePath, pq.ParquetFile]]:
        """The scan's runs and every file they read, opened now: one version of each file per answer."""
        runs = self._runs(query.symbol, lo, hi, query.order, query.first_recv)
        pins: dict[LakePath, pq.ParquetFile] = {}
        try:
            for r in runs:
                if r.file.path not in pins:
                    pins[r.file.path] = r.file.open()
        except BaseException:
            for pf in pins.values():
                pf.close(force=True)
            raise
        return runs, pins

    def _merge(
        self,
        runs: list[_Run],
        query: RangeQuery,
        lo: int,
        hi: int,
        cols: list[str],
        schema: pa.Schema,
        pins: dict[LakePath, pq.ParquetFile],
    ) -> Iterator[pa.Table]:
        # rows equal on the key keep the files' order: each run's place in (file, row group) order
        file_rank = {
            id(r): k for k, r in enumerate(sorted(runs, key=lambda r: (str(r.file.path), r.group.index)))
        }
        first_col = "ts_recv" if query.order == "feed" else "ts_event"
        opened: list[
            tuple[pa.Table, np.ndarray, int]
        ] = []  # (rows not yet sent, their key's first column, rank)
        i = 0
        while i < len(runs) or opened:
            bound = runs[i].ts_min if i < len(runs) else MAX + 1
            ready = any(len(ts) and ts[0] < bound for _, ts, _ in opened)
            if not ready and i < len(runs):
                t = self._load(runs[i], query, lo, hi, cols, schema, pins[runs[i].file.path])
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
                yield merge_sorted(pa.concat_tables(pieces), np.concatenate(ranks), query.order)
