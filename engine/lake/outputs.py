"""The files a lake sink writes, and how they are committed beside other sources' rows.

A :class:`DayFile` is assembled from encoded parts, in stripe order (:class:`~engine.lake.footer.PartAssembler`);
a :class:`SymbolFile` (``--by-symbol``) is written by one ParquetWriter. :func:`commit_output`
finishes either under its temporary name and renames it into place; when the final file already
holds rows of other source files, their row groups are copied (not decoded) into the new file
first (:func:`merge_sources`), so a day file always holds every row of its day.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine.dbn.columns import COLUMNS, MBO_SCHEMA
from engine.errors import SinkError
from engine.lake.footer import PartAssembler
from engine.lake.layout import SourceEntry, lake_metadata, read_lake_info, temp_path
from engine.lake.options import ParquetOptions

__all__ = ["DayFile", "SymbolFile", "commit_output", "merge_sources"]


def merge_sources(
    merged: PartAssembler, parts: list[tuple[Path, SourceEntry]], day: str, symbol: str | None, what: object
) -> None:
    """Append each source's row groups (copied, not decoded) from its file into ``merged``, check
    each source's rows against its footer entry, and finish ``merged`` with the merged metadata."""
    entries = []
    for path, entry in parts:
        first = merged.row_groups
        n = merged.append(path, entry.row_groups, delete=False)
        if n != entry.rows:
            msg = (
                f"{what}: source {entry.name} has {n} rows in its row groups, its metadata says {entry.rows}"
            )
            raise SinkError(msg)
        entries.append(replace(entry, row_groups=(first, entry.row_groups[1])))
    merged.finish(lake_metadata(merged.rows, day, symbol, entries))


class SymbolFile:
    """A per-symbol file written directly by one ParquetWriter."""

    def __init__(self, final: Path, day: str, symbol: str, options: ParquetOptions) -> None:
        self.final = final
        self.day = day
        self.symbol: str | None = symbol
        self.temp = temp_path(final)
        self.writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self.temp, MBO_SCHEMA, **options.writer_kwargs()
        )
        self.rows = 0
        self.row_groups = 0

    def write(self, batch: pa.RecordBatch) -> None:
        assert self.writer is not None
        self.writer.write_batch(batch, row_group_size=max(batch.num_rows, 1))
        self.rows += batch.num_rows
        self.row_groups += 1

    def finish(self, metadata: dict[str, str]) -> None:
        assert self.writer is not None
        self.writer.add_key_value_metadata(metadata)
        self.writer.close()
        self.writer = None

    def discard(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):  # the file is being thrown away anyway
                self.writer.close()
            self.writer = None
        self.temp.unlink(missing_ok=True)


def _other_sources(final: Path, source: SourceEntry, replace_damaged: bool = False) -> list[SourceEntry]:
    """Sources of the rows already in ``final`` that this source does not replace.

    A final file that cannot be read, or whose footer says it is incomplete, would lose those
    rows silently if it were replaced: that is refused unless ``replace_damaged`` (``--force``,
    when the caller re-ingests every source of the day).
    """
    if not final.exists():
        return []
    try:
        info = read_lake_info(final)
        problem = (
            None if info.complete else f"its footer says {info.rows:,} rows but it holds {info.num_rows:,}"
        )
    except SinkError as exc:
        info, problem = None, str(exc)
    if problem is not None or info is None:
        if replace_damaged:
            return []
        msg = (
            f"{final} exists but is not a complete lake file ({problem}), so the rows of its other "
            f"sources cannot be kept; re-ingest every source file of that day with --force, or move it away"
        )
        raise SinkError(msg)
    return [s for s in info.sources if not source.replaces(s) and s.row_groups[1] > 0]


def commit_output(out: DayFile | SymbolFile, source: SourceEntry, replace_damaged: bool = False) -> Path:
    """Finish a temporary lake file and move it into place (the caller holds the lake lock).

    Rows of other sources already in the final file are copied first: their row groups' bytes,
    as they are (no decoding), into a new file with a merged footer.
    """
    mine = replace(source, rows=out.rows, row_groups=(0, out.row_groups))
    others = _other_sources(out.final, source, replace_damaged)
    if not others:
        out.finish(lake_metadata(out.rows, out.day, out.symbol, [mine]))
        os.replace(out.temp, out.final)
        return out.final
    out.finish({})
    merged = PartAssembler(temp_path(out.final))
    try:
        merge_sources(
            merged, [(out.final, s) for s in others] + [(out.temp, mine)], out.day, out.symbol, out.final
        )
        os.replace(merged.path, out.final)
    except BaseException:
        merged.abort()
        raise
    finally:
        out.temp.unlink(missing_ok=True)
    return out.final


_SYMBOL_COLUMN = COLUMNS.index("symbol")


class DayFile:
    """A day file being assembled from parts, in stripe order."""

    def __init__(self, final: Path, day: str) -> None:
        self.final = final
        self.day = day
        self.symbol: str | None = None
        self.temp = temp_path(final)
        self.assembler: PartAssembler | None = None
        self.order: deque[int] = deque()  # seqs of submitted stripes, in order
        self.rows = 0
        self.row_groups = 0

    def append_ready(self, done: dict[int, tuple[str, list[tuple[bytes, bytes]]]]) -> None:
        while self.order and self.order[0] in done:
            part, symbols = done.pop(self.order.popleft())
            if self.assembler is None:
                self.assembler = PartAssembler(self.temp)
            self.assembler.append(part, statistics={_SYMBOL_COLUMN: symbols})
            self.rows = self.assembler.rows
            self.row_groups = self.assembler.row_groups

    def finish(self, metadata: dict[str, str]) -> None:
        assert self.assembler is not None
        self.assembler.finish(metadata)
        self.assembler = None

    def discard(self) -> None:
        if self.assembler is not None:
            self.assembler.abort()
            self.assembler = None
        self.temp.unlink(missing_ok=True)
