"""Book checkpoints beside the lake: the full book state of a symbol-day every minute of feed time.

``LAKE/_book/book_SYMBOL_YYYY-MM-DD.parquet`` (the symbol %-escaped as in lake file names) holds
one row per checkpoint, each in its own row group so a reader decodes only the one it needs:

- ``ts_recv``: the boundary ``B`` (a multiple of the interval): the state is the books after every
  row of the symbol with ``ts_recv < B``, so a snapshot at ``T >= B - 1`` continues from it by
  replaying the rows with ``B <= ts_recv <= T`` and gets exactly what a full replay gives;
- ``rows``: how many of the symbol's rows the state holds; ``last_ts_recv``: the ts_recv of the
  last of them;
- ``state``: the dense state (:func:`engine.book.checkpoint.state_to_arrays`) as one binary value:
  int64 little-endian, the lengths of the arrays of :data:`~engine.book.checkpoint.CHECKPOINT_KEYS`
  first, then the arrays one after the other (one column keeps the per-row-group cost of the
  Parquet writer low: a checkpoint a minute is a few hundred row groups a day).

A checkpoint is written only at a boundary where rows were applied since the previous one (an
idle minute adds none). The footer's key-value metadata records the interval, the format and
the identity of the lake file the rows came from (``datapair.book.source``: name, size,
mtime_ns, rows); a reader ignores a file whose source is not the lake file it would read now
(the day was rewritten: a stale checkpoint is never used), and ``datapair-book index`` rewrites
it. A symbol whose ts_recv goes backwards in feed order gets no checkpoints (snapshots then
replay the day from its start, which stays exact). Files are written under a temporary name
and renamed into place (:mod:`engine.tempfiles`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.book.book import OrderBooks
from engine.book.checkpoint import CHECKPOINT_KEYS
from engine.book.rows import BOOK_READ, DaySource, day_source, iter_symbol_blocks
from engine.errors import QueryError
from engine.lake.layout import lake_file_name, list_lake
from engine.lake.scan import lake_symbols
from engine.lake.store import is_remote
from engine.tempfiles import remove_stale_temps, replacing

__all__ = [
    "BOOK_DIR",
    "INTERVAL_NS",
    "Checkpoint",
    "IndexSummary",
    "build_checkpoints",
    "checkpoint_path",
    "index_lake",
    "load_checkpoint",
    "write_checkpoints",
]

BOOK_DIR = "_book"
INTERVAL_NS = 60_000_000_000
"""One checkpoint per minute of feed time (ts_recv)."""
INDEX_FORMAT = "1"
META_SOURCE = b"datapair.book.source"
META_INTERVAL = b"datapair.book.interval_ns"
META_FORMAT = b"datapair.book.format"
META_SYMBOL = b"datapair.book.symbol"
META_DAY = b"datapair.book.day"


def checkpoint_path(lake_dir: str | os.PathLike[str], symbol: str, day: dt.date) -> Path:
    """``LAKE/_book/book_SYMBOL_YYYY-MM-DD.parquet``."""
    return Path(lake_dir) / BOOK_DIR / ("book_" + lake_file_name(day, symbol).removeprefix("mbo_"))


@dataclass
class Checkpoint:
    """One checkpoint read back: the books after every row with ``ts_recv < boundary``."""

    boundary: int
    rows: int
    last_ts_recv: int | None
    books: OrderBooks


def build_checkpoints(
    src: DaySource, symbol: str, interval_ns: int = INTERVAL_NS, on_rows: Callable[[int], None] | None = None
) -> tuple[pa.Table | None, int]:
    """Replay the symbol-day of ``src`` and take the books at every interval boundary (see the module doc).

    Returns the checkpoint table (None if the symbol's ts_recv goes backwards: no checkpoints) and
    the rows replayed.
    ``on_rows`` is called with the rows applied so far after each block.
    """
    books = OrderBooks()
    rows: dict[str, list] = {"ts_recv": [], "rows": [], "last_ts_recv": [], "state": []}
    applied = 0
    last_taken = 0
    last_recv = -1
    boundary: int | None = None

    def take(b: int) -> None:
        nonlocal last_taken
        state = books.state_arrays()
        rows["ts_recv"].append(b)
        rows["rows"].append(applied)
        rows["last_ts_recv"].append(last_recv)
        rows["state"].append(_pack(state))
        last_taken = applied

    for block in iter_symbol_blocks(src, symbol, columns=BOOK_READ):
        recv = block["ts_recv"]
        if recv[0] < last_recv or (len(recv) > 1 and bool(np.any(recv[1:] < recv[:-1]))):
            return None, applied
        if boundary is None:
            boundary = (int(recv[0]) // interval_ns + 1) * interval_ns
        pos = 0
        n = len(recv)
        while pos < n:
            k = int(np.searchsorted(recv, boundary, side="left"))
            if k > pos:
                books.apply(block, upto=k, start=pos)
                applied += k - pos
                last_recv = int(recv[k - 1])
                pos = k
            if pos < n:  # the next row is at or after the boundary: the state is the boundary's
                if applied > last_taken:
                    take(boundary)
                boundary = (int(recv[pos]) // interval_ns + 1) * interval_ns
        if on_rows is not None:
            on_rows(applied)
    if not rows["ts_recv"]:
        return _empty_table(), applied
    return pa.table({k: pa.array(v, _SCHEMA.field(k).type) for k, v in rows.items()}, schema=_SCHEMA), applied


_SCHEMA = pa.schema(
    [
        ("ts_recv", pa.int64()),
        ("rows", pa.int64()),
        ("last_ts_recv", pa.int64()),
        ("state", pa.large_binary()),
    ]
)


def _pack(state: dict[str, np.ndarray]) -> bytes:
    """The state arrays as one int64 buffer: their lengths, then their values (see the module doc)."""
    parts = [state[k] for k in CHECKPOINT_KEYS]
    head = np.array([len(a) for a in parts], "<i8")
    return b"".join([head.tobytes(), *(np.asarray(a).astype("<i8", copy=False).tobytes() for a in parts)])


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    n = len(CHECKPOINT_KEYS)
    flat = np.frombuffer(blob, "<i8")
    lengths = flat[:n]
    if len(flat) != n + int(lengths.sum()):
        msg = "a checkpoint's state has the wrong size"
        raise ValueError(msg)
    out = {}
    pos = n
    for k, m in zip(CHECKPOINT_KEYS, lengths.tolist(), strict=True):
        out[k] = flat[pos : pos + m]
        pos += m
    return out


def _empty_table() -> pa.Table:
    return _SCHEMA.empty_table()


def write_checkpoints(
    lake_dir: str | os.PathLike[str],
    src: DaySource,
    symbol: str,
    table: pa.Table,
    interval_ns: int = INTERVAL_NS,
) -> Path:
    """Write a checkpoint table atomically (temporary name, then rename) and return its path."""
    final = checkpoint_path(lake_dir, symbol, src.day)
    final.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        META_SOURCE: json.dumps(src.identity()).encode(),
        META_INTERVAL: str(interval_ns).encode(),
        META_FORMAT: INDEX_FORMAT.encode(),
        META_SYMBOL: symbol.encode(),
        META_DAY: src.day.isoformat().encode(),
    }
    table = table.replace_schema_metadata(meta)
    with replacing(final) as tmp:
        pq.write_table(table, tmp, row_group_size=1, compression="zstd", write_statistics=["ts_recv"])
    return final


# -- reading ---------------------------------------------------------------------------------------
@dataclass
class _Index:
    stamp: tuple[int, int]
    metadata: pq.FileMetaData
    source: dict
    boundaries: np.ndarray


_CACHE: OrderedDict[Path, _Index] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 256


def _index(path: Path) -> _Index | None:
    """The footer of a checkpoint file (cached by path, size and mtime), or None if it is missing or unreadable."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    with _CACHE_LOCK:
        hit = _CACHE.get(path)
        if hit is not None and hit.stamp == stamp:
            _CACHE.move_to_end(path)
            return hit
    try:
        md = pq.read_metadata(path)
        kv = md.metadata or {}
        if kv.get(META_FORMAT) != INDEX_FORMAT.encode():
            return None
        source = json.loads(kv[META_SOURCE])
        interval = int(kv[META_INTERVAL])
    except (OSError, ValueError, KeyError):
        return None
    col = md.schema.names.index("ts_recv")
    bounds = []
    for g in range(md.num_row_groups):
        s = md.row_group(g).column(col).statistics
        if s is None or not s.has_min_max:
            return None
        bounds.append(int(s.min_raw))
    idx = _Index(stamp, md, {**source, "interval_ns": interval}, np.asarray(bounds, np.int64))
    with _CACHE_LOCK:
        _CACHE[path] = idx
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return idx


def load_checkpoint(
    lake_dir: str | os.PathLike[str], src: DaySource, symbol: str, at: int
) -> Checkpoint | None:
    """The latest checkpoint usable for a snapshot at ``at`` (boundary <= at + 1), or None.

    None also when there is no checkpoint file, or it is stale (its source is not ``src`` as it is now).
    """
    path = checkpoint_path(lake_dir, symbol, src.day)
    idx = _index(path)
    if idx is None:
        return None
    want = src.identity()
    if {k: idx.source.get(k) for k in want} != want:
        return None
    g = int(np.searchsorted(idx.boundaries, at + 1, side="right")) - 1
    if g < 0:
        return None
    try:
        t = pq.ParquetFile(path, metadata=idx.metadata).read_row_group(g, use_threads=False)
    except (OSError, ValueError):
        return None
    try:
        arrays = _unpack(t.column("state")[0].as_py())
    except ValueError:
        return None
    last = int(t.column("last_ts_recv")[0].as_py())
    return Checkpoint(
        int(t.column("ts_recv")[0].as_py()), int(t.column("rows")[0].as_py()), last if last >= 0 else None,
        OrderBooks.from_state_arrays(arrays),
    )  # fmt: skip


# -- the index command -----------------------------------------------------------------------------
@dataclass
class IndexSummary:
    """What :func:`index_lake` did: symbol-days written, rows replayed, checkpoints taken."""

    files: list[Path] = field(default_factory=list)
    rows: int = 0
    checkpoints: int = 0
    unordered: list[str] = field(default_factory=list)
    """``SYMBOL DAY`` whose ts_recv goes backwards (no checkpoints written)."""


def _day_symbols(lake_dir: Path, day: dt.date) -> list[str]:
    nxt = day + dt.timedelta(days=1)
    return sorted(lake_symbols(lake_dir, day, nxt))


def index_lake(
    lake_dir: str | os.PathLike[str],
    days: Iterable[dt.date] | None = None,
    symbols: Iterable[str] | None = None,
    interval_ns: int = INTERVAL_NS,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> IndexSummary:
    """Write the checkpoints of every symbol-day of ``days`` (default: every day of the lake).

    ``symbols`` restricts the symbols (one that has no rows on any chosen day is an error naming it).
    ``on_progress(label, rows_done, rows_total)`` follows each symbol-day.
    """
    if is_remote(lake_dir):
        msg = (
            f"checkpoints are written beside a local lake, not into {lake_dir}: "
            "snapshots of an object-store lake replay the day from its start"
        )
        raise QueryError(msg)
    d = Path(lake_dir)
    if not d.is_dir():
        msg = f"lake directory {d} does not exist or is not a directory"
        raise QueryError(msg)
    if interval_ns <= 0:
        msg = f"the checkpoint interval must be positive, got {interval_ns} ns"
        raise QueryError(msg)
    all_days = sorted({f.day for f in list_lake(d, by_symbol=None)})
    chosen = all_days if days is None else sorted(set(days))
    missing = [x.isoformat() for x in chosen if x not in all_days]
    if missing:
        msg = f"no lake files for day(s) {', '.join(missing)} in {d}"
        raise QueryError(msg)
    remove_stale_temps(d / BOOK_DIR)
    wanted = list(symbols) if symbols is not None else None
    summary = IndexSummary()
    found: set[str] = set()
    for day in chosen:
        names = _day_symbols(d, day)
        todo = names if wanted is None else [s for s in wanted if s in names]
        found.update(todo)
        for symbol in todo:
            src = day_source(d, symbol, day)
            if src is None:  # pragma: no cover - listed above
                continue
            label = f"{symbol} {day}"
            total = src.rows
            cb = (lambda n, lb=label, t=total: on_progress(lb, n, t)) if on_progress else None
            table, applied = build_checkpoints(src, symbol, interval_ns, cb)
            summary.rows += applied
            if table is None:
                summary.unordered.append(label)
                checkpoint_path(d, symbol, day).unlink(missing_ok=True)
                continue
            summary.files.append(write_checkpoints(d, src, symbol, table, interval_ns))
            summary.checkpoints += table.num_rows
    if wanted is not None:
        lost = [s for s in wanted if s not in found]
        if lost:
            msg = f"no rows for symbol(s) {', '.join(lost)} in {d} on the chosen day(s)"
            raise QueryError(msg)
    return summary
