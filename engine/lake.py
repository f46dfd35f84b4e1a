"""The Parquet lake's layout: file names, listing, footer metadata, and assembling a file from parts.

A lake is one flat directory of zstd Parquet files of :data:`engine.columns.MBO_SCHEMA`:

- ``mbo_YYYY-MM-DD.parquet``: every row whose ts_recv falls on that UTC day (the source file's
  day: a CME day file's opening snapshot stays with it even though its ts_event lies earlier);
- ``mbo_SYMBOL_YYYY-MM-DD.parquet`` (``--by-symbol``): the same rows, one file per symbol,
  sorted by ts_event (characters a file name cannot hold are %-escaped).

Inside a day file, rows come in *stripes* of 512K rows in arrival (ts_recv) order; each stripe
is sorted by (symbol, ts_event) and cut into row groups at symbol boundaries (64K-128K rows; a
busy symbol gets row groups of its own). So the row-group min/max statistics of ``ts_event``
prune by time (a stripe spans minutes) and those of ``symbol`` prune by symbol. DuckDB applies
both by itself; pyarrow and Polars apply the ``ts_event`` ones but (pyarrow 26, Polars 2.1:
checked in the tests) not those of a dictionary column, so the lake's readers choose row groups from the footer
(:func:`pyarrow.parquet.read_metadata`) first. Readers find rows through statistics, never
through file names.

Every file's key-value metadata holds ``datapair.rows`` (its row count), ``datapair.day``,
``datapair.symbol`` (per-symbol files), ``datapair.layout`` and ``datapair.source``: a JSON list
of :class:`SourceEntry`, one per source DBN file that fed it (name, size, mtime_ns, path, its
rows here and its row groups, its rows per day in the whole run, the symbol filter). A rerun
compares that with the file on disk and skips exactly, without decoding. Files are written
under a hidden temporary name (``.mbo_....parquet.<pid>.<random>.tmp``) and renamed when
complete; :func:`remove_stale_temps` deletes those of dead processes.
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
from typing import Any
from urllib.parse import quote, unquote

import pyarrow.parquet as pq

from engine.errors import SinkError
from engine.kernels import NS_PER_DAY

__all__ = [
    "LAYOUT",
    "META_DAY",
    "META_LAYOUT",
    "META_ROWS",
    "META_SOURCE",
    "META_SYMBOL",
    "LakeFile",
    "LakeInfo",
    "PartAssembler",
    "SourceEntry",
    "day_of_ns",
    "day_text",
    "lake_file_name",
    "lake_lock",
    "list_lake",
    "parse_lake_name",
    "read_footer",
    "read_lake_info",
    "remove_stale_temps",
    "temp_path",
]

META_ROWS = "datapair.rows"
META_DAY = "datapair.day"
META_SYMBOL = "datapair.symbol"
META_SOURCE = "datapair.source"
META_LAYOUT = "datapair.layout"
LAYOUT = "stripes of arrival order, each sorted by symbol, ts_event; row groups cut at symbol boundaries"

_EPOCH = dt.date(1970, 1, 1)
_NAME = re.compile(r"^mbo_(?:(?P<symbol>.+)_)?(?P<day>\d{4}-\d{2}-\d{2})\.parquet$")
_TEMP = re.compile(r"^\.mbo_.*\.parquet\.(?P<pid>\d+)\.[0-9a-f]+\.tmp$")
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
    """One final lake file: its path, UTC day and (per-symbol files) symbol."""

    path: Path
    day: dt.date
    symbol: str | None = None


def parse_lake_name(name: str | os.PathLike[str]) -> LakeFile | None:
    """A :class:`LakeFile` for a lake file name, or None if the name is not one."""
    p = Path(name)
    m = _NAME.match(p.name)
    if m is None:
        return None
    try:
        day = dt.date.fromisoformat(m["day"])
    except ValueError:
        return None
    sym = m["symbol"]
    return LakeFile(p, day, unquote(sym) if sym is not None else None)


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
    lake_dir : path-like
        The lake directory (a missing directory lists as empty).
    by_symbol : bool or None
        False: day files only (default); True: per-symbol files only; None: both.
    symbol : str, optional
        Only per-symbol files of this symbol (implies ``by_symbol=True``).
    start, end : date, optional
        Only days ``start <= day <= end``.
    """
    d = Path(lake_dir)
    if not d.is_dir():
        return []
    out = []
    for entry in os.scandir(d):
        f = parse_lake_name(entry.path)
        if f is None or not entry.is_file():
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
        )


@dataclass
class LakeInfo:
    """The datapair metadata of one lake file, read from its footer only."""

    path: Path
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


def read_lake_info(path: str | os.PathLike[str]) -> LakeInfo:
    """Read a lake file's footer: stored row count, day, symbol and sources.

    Raises
    ------
    SinkError
        If the file is not a Parquet file or lacks ``datapair.rows``.
    """
    p = Path(path)
    try:
        md = pq.read_metadata(p)
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


def temp_path(final: str | os.PathLike[str]) -> Path:
    """A hidden temporary name next to ``final`` (``.NAME.<pid>.<random>.tmp``), never matched as a lake file."""
    f = Path(final)
    return f.with_name(f".{f.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def _pid_alive(pid: int) -> bool:
    """True if process ``pid`` runs (a zombie, killed but not reaped, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def remove_stale_temps(lake_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files left by killed runs (their writer process no longer exists)."""
    d = Path(lake_dir)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    for entry in os.scandir(d):
        m = _TEMP.match(entry.name)
        if m and not _pid_alive(int(m["pid"])):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
    return removed


# -- Parquet footers: a day file is assembled from parts encoded in parallel -------------------------
#
# Stripes are encoded as standalone Parquet files ("parts") by several encoders at once. A part's
# body (its column chunks, bytes [4, footer)) is appended to the day file as it is, and the day
# file's footer is the parts' footers merged: their row groups with every byte offset shifted by
# where the body landed. The footer is Thrift compact protocol; the codec below is generic (it
# keeps every field it does not know) and only the offset fields of RowGroup, ColumnChunk and
# ColumnMetaData are rewritten.

_T_STOP, _T_TRUE, _T_FALSE, _T_BYTE, _T_I16, _T_I32, _T_I64, _T_DOUBLE, _T_BINARY = range(9)
_T_LIST, _T_SET, _T_MAP, _T_STRUCT = 9, 10, 11, 12
_MAGIC = b"PAR1"

# field ids (parquet.thrift)
_FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV = 3, 4, 5
_RG_COLUMNS, _RG_FILE_OFFSET, _RG_ORDINAL = 1, 5, 7
_CC_FILE_OFFSET, _CC_META, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX = 2, 3, 4, 6
_CMD_OFFSETS = (9, 10, 11, 14)  # data page, index page, dictionary page, bloom filter


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def byte(self) -> int:
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, t: int) -> Any:
        if t in (_T_I16, _T_I32, _T_I64):
            return self.zigzag()
        if t == _T_BINARY:
            n = self.varint()
            self.pos += n
            return self.buf[self.pos - n : self.pos]
        if t == _T_STRUCT:
            return self.struct()
        if t in (_T_LIST, _T_SET):
            h = self.byte()
            size, et = h >> 4, h & 0x0F
            if size == 15:
                size = self.varint()
            return (et, [self.value(et) for _ in range(size)])
        if t in (_T_TRUE, _T_FALSE, _T_BYTE):  # a bool inside a list is one byte too
            return self.byte()
        if t == _T_DOUBLE:
            self.pos += 8
            return self.buf[self.pos - 8 : self.pos]
        if t == _T_MAP:
            size = self.varint()
            if size == 0:
                return (0, 0, [])
            kv = self.byte()
            kt, vt = kv >> 4, kv & 0x0F
            return (kt, vt, [(self.value(kt), self.value(vt)) for _ in range(size)])
        msg = f"unknown Thrift compact type {t} at byte {self.pos}"
        raise ValueError(msg)

    def struct(self) -> list[list[Any]]:
        fields: list[list[Any]] = []
        last = 0
        while True:
            h = self.byte()
            t = h & 0x0F
            if t == _T_STOP:
                return fields
            delta = h >> 4
            fid = last + delta if delta else self.zigzag()
            last = fid
            val = t == _T_TRUE if t in (_T_TRUE, _T_FALSE) else self.value(t)
            fields.append([fid, t, val])


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_value(out: bytearray, t: int, v: Any) -> None:
    if t in (_T_I16, _T_I32, _T_I64):
        _varint(out, (v << 1) ^ (v >> 63))
    elif t == _T_BINARY:
        _varint(out, len(v))
        out += v
    elif t == _T_STRUCT:
        _write_struct(out, v)
    elif t in (_T_LIST, _T_SET):
        et, items = v
        if len(items) < 15:
            out.append((len(items) << 4) | et)
        else:
            out.append(0xF0 | et)
            _varint(out, len(items))
        for item in items:
            _write_value(out, et, item)
    elif t in (_T_TRUE, _T_FALSE, _T_BYTE):
        out.append(v & 0xFF)
    elif t == _T_DOUBLE:
        out += v
    elif t == _T_MAP:
        kt, vt, items = v
        _varint(out, len(items))
        if items:
            out.append((kt << 4) | vt)
            for k, val in items:
                _write_value(out, kt, k)
                _write_value(out, vt, val)


def _write_struct(out: bytearray, fields: list[list[Any]]) -> None:
    last = 0
    for fid, t, v in fields:
        if t in (_T_TRUE, _T_FALSE):
            t = _T_TRUE if v else _T_FALSE
        delta = fid - last
        if 0 < delta <= 15:
            out.append((delta << 4) | t)
        else:
            out.append(t)
            _varint(out, (fid << 1) ^ (fid >> 63))
        last = fid
        if t not in (_T_TRUE, _T_FALSE):
            _write_value(out, t, v)
    out.append(_T_STOP)


def _field(fields: list[list[Any]], fid: int) -> list[Any] | None:
    for f in fields:
        if f[0] == fid:
            return f
    return None


def _shift_row_group(rg: list[list[Any]], delta: int, ordinal: int) -> None:
    for f in rg:
        if f[0] == _RG_FILE_OFFSET:
            f[2] += delta
        elif f[0] == _RG_ORDINAL:
            f[2] = ordinal
    cols = _field(rg, _RG_COLUMNS)
    for cc in cols[2][1] if cols is not None else []:
        for f in cc:
            if f[0] in (_CC_FILE_OFFSET, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX) and f[2]:
                f[2] += delta
            elif f[0] == _CC_META:
                for g in f[2]:
                    if g[0] in _CMD_OFFSETS:
                        g[2] += delta


def _byte_range(groups: list[Any], path: object) -> tuple[int, int]:
    """The bytes ``[lo, hi)`` that hold these (consecutive) row groups' column chunks."""
    lo, hi = None, 0
    for rg in groups:
        cols = _field(rg, _RG_COLUMNS)
        for cc in cols[2][1] if cols is not None else []:
            meta = _field(cc, _CC_META)
            if meta is None:
                msg = f"{path}: a column chunk without metadata, expected an unencrypted Parquet file"
                raise SinkError(msg)
            offs = {f[0]: f[2] for f in meta[2]}
            start = min(offs[k] for k in (9, 11) if k in offs)  # data page, dictionary page
            lo = start if lo is None else min(lo, start)
            hi = max(hi, start + offs[7])  # total_compressed_size
    if lo is None:
        return 0, 0
    return lo, hi


def read_footer(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """The raw Thrift footer of a Parquet file and the byte where it starts."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size < 12:
            msg = f"{path}: {size} bytes, too short for a Parquet file"
            raise SinkError(msg)
        fh.seek(size - 8)
        tail = fh.read(8)
        if tail[4:] != _MAGIC:
            msg = f"{path}: no Parquet magic at the end"
            raise SinkError(msg)
        n = int.from_bytes(tail[:4], "little")
        start = size - 8 - n
        fh.seek(start)
        return fh.read(n), start


class PartAssembler:
    """Builds one Parquet file from parts (Parquet files with the same schema), in order.

    ``append`` moves a part's column chunks (all of them, or a run of its row groups) into the
    output with ``os.copy_file_range``, without decoding; ``finish`` writes the merged footer with
    the given key-value metadata (replacing the parts' own, except ``ARROW:schema``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in finish/abort
        self._fh.write(_MAGIC)
        self._pos = len(_MAGIC)
        self._template: list[list[Any]] | None = None
        self._row_groups: list[Any] = []
        self.rows = 0

    @property
    def row_groups(self) -> int:
        return len(self._row_groups)

    def append(
        self, part: str | os.PathLike[str], row_groups: tuple[int, int] | None = None, delete: bool = True
    ) -> int:
        """Append ``part``'s row groups ``[first, first + count)`` (default: all); returns the rows appended.

        The part is deleted afterwards if ``delete``.
        """
        footer, footer_start = read_footer(part)
        fmd = _Reader(footer).struct()
        field = _field(fmd, _FMD_ROW_GROUPS)
        groups = field[2][1] if field is not None else []
        if row_groups is not None:
            first, count = row_groups
            if first < 0 or first + count > len(groups):
                msg = f"{part}: has {len(groups)} row groups, asked for [{first}, {first + count})"
                raise SinkError(msg)
            groups = groups[first : first + count]
        lo, hi = (len(_MAGIC), footer_start) if row_groups is None else _byte_range(groups, part)
        delta = self._pos - lo
        rows = 0
        for rg in groups:
            _shift_row_group(rg, delta, len(self._row_groups))
            self._row_groups.append(rg)
            nrows = _field(rg, 3)
            rows += nrows[2] if nrows is not None else 0
        self.rows += rows
        if self._template is None:
            self._template = fmd
        self._fh.flush()
        with open(part, "rb") as src:
            copied = 0
            while copied < hi - lo:
                n = os.copy_file_range(src.fileno(), self._fh.fileno(), hi - lo - copied, lo + copied)
                if n == 0:
                    msg = f"{part}: ended while copying its column chunks"
                    raise SinkError(msg)
                copied += n
        self._fh.seek(0, os.SEEK_END)
        self._pos += hi - lo
        if delete:
            os.unlink(part)
        return rows

    def finish(self, metadata: dict[str, str]) -> None:
        """Write the merged footer and close the file."""
        if self._template is None:
            msg = f"{self.path}: no part was appended"
            raise SinkError(msg)
        fmd = [list(f) for f in self._template if f[0] not in (_FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV)]
        kv_old = _field(self._template, _FMD_KV)
        kvs = []
        for kv in kv_old[2][1] if kv_old is not None else []:
            key = _field(kv, 1)
            if key is not None and key[2] == b"ARROW:schema":
                kvs.append(kv)
        for k, v in metadata.items():
            kvs.append([[1, _T_BINARY, k.encode()], [2, _T_BINARY, v.encode()]])
        fmd += [
            [_FMD_NUM_ROWS, _T_I64, self.rows],
            [_FMD_ROW_GROUPS, _T_LIST, (_T_STRUCT, self._row_groups)],
            [_FMD_KV, _T_LIST, (_T_STRUCT, kvs)],
        ]
        fmd.sort(key=lambda f: f[0])
        out = bytearray()
        _write_struct(out, fmd)
        self._fh.write(out)
        self._fh.write(len(out).to_bytes(4, "little") + _MAGIC)
        self._fh.close()

    def abort(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)
