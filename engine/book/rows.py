"""One symbol's rows of one lake day, in feed order, as the book kernels' column arrays.

The lake glue of the book (with :mod:`~engine.book.index`, :mod:`~engine.book.snapshot` and
:mod:`~engine.book.derive`): these modules read the lake and may import :mod:`engine.lake`; the
kernel modules of :mod:`engine.book` do not (see the package doc).

A symbol-day's rows come from the symbol's own file (``mbo_SYMBOL_DAY.parquet``) when the lake
has one that holds all the day file holds (its footer's sources include the day file's:
:func:`engine.lake.layout.symbol_file_covers`, the service's rule too), else from the day file
(``mbo_DAY.parquet``). Row groups are chosen by their footer
statistics (``symbol`` min/max, ``ts_recv`` min/max) and read in file order, so the rows come in
feed order (the file's order, which the lake keeps per symbol). A :class:`DaySource` carries the
file's identity (name, size, mtime, rows), which checkpoints record so a rewritten day is noticed.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.book.codes import ACTIONS, SIDES
from engine.errors import QueryError
from engine.lake.arrow import ints, symbol_mask
from engine.lake.layout import day_of_ns, lake_file_name, symbol_file_covers
from engine.lake.store import LakePath, is_remote, parquet_file, parquet_metadata, resolve

__all__ = [
    "BOOK_READ", "DERIVE_READ", "DaySource", "batch_columns", "day_of", "day_source", "iter_symbol_blocks", "read_symbol_rows",
]  # fmt: skip

BOOK_READ = (
    "ts_recv",
    "instrument_id",
    "publisher_id",
    "order_id",
    "price_raw",
    "size",
    "flags",
    "action",
    "side",
)
"""Lake columns a replay reads (besides ``symbol``)."""
DERIVE_READ = (*BOOK_READ, "ts_event", "ts_in_delta", "sequence")
"""Lake columns MBP/BBO derivation reads."""

_DTYPES = {
    "ts_recv": np.int64, "ts_event": np.int64, "instrument_id": np.int32, "publisher_id": np.int16,
    "order_id": np.int64, "price_raw": np.int64, "size": np.int32, "flags": np.int16, "action": np.int8,
    "side": np.int8, "ts_in_delta": np.int32, "sequence": np.int64,
}  # fmt: skip
_CODES = {"action": ACTIONS, "side": SIDES}
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class DaySource:
    """The lake file a symbol-day is read from, and its identity when it was looked at."""

    path: LakePath
    """A Path, or a URL in an object-store lake."""
    day: dt.date
    symbol_file: bool
    size: int
    mtime_ns: int
    rows: int

    def identity(self) -> dict[str, Any]:
        """What a checkpoint records of its source (equal identity: same file contents)."""
        name = self.path.name if isinstance(self.path, Path) else self.path.rsplit("/", 1)[-1]
        return {"name": name, "size": self.size, "mtime_ns": self.mtime_ns, "rows": self.rows}


def day_source(lake_dir: str | os.PathLike[str], symbol: str, day: dt.date) -> DaySource | None:
    """The symbol's own file of ``day`` if the lake has one that covers the day file, else the day
    file; None if neither exists."""
    if is_remote(lake_dir):
        return _remote_day_source(str(lake_dir), symbol, day)
    d = Path(lake_dir)
    if not d.is_dir():
        msg = f"lake directory {d} does not exist or is not a directory"
        raise QueryError(msg)
    found = []
    for path, own in ((d / lake_file_name(day, symbol), True), (d / lake_file_name(day), False)):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        try:
            md = pq.read_metadata(path)
        except (OSError, ValueError) as exc:
            msg = f"{path}: not a readable Parquet file ({exc})"
            raise QueryError(msg) from None
        found.append((DaySource(path, day, own, st.st_size, st.st_mtime_ns, md.num_rows), md))
    return _choose(found)


def _choose(found: list[tuple[DaySource, pq.FileMetaData]]) -> DaySource | None:
    if len(found) == 2 and not symbol_file_covers(found[0][1], found[1][1]):
        return found[1][0]  # the day file holds sources the symbol file lacks
    return found[0][0] if found else None


def _remote_day_source(url: str, symbol: str, day: dt.date) -> DaySource | None:
    """:func:`day_source` in an object-store lake (``s3://...``): one listing, then the footers."""
    where = resolve(url)
    if not where.exists():
        msg = f"the lake {url} cannot be listed (check the URL and the AWS_* variables)"
        raise QueryError(msg)
    listed = {name: (size, mtime) for name, size, mtime in where.listing()}
    found = []
    for name, own in ((lake_file_name(day, symbol), True), (lake_file_name(day), False)):
        if name in listed:
            path = where.path(name)
            md = parquet_metadata(path)
            found.append((DaySource(path, day, own, listed[name][0], listed[name][1], md.num_rows), md))
    return _choose(found)


def _text(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v)


def _groups(
    md: pq.FileMetaData, symbol: str | None, lo: int | None, hi: int | None
) -> list[tuple[int, bool]]:
    """Row groups that may hold ``symbol`` rows with ``lo <= ts_recv <= hi``, and whether all their rows are the symbol's."""
    names = md.schema.names
    sym_col = names.index("symbol") if "symbol" in names else None
    recv_col = names.index("ts_recv")
    out = []
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        if rg.num_rows == 0:
            continue
        only = symbol is None
        if symbol is not None and sym_col is not None:
            st = rg.column(sym_col).statistics
            if st is not None and st.has_min_max:
                mn, mx = _text(st.min), _text(st.max)
                if not mn <= symbol <= mx:
                    continue
                only = mn == mx == symbol
        st = rg.column(recv_col).statistics
        if (
            st is not None
            and st.has_min_max
            and ((hi is not None and st.min_raw > hi) or (lo is not None and st.max_raw < lo))
        ):
            continue
        out.append((g, only))
    return out


def _codes(col: pa.Array, name: str) -> np.ndarray:
    """A dictionary (or string) action/side column -> int8 codes of :data:`ACTIONS` / :data:`SIDES`."""
    letters = _CODES[name]
    if isinstance(col, pa.DictionaryArray):
        lut = np.array(
            [letters.index(v) if v in letters else -1 for v in col.dictionary.to_pylist()] + [-1], np.int8
        )
        idx = col.indices.fill_null(len(lut) - 1).to_numpy(zero_copy_only=False)
        return lut[idx]
    values = col.to_pylist()
    return np.array([letters.index(v) if v in letters else -1 for v in values], np.int8)


def batch_columns(
    batch: pa.RecordBatch, columns: Sequence[str] = BOOK_READ, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Lake-schema Arrow columns -> the kernels' arrays (``action``/``side`` as codes), rows ``mask`` only."""
    out = {}
    for name in columns:
        col = batch.column(name)
        arr = _codes(col, name) if name in _CODES else ints(col).astype(_DTYPES[name], copy=False)
        out[name] = arr[mask] if mask is not None else np.ascontiguousarray(arr)
    return out


def iter_symbol_blocks(
    src: DaySource,
    symbol: str,
    recv_lo: int | None = None,
    recv_hi: int | None = None,
    columns: Sequence[str] = BOOK_READ,
) -> Iterator[dict[str, np.ndarray]]:
    """The symbol's rows of ``src`` with ``recv_lo <= ts_recv <= recv_hi`` (None: unbounded), in feed order.

    Yields one dict of column arrays (:data:`_DTYPES`; ``action``/``side`` as codes) per row group
    read; empty blocks are skipped. Only row groups whose statistics allow such rows are read.
    """
    try:
        pf = parquet_file(src.path)
    except (OSError, ValueError) as exc:
        msg = f"{src.path}: not a readable Parquet file ({exc})"
        raise QueryError(msg) from None
    groups = _groups(pf.metadata, None if src.symbol_file else symbol, recv_lo, recv_hi)
    need_symbol = not src.symbol_file
    cols = list(columns) + (["symbol"] if need_symbol and "symbol" not in columns else [])
    if "ts_recv" not in cols:
        cols.append("ts_recv")
    for g, only in groups:
        table = pf.read_row_group(g, columns=cols, use_threads=False)
        for batch in table.to_batches():
            mask = None
            if need_symbol and not only:
                mask = symbol_mask(batch.column("symbol"), symbol)
            if recv_lo is not None or recv_hi is not None:
                recv = ints(batch.column("ts_recv"))
                m = np.ones(len(recv), np.bool_) if mask is None else mask
                if recv_lo is not None:
                    m = m & (recv >= recv_lo)
                if recv_hi is not None:
                    m = m & (recv <= recv_hi)
                mask = m
            if mask is not None and not mask.any():
                continue
            if mask is not None and mask.all():
                mask = None
            yield batch_columns(batch, columns, mask)


def read_symbol_rows(
    src: DaySource,
    symbol: str,
    recv_lo: int | None = None,
    recv_hi: int | None = None,
    columns: Sequence[str] = BOOK_READ,
) -> dict[str, np.ndarray]:
    """All of :func:`iter_symbol_blocks` at once (one array per column)."""
    blocks = list(iter_symbol_blocks(src, symbol, recv_lo, recv_hi, columns))
    if not blocks:
        return {name: np.empty(0, _DTYPES[name]) for name in columns}
    if len(blocks) == 1:
        return blocks[0]
    return {name: np.concatenate([b[name] for b in blocks]) for name in columns}


def day_of(ts: int) -> dt.date:
    """UTC date of a ns timestamp (the lake's day of a ts_recv)."""
    return _EPOCH + dt.timedelta(days=day_of_ns(ts))
