"""The Parquet lake's layout: file names, listing and footer metadata (assembly: :mod:`engine.lake.footer`).

A lake is one flat directory of zstd Parquet files of :data:`engine.dbn.columns.MBO_SCHEMA`:

- ``mbo_YYYY-MM-DD.parquet``: every row whose ts_recv falls on that UTC day (the source file's
  day: a CME day file's opening snapshot stays with it even though its ts_event lies earlier);
- ``mbo_SYMBOL_YYYY-MM-DD.parquet`` (``--by-symbol``): the same rows, one file per symbol, in
  feed order (characters a file name cannot hold are %-escaped).

Inside a day file, rows come in *stripes* of 512K rows in arrival (ts_recv) order; each stripe
is ordered by symbol, stably, so each symbol's rows keep feed order (the file's order: an order
book can only be replayed in it, and ts_event is not monotonic in it), and cut into row groups
at symbol boundaries (64K-128K rows; a busy symbol gets row groups of its own). So the
row-group min/max statistics of ``ts_event`` and ``ts_recv`` prune by time (a stripe spans
minutes) and those of ``symbol`` prune by symbol. DuckDB applies
both by itself; pyarrow and Polars apply the ``ts_event`` ones but (pyarrow 26, Polars 2.1:
checked in the tests) not those of a dictionary column, so the lake's readers choose row groups from the footer
(:func:`pyarrow.parquet.read_metadata`) first. Readers find rows through statistics, never
through file names.

Every file's key-value metadata holds ``datapair.rows`` (its row count), ``datapair.day``,
``datapair.symbol`` (per-symbol files), ``datapair.layout`` and ``datapair.source``: a JSON list
of :class:`SourceEntry`, one per source DBN file that fed it (name, size, mtime_ns, path, its
rows here and its row groups, its rows per day in the whole run, the symbol filter). A rerun
compares that with the file on disk and skips exactly, without decoding. Files are written
under a hidden temporary name (:mod:`engine.tempfiles`: ``.mbo_....parquet.<pid>.<random>.tmp``)
and renamed when complete; :func:`remove_stale_temps` deletes those of dead processes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from engine.dbn.metadata import NS_PER_DAY
from engine.errors import SinkError
from engine.lake.store import LakePath, parquet_metadata, resolve
from engine.tempfiles import remove_stale_temps, temp_path

if TYPE_CHECKING:
    import pyarrow.parquet as pq

__all__ = [
    "LAYOUT",
    "META_DAY",
    "META_LAYOUT",
    "META_ROWS",
    "META_SOURCE",
    "META_SYMBOL",
    "LakeFile",
    "LakeInfo",
    "SourceEntry",
    "day_of_ns",
    "day_text",
    "lake_file_name",
    "lake_lock",
    "lake_metadata",
    "list_lake",
    "parse_lake_name",
    "read_lake_info",
    "remove_stale_temps",
    "source_keys",
    "symbol_file_covers",
    "temp_path",
]

META_ROWS = "datapair.rows"
META_DAY = "datapair.day"
META_SYMBOL = "datapair.symbol"
META_SOURCE = "datapair.source"
META_LAYOUT = "datapair.layout"
LAYOUT = "stripes of arrival order, each ordered by symbol (feed order within a symbol); row groups cut at symbol boundaries"

_EPOCH = dt.date(1970, 1, 1)
_NAME = re.compile(r"^mbo_(?:(?P<symbol>.+)_)?(?P<day>\d{4}-\d{2}-\d{2})\.parquet$")
# Characters kept as they are in per-symbol file names; anything else is %-escaped.
_SAFE = "!#$&'()+,-.;=@[]^_`{}~ "


def day_text(day: int | dt.date | str) -> str:
    """``YYYY-MM-DD`` for a day given as days since 1970, a date, or text."""
    if isinstance(day, str):
        return dt.date.fromisoformat(day).isoformat()
    if isinstance(day, dt.date):
        return day.isoformat()
    return (_EPOCH + dt.timedelta(days=int(day))).isoformat()


def day_of_ns(ts: int) -> int:
    """UTC day (days since 1970) of a nanosecond timestamp."""
    return int(ts) // NS_PER_DAY


def lake_file_name(day: int | dt.date | str, symbol: str | None = None) -> str:
    """``mbo_YYYY-MM-DD.parquet`` or, with a symbol, ``mbo_SYMBOL_YYYY-MM-DD.parquet``.

    Characters that cannot or should not appear in a file name (``/``, ``%``, ``\\``, ``:``,
    control characters) are %-escaped; :func:`parse_lake_name` undoes it.
    """
    d = day_text(day)
    if symbol is None:
        return f"mbo_{d}.parquet"
    if not symbol:
        msg = "symbol must not be empty in a per-symbol lake file name"
        raise ValueError(msg)
    return f"mbo_{quote(symbol, safe=_SAFE)}_{d}.parquet"


@dataclass(frozen=True)
class LakeFile:
    """One final lake file: its path (a URL in a remote lake), UTC day and (per-symbol files) symbol."""

    path: LakePath
    day: dt.date
    symbol: str | None = None


def parse_lake_name(name: str | os.PathLike[str], path: LakePath | None = None) -> LakeFile | None:
    """A :class:`LakeFile` for a lake file name, or None if the name is not one (``path``: where it is)."""
    p = Path(name)
    m = _NAME.match(p.name)
    if m is None:
        return None
    try:
        day = dt.date.fromisoformat(m["day"])
    except ValueError:
        return None
    sym = m["symbol"]
    return LakeFile(p if path is None else path, day, unquote(sym) if sym is not None else None)


def list_lake(
    lake_dir: str | os.PathLike[str],
    *,
    by_symbol: bool | None = False,
    symbol: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[LakeFile]:
    """The lake's files, sorted by day then symbol.

    Parameters
    ----------
    lake_dir : path-like or URL
        The lake directory or object-store prefix (a missing one lists as empty).
    by_symbol : bool or None
        False: day files only (default); True: per-symbol files only; None: both.
    symbol : str, optional
        Only per-symbol files of this symbol (implies ``by_symbol=True``).
    start, end : date, optional
        Only days ``start <= day <= end``.
    """
    where = resolve(lake_dir)
    if where.local:
        d = Path(where.root)
        if not d.is_dir():
            return []
        found: list[tuple[str, LakePath]] = [(e.name, Path(e.path)) for e in os.scandir(d) if e.is_file()]
    else:
        found = [(name, where.path(name)) for name, _, _ in where.listing()]
    out = []
    for name, path in found:
        f = parse_lake_name(name, path)
        if f is None:
            continue
        if symbol is not None:
            if f.symbol != symbol:
                continue
        elif by_symbol is not None and (f.symbol is not None) != by_symbol:
            continue
        if (start is not None and f.day < start) or (end is not None and f.day > end):
            continue
        out.append(f)
    out.sort(key=lambda f: (f.day, f.symbol or ""))
    return out


@dataclass
class SourceEntry:
    """What one source DBN file gave one lake file (stored as JSON in ``datapair.source``).

    ``rows`` is what it gave this file; ``rows_by_day`` what it gave the lake in total, by day
    (for the same kind of file: day files or per-symbol files), so a rerun can tell whether
    every day of the source is complete. ``row_groups`` is ``[first, count]``: the source's rows
    are contiguous row groups of the file, so a merge can copy them. ``filter`` is the sorted
    symbol filter of the run (None: all symbols). ``path`` is where the source was read from.
    """

    name: str
    size: int
    mtime_ns: int
    path: str = ""
    rows: int = 0
    rows_by_day: dict[str, int] = field(default_factory=dict)
    row_groups: tuple[int, int] = (0, 0)
    filter: list[str] | None = None
    bad_records: int = 0
    """Corrupt records of the source skipped by ``--skip-bad-records`` (0: none)."""

    @classmethod
    def of_file(cls, path: str | os.PathLike[str], symbols: Iterable[str] | None = None) -> SourceEntry:
        p = Path(path)
        st = p.stat()
        filt = sorted(symbols) if symbols is not None else None
        return cls(p.name, st.st_size, st.st_mtime_ns, str(p.resolve()), filter=filt)

    def same_source(self, other: SourceEntry) -> bool:
        """True if both describe the same file contents under the same filter."""
        return self.same_file(other) and self.filter == other.filter

    def same_file(self, other: SourceEntry) -> bool:
        """True if both describe the same file contents (name, size and mtime agree)."""
        return (self.name, self.size, self.mtime_ns) == (other.name, other.size, other.mtime_ns)

    def replaces(self, other: SourceEntry) -> bool:
        """True if rows from ``other`` in a lake file are superseded by this source's rows.

        That is the same file contents, or a file read from the same path (e.g. re-downloaded).
        Rows of any other source sharing the day are kept.
        """
        return self.same_file(other) or (bool(self.path) and self.path == other.path)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "path": self.path,
            "rows": self.rows,
            "rows_by_day": self.rows_by_day,
            "row_groups": list(self.row_groups),
            "filter": self.filter,
            **({"bad_records": self.bad_records} if self.bad_records else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SourceEntry:
        rg = d.get("row_groups") or (0, 0)
        return cls(
            str(d["name"]),
            int(d["size"]),
            int(d["mtime_ns"]),
            str(d.get("path", "")),
            int(d.get("rows", 0)),
            {str(k): int(v) for k, v in (d.get("rows_by_day") or {}).items()},
            (int(rg[0]), int(rg[1])),
            list(d["filter"]) if d.get("filter") is not None else None,
            int(d.get("bad_records", 0)),
        )


def lake_metadata(rows: int, day: str, symbol: str | None, sources: list[SourceEntry]) -> dict[str, str]:
    """The datapair key-value metadata of a lake file (row count, day, symbol, sources, layout)."""
    md = {
        META_ROWS: str(rows),
        META_DAY: day,
        META_LAYOUT: LAYOUT,
        META_SOURCE: json.dumps([s.to_json() for s in sources], separators=(",", ":")),
    }
    if symbol is not None:
        md[META_SYMBOL] = symbol
    return md


@dataclass
class LakeInfo:
    """The datapair metadata of one lake file, read from its footer only."""

    path: LakePath
    rows: int
    """``datapair.rows`` (the count written when the file was completed)."""
    num_rows: int
    """The Parquet footer's row count (equals ``rows`` in a good file)."""
    num_row_groups: int
    day: str | None
    symbol: str | None
    sources: list[SourceEntry]

    @property
    def complete(self) -> bool:
        return self.rows == self.num_rows


def read_lake_info(path: LakePath) -> LakeInfo:
    """Read a lake file's footer (local path or remote URL): stored row count, day, symbol and sources.

    Raises
    ------
    SinkError
        If the file is not a Parquet file or lacks ``datapair.rows``.
    """
    p = path if isinstance(path, str) and "://" in path else Path(path)
    try:
        md = parquet_metadata(p)
    except (OSError, ValueError) as exc:
        msg = f"{p}: not a readable Parquet file ({exc})"
        raise SinkError(msg) from None
    kv = {k.decode(): v.decode() for k, v in (md.metadata or {}).items()}
    if META_ROWS not in kv:
        msg = f"{p}: no '{META_ROWS}' in the Parquet key-value metadata, expected a datapair lake file"
        raise SinkError(msg)
    try:
        sources = [SourceEntry.from_json(s) for s in json.loads(kv.get(META_SOURCE, "[]"))]
        rows = int(kv[META_ROWS])
    except (ValueError, KeyError, TypeError) as exc:
        msg = f"{p}: malformed datapair metadata ({exc})"
        raise SinkError(msg) from None
    return LakeInfo(p, rows, md.num_rows, md.num_row_groups, kv.get(META_DAY), kv.get(META_SYMBOL), sources)


def source_keys(md: pq.FileMetaData) -> frozenset[tuple[str, int, int]]:
    """The (name, size, mtime_ns) of every source a lake file's footer lists (empty if none)."""
    raw = (md.metadata or {}).get(META_SOURCE.encode())
    try:
        entries = json.loads(raw) if raw else []
        return frozenset((str(e["name"]), int(e["size"]), int(e["mtime_ns"])) for e in entries)
    except (ValueError, KeyError, TypeError):
        return frozenset()


def symbol_file_covers(symbol_file: pq.FileMetaData, day_file: pq.FileMetaData) -> bool:
    """Whether a symbol's own file holds all the day file holds for it: its sources include the
    day file's. Readers use the symbol file only then, whatever the names or ages say (a day
    re-ingested with one more source must not be shadowed by an older symbol file)."""
    return source_keys(symbol_file) >= source_keys(day_file)


@contextmanager
def lake_lock(lake_dir: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive lock on the lake directory, held while files are moved into place."""
    fd = os.open(Path(lake_dir) / ".datapair.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
