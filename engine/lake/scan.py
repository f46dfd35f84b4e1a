"""Scan the lake with Polars, reading only the files and row groups a filter needs.

Only the files and row groups a query needs are read. File names give the first cut (day,
per-symbol file); then each file's footer statistics (min/max of ``symbol``, ``ts_recv`` and
``ts_event`` per row group) pick the row groups that can match, and each contiguous run of them
becomes a Polars lazy scan sliced to exactly those rows (Polars pushes the slice into the Parquet
reader; it does not prune on the statistics of dictionary-encoded ``symbol`` by itself). Runs
whose statistics prove every row matches (a busy symbol's own row groups inside the day) are
read as they are; the others are filtered exactly, on ``ts_recv`` for days (so per-symbol and
day files agree), ``symbol``, and ``ts_event`` for time ranges.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.dbn.kernels import NS_PER_DAY
from engine.errors import QueryError
from engine.lake.layout import LakeFile, list_lake
from engine.lake.store import LakePath, parquet_file, parquet_metadata, resolve, scan_parquet

__all__ = ["ScanPlan", "ScanRun", "lake_symbols", "plan_scan", "scan_lake", "scan_plan"]

_EPOCH = dt.date(1970, 1, 1)
_TS = pl.Datetime("ns", "UTC")


def _day_ns(day: dt.date) -> int:
    return (day - _EPOCH).days * NS_PER_DAY


@dataclass(frozen=True)
class ScanRun:
    """A contiguous run of row groups of one file that a query reads.

    ``rows`` None means the whole file. ``exact``: the footer statistics prove every row of the
    run matches the symbol, day and ts_event filters, so the run is read without a row filter
    (e.g. a busy symbol's own row groups well inside the day: only the query's own columns
    are decoded).
    """

    path: LakePath
    first: int
    rows: int | None
    exact: bool = False


@dataclass
class ScanPlan:
    """Which files and row groups a lake query reads.

    ``runs`` holds one :class:`ScanRun` per contiguous run of needed row groups; the
    ``row_groups_*`` and ``rows_*`` counts say how much of the selected files the query touches.
    """

    lake_dir: LakePath
    symbol: str | None
    start: dt.date | None
    end: dt.date | None
    ts_event: tuple[int, int] | None
    files: list[LakeFile] = field(default_factory=list)
    runs: list[ScanRun] = field(default_factory=list)
    row_groups_read: int = 0
    row_groups_total: int = 0
    rows_read: int = 0
    rows_total: int = 0


def _choose_files(files: list[LakeFile], symbol: str | None) -> list[LakeFile]:
    """One set of files per day: never both a day file and per-symbol files of the same rows."""
    by_day: dict[dt.date, list[LakeFile]] = {}
    for f in files:
        by_day.setdefault(f.day, []).append(f)
    chosen = []
    for day in sorted(by_day):
        day_files = [f for f in by_day[day] if f.symbol is None]
        sym_files = [f for f in by_day[day] if f.symbol is not None]
        if symbol is not None:
            own = [f for f in sym_files if f.symbol == symbol]
            chosen.extend(own or day_files)
        else:
            chosen.extend(day_files or sym_files)
    return chosen


_SKIP, _PARTIAL, _EXACT = 0, 1, 2


def _range_state(stats: object, lo: int | None, hi: int | None) -> int:
    """Whether a row group whose int64 statistics are ``stats`` has no, some or only values in ``[lo, hi)``."""
    if lo is None and hi is None:
        return _EXACT
    if stats is None or not getattr(stats, "has_min_max", False):
        return _PARTIAL
    mn, mx = stats.min_raw, stats.max_raw  # type: ignore[attr-defined]
    if (hi is not None and mn >= hi) or (lo is not None and mx < lo):
        return _SKIP
    if (lo is None or mn >= lo) and (hi is None or mx < hi):
        return _EXACT
    return _PARTIAL


def _symbol_state(stats: object, symbol: str | None) -> int:
    if symbol is None:
        return _EXACT
    if stats is None or not getattr(stats, "has_min_max", False):
        return _PARTIAL
    mn, mx = stats.min, stats.max  # type: ignore[attr-defined]
    if isinstance(mn, bytes | bytearray):
        mn, mx = mn.decode("utf-8", "replace"), mx.decode("utf-8", "replace")
    if not (mn <= symbol <= mx):
        return _SKIP
    return _EXACT if mn == mx == symbol else _PARTIAL


def plan_scan(
    lake_dir: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    ts_event: tuple[int, int] | None = None,
) -> ScanPlan:
    """Pick the lake files and row groups a query needs, from file names and footers only.

    Parameters
    ----------
    lake_dir : path-like
        The lake directory.
    symbol : str, optional
        One symbol (its per-symbol files are preferred to day files when both exist).
    start, end : date, optional
        Lake days (UTC date of ts_recv), ``start <= day < end`` (``end`` exclusive).
    ts_event : (int, int), optional
        Nanosecond range ``lo <= ts_event < hi``.

    Raises
    ------
    QueryError
        If the directory is missing or holds no lake file, or no file matches.
    """
    where = resolve(lake_dir)
    d: LakePath = Path(where.root) if where.local else where.uri
    if not where.exists():
        msg = f"lake directory {d} does not exist or is not a directory"
        raise QueryError(msg)
    every = list_lake(d, by_symbol=None)
    if not every:
        msg = f"no lake files (mbo_YYYY-MM-DD.parquet, mbo_SYMBOL_YYYY-MM-DD.parquet) in {d}"
        raise QueryError(msg)
    if start is not None and end is not None and end <= start:
        msg = f"empty day range: end {end} must be after start {start} (end is exclusive)"
        raise QueryError(msg)
    in_range = [f for f in every if (start is None or f.day >= start) and (end is None or f.day < end)]
    files = _choose_files(in_range, symbol)
    if not files:
        what = [f"symbol {symbol!r}"] if symbol is not None else []
        if start is not None or end is not None:
            what.append(f"days [{start or '...'}, {end or '...'})")
        msg = f"no lake files in {d} match {' and '.join(what) or 'the query'}"
        raise QueryError(msg)
    plan = ScanPlan(d, symbol, start, end, ts_event, files)
    recv_lo = _day_ns(start) if start is not None else None
    recv_hi = _day_ns(end) if end is not None else None
    ev_lo, ev_hi = ts_event if ts_event is not None else (None, None)
    for f in files:
        try:
            md = parquet_metadata(f.path)
        except (OSError, ValueError) as exc:
            msg = f"{f.path}: not a readable Parquet file ({exc})"
            raise QueryError(msg) from None
        names = [md.schema.column(i).name for i in range(md.num_columns)]
        col = {n: i for i, n in enumerate(names)}
        offsets, state = [], []
        row = 0
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            offsets.append(row)
            row += rg.num_rows
            stats = {n: rg.column(col[n]).statistics for n in ("symbol", "ts_recv", "ts_event") if n in col}
            st = _EXACT if rg.num_rows > 0 else _SKIP
            if st:
                st = min(st, _symbol_state(stats.get("symbol"), symbol))
            if st:
                st = min(st, _range_state(stats.get("ts_recv"), recv_lo, recv_hi))
            if st:
                st = min(st, _range_state(stats.get("ts_event"), ev_lo, ev_hi))
            state.append(st)
        offsets.append(row)
        kept = sum(1 for st in state if st)
        plan.row_groups_total += md.num_row_groups
        plan.rows_total += md.num_rows
        plan.row_groups_read += kept
        if kept == md.num_row_groups and len(set(state)) == 1:
            plan.runs.append(ScanRun(f.path, 0, None, state[0] == _EXACT))
            plan.rows_read += md.num_rows
            continue
        g = 0
        while g < md.num_row_groups:
            if not state[g]:
                g += 1
                continue
            h = g
            while h + 1 < md.num_row_groups and state[h + 1] == state[g]:
                h += 1
            first, stop = offsets[g], offsets[h + 1]
            plan.runs.append(ScanRun(f.path, first, stop - first, state[g] == _EXACT))
            plan.rows_read += stop - first
            g = h + 1
    return plan


def _row_filter(plan: ScanPlan) -> list[pl.Expr]:
    cond: list[pl.Expr] = []
    if plan.symbol is not None:
        cond.append(pl.col("symbol") == plan.symbol)
    if plan.start is not None:
        cond.append(pl.col("ts_recv") >= pl.lit(_day_ns(plan.start)).cast(_TS))
    if plan.end is not None:
        cond.append(pl.col("ts_recv") < pl.lit(_day_ns(plan.end)).cast(_TS))
    if plan.ts_event is not None:
        cond.append(pl.col("ts_event") >= pl.lit(plan.ts_event[0]).cast(_TS))
        cond.append(pl.col("ts_event") < pl.lit(plan.ts_event[1]).cast(_TS))
    return cond


def scan_plan(plan: ScanPlan) -> pl.LazyFrame:
    """The plan's rows as one Polars lazy frame, filtered exactly (symbol, days, ts_event).

    Consecutive whole files become one multi-file scan, other runs sliced scans (Polars reads
    only the row groups a slice covers); runs that are not exact get the row filter.
    """
    cond = _row_filter(plan)
    parts: list[pl.LazyFrame] = []
    whole: list[LakePath] = []
    whole_exact = True

    def add(lf: pl.LazyFrame, exact: bool) -> None:
        parts.append(lf if exact or not cond else lf.filter(*cond))

    for run in plan.runs:
        if run.rows is None and (not whole or run.exact == whole_exact):
            whole.append(run.path)
            whole_exact = run.exact
            continue
        if whole:
            add(scan_parquet(whole), whole_exact)
            whole = []
        if run.rows is None:
            whole, whole_exact = [run.path], run.exact
        else:
            add(scan_parquet(run.path).slice(run.first, run.rows), run.exact)
    if whole:
        add(scan_parquet(whole), whole_exact)
    if not parts:  # every row group was pruned: an empty frame of the lake's schema
        parts.append(scan_parquet(plan.files[0].path).head(0))
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")


def scan_lake(
    lake_dir: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    ts_event: tuple[int, int] | None = None,
) -> pl.LazyFrame:
    """A lazy frame of the lake rows matching the filters (see :func:`plan_scan`)."""
    return scan_plan(plan_scan(lake_dir, symbol=symbol, start=start, end=end, ts_event=ts_event))


def _file_symbols(f: LakeFile) -> set[str]:
    """The symbols with rows in one lake file: row-group statistics first, the column where they mix."""
    if f.symbol is not None:
        return {f.symbol}
    pf = parquet_file(f.path)
    md = pf.metadata
    col = pf.schema_arrow.get_field_index("symbol")
    names: set[str] = set()
    for g in range(md.num_row_groups):
        stats = md.row_group(g).column(col).statistics
        if stats is not None and stats.has_min_max and stats.min == stats.max:
            names.add(stats.min)
            continue
        arr = pf.read_row_group(g, columns=["symbol"]).column(0)
        for chunk in arr.chunks:
            values = chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk
            names.update(v for v in pc.unique(values).to_pylist() if v)
    return names


def lake_symbols(
    lake_dir: str | os.PathLike[str], start: dt.date | None = None, end: dt.date | None = None
) -> set[str]:
    """Every symbol with rows in the lake's files of days ``start <= day < end`` (for "did you mean")."""
    names: set[str] = set()
    for f in list_lake(lake_dir, by_symbol=None):
        if (start is None or f.day >= start) and (end is None or f.day < end):
            try:
                names |= _file_symbols(f)
            except (OSError, ValueError):
                continue  # unreadable: the query itself reports it
    return names
