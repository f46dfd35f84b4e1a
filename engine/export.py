"""Export QuestDB's ``mbo_ticks`` into the Parquet lake, day by day (``datapair-export``).

For each UTC day D (the lake's day: the date of ts_recv) the export asks QuestDB for ``count()``
of the day's rows, streams the rows as Parquet (``/exp?fmt=parquet``, ordered by symbol then
ts_event) into a temporary download, and rewrites them as the ingest does: the same file names
(:func:`engine.lake.lake_file_name`), schema (:data:`engine.columns.MBO_SCHEMA`), writer settings
(:class:`engine.sinks.parquet.ParquetOptions`), row groups cut at symbol boundaries and footer
metadata (``datapair.rows``, ``datapair.day``, ``datapair.symbol``, ``datapair.source``). The file is
written under a hidden temporary name and renamed into place only when the rows written equal
QuestDB's count; memory stays bounded (one row group and one read batch at a time).

An existing complete lake file whose row count equals QuestDB's count is skipped (``--force``
rewrites it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.columns import MBO_SCHEMA
from engine.errors import DatapairError, SinkError
from engine.inputs import date_arg
from engine.lake import (
    LAYOUT,
    META_DAY,
    META_LAYOUT,
    META_ROWS,
    META_SOURCE,
    META_SYMBOL,
    lake_file_name,
    lake_lock,
    read_lake_info,
    remove_stale_temps,
    temp_path,
)
from engine.progress import ProgressBoard, RateClock, show_progress, summary_line
from engine.questdb_read import (
    DEFAULT_TABLE,
    DEFAULT_URL,
    QuestDBHttp,
    check_symbol,
    check_table,
    day_query,
    iter_mbo_batches,
)
from engine.sinks.parquet import ParquetOptions

__all__ = ["DayExport", "ExportSummary", "export_day", "export_days", "main", "make_parser"]


@dataclass
class DayExport:
    """What happened to one day: rows written (or the count found when skipped) and the file.

    ``empty``: QuestDB holds no row for the day, so no file was written (as the ingest writes
    no file for a day without rows).
    """

    day: dt.date
    path: Path
    rows: int = 0
    skipped: bool = False
    empty: bool = False


@dataclass
class ExportSummary:
    """The days an export wrote or skipped, and its totals."""

    days: list[DayExport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days if not d.skipped)

    @property
    def written(self) -> list[DayExport]:
        return [d for d in self.days if not (d.skipped or d.empty)]

    @property
    def empty(self) -> list[DayExport]:
        return [d for d in self.days if d.empty]

    @property
    def skipped(self) -> list[DayExport]:
        return [d for d in self.days if d.skipped]


class _RowGroupWriter:
    """Writes sorted (symbol, ts_event) batches as row groups cut at symbol boundaries.

    Small symbols are packed together up to ``row_group_rows``; a busy symbol's rows fill row
    groups of its own of at most ``max_row_group_rows``, as the ingest lays them out.
    """

    def __init__(self, path: Path, options: ParquetOptions) -> None:
        self.options = options
        self.writer = pq.ParquetWriter(path, MBO_SCHEMA, **options.writer_kwargs())
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_symbols: set[str] = set()
        self.pending_last = ""
        self.rows = 0
        self.row_groups = 0

    def flush(self, limit: int | None = None) -> None:
        """Write the pending rows as one row group (only the first ``limit`` rows, if given).

        Rows left over by ``limit`` are the tail of the last run (one symbol) and stay pending.
        """
        if not self.pending_rows:
            return
        table = pa.Table.from_batches(self.pending, schema=MBO_SCHEMA)
        rest = None
        if limit is not None and table.num_rows > limit:
            table, rest = table.slice(0, limit), table.slice(limit)
        self.writer.write_table(table.unify_dictionaries(), row_group_size=max(table.num_rows, 1))
        self.rows += table.num_rows
        self.row_groups += 1
        last = self.pending_last
        self.pending, self.pending_rows, self.pending_symbols = [], 0, set()
        if rest is not None and rest.num_rows:
            self.pending = rest.to_batches()
            self.pending_rows = rest.num_rows
            self.pending_symbols = {last}

    def _add_run(self, run: pa.RecordBatch, symbol: str) -> None:
        o = self.options
        if (
            self.pending_rows
            and symbol not in self.pending_symbols
            and self.pending_rows + run.num_rows > o.row_group_rows
        ):
            self.flush()
        self.pending.append(run)
        self.pending_rows += run.num_rows
        self.pending_symbols.add(symbol)
        self.pending_last = symbol
        while self.pending_rows >= o.max_row_group_rows:
            self.flush(o.max_row_group_rows)

    def write(self, batch: pa.RecordBatch) -> None:
        """Add rows; ``batch`` must continue the (symbol, ts_event) order of the previous ones."""
        if batch.num_rows == 0:
            return
        sym = batch.column(1)
        codes = sym.indices.to_numpy(zero_copy_only=False)
        cuts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        bounds = [0, *cuts.tolist(), len(codes)]
        names = sym.dictionary.to_pylist()
        for lo, hi in itertools.pairwise(bounds):
            self._add_run(batch.slice(lo, hi - lo), names[codes[lo]])

    def close(self, metadata: dict[str, str]) -> None:
        self.flush()
        self.writer.add_key_value_metadata(metadata)
        self.writer.close()

    def discard(self) -> None:
        with contextlib.suppress(Exception):  # the file is thrown away
            self.writer.close()


def _up_to_date(path: Path, count: int) -> bool:
    if not path.exists():
        return False
    try:
        info = read_lake_info(path)
    except SinkError:
        return False
    return info.complete and info.rows == count


def export_day(
    client: QuestDBHttp,
    out_dir: str | os.PathLike[str],
    day: dt.date,
    *,
    symbol: str | None = None,
    table: str = DEFAULT_TABLE,
    force: bool = False,
    options: ParquetOptions | None = None,
    board: ProgressBoard | None = None,
) -> DayExport:
    """Export one lake day (optionally one symbol) of ``table`` into ``out_dir``.

    Raises
    ------
    SinkError
        If the rows written differ from QuestDB's ``count()`` (nothing is left under the final name).
    QueryError, StoreUnavailableError
        If QuestDB rejects the query or cannot be reached.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = options or ParquetOptions()
    q = day_query(table, day, symbol)
    final = out / lake_file_name(day, symbol)
    count = client.count(q.count_sql)
    if count == 0:
        return DayExport(day, final, 0, empty=True)
    if not force and _up_to_date(final, count):
        return DayExport(day, final, count, skipped=True)
    download = temp_path(final.with_name(final.name + ".download"))
    temp = temp_path(final)
    key = (day, symbol)
    if board is not None:
        board.start(key, final.name, None)
    writer: _RowGroupWriter | None = None
    try:
        client.export_parquet(
            q.select_sql, download, progress=(lambda n: board.update(key, n)) if board is not None else None
        )
        writer = _RowGroupWriter(temp, options)
        for batch in iter_mbo_batches(download):
            writer.write(batch)
        download.unlink(missing_ok=True)
        writer.flush()
        if writer.rows != count:
            msg = (
                f"{final.name}: QuestDB's count() for {day} is {count:,} rows but its export gave {writer.rows:,} "
                f"(table {table} changing during the export?); nothing was written"
            )
            raise SinkError(msg)
        source = {
            "name": f"questdb:{table}", "size": 0, "mtime_ns": 0, "rows": writer.rows,
            "rows_by_day": {day.isoformat(): writer.rows}, "row_groups": [0, writer.row_groups],
            "filter": [symbol] if symbol is not None else None,
        }  # fmt: skip
        meta = {
            META_ROWS: str(writer.rows),
            META_DAY: day.isoformat(),
            META_LAYOUT: LAYOUT,
            META_SOURCE: json.dumps([source], separators=(",", ":")),
        }
        if symbol is not None:
            meta[META_SYMBOL] = symbol
        writer.close(meta)
        writer = None
        with lake_lock(out):
            os.replace(temp, final)
    except BaseException:
        if writer is not None:
            writer.discard()
        temp.unlink(missing_ok=True)
        download.unlink(missing_ok=True)
        if board is not None:
            board.finish(key, "FAILED")
        raise
    if board is not None:
        board.finish(key, f"{count:,} rows")
    return DayExport(day, final, count)


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """The days ``start <= day < end``."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def export_days(
    days: Sequence[dt.date],
    out_dir: str | os.PathLike[str],
    *,
    url: str = DEFAULT_URL,
    symbol: str | None = None,
    table: str = DEFAULT_TABLE,
    force: bool = False,
    quiet: bool = True,
    client: QuestDBHttp | None = None,
    options: ParquetOptions | None = None,
) -> ExportSummary:
    """Export each of ``days`` (see :func:`export_day`); stops at the first failure."""
    check_table(table)
    if symbol is not None:
        check_symbol(symbol)
    client = client or QuestDBHttp(url)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    summary = ExportSummary()
    clock = RateClock()
    with ProgressBoard(show_progress(quiet)) as board:
        for day in days:
            summary.days.append(
                export_day(
                    client, out, day, symbol=symbol, table=table, force=force, options=options, board=board
                )
            )
    summary.seconds = clock.seconds
    return summary


def make_parser() -> argparse.ArgumentParser:
    """The ``datapair-export`` argument parser."""
    p = argparse.ArgumentParser(
        prog="datapair-export",
        description="Export QuestDB's mbo_ticks into the Parquet lake, one UTC day (of ts_recv) at a time, "
        "verified against count() and written atomically.",
        epilog="--end is exclusive: --start 2025-10-20 --end 2025-10-22 exports the 20th and the 21st.\n"
        "Env: QUESTDB_URL (default http://localhost:9000).\n\nexamples:\n"
        "  datapair-export --date 2025-10-22 --output data/parquet\n"
        "  datapair-export --start 2025-10-20 --end 2025-10-23 --symbol NVDA --output data/parquet --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    days = p.add_mutually_exclusive_group(required=True)
    days.add_argument("--date", type=date_arg, help="one day, YYYY-MM-DD")
    days.add_argument("--start", type=date_arg, help="first day, YYYY-MM-DD (inclusive; needs --end)")
    p.add_argument("--end", type=date_arg, help="day after the last one, YYYY-MM-DD (exclusive)")
    p.add_argument("--symbol", help="export one symbol into mbo_SYMBOL_YYYY-MM-DD.parquet")
    p.add_argument("--output", required=True, type=Path, help="the lake directory (created if missing)")
    p.add_argument(
        "--url",
        default=os.environ.get("QUESTDB_URL", DEFAULT_URL),
        help="QuestDB HTTP URL (credentials allowed), host:port or client conf string (env QUESTDB_URL)",
    )
    p.add_argument("--table", default=DEFAULT_TABLE, help="the QuestDB table (default mbo_ticks)")
    p.add_argument("--force", action="store_true", help="rewrite days whose lake file is already complete")
    p.add_argument(
        "--retries", type=int, default=3, help="retries after a transient HTTP failure (default 3)"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for QuestDB's answer (default 60)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``datapair-export`` / ``python -m engine.export``: 0 ok, 1 failure, 2 usage."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.date is not None:
        if args.end is not None:
            parser.error("--end goes with --start, not with --date")
        days = [args.date]
    else:
        if args.end is None:
            parser.error("--start needs --end (exclusive)")
        if args.end <= args.start:
            parser.error(f"--end {args.end} must be after --start {args.start} (--end is exclusive)")
        days = day_range(args.start, args.end)
    try:
        client = QuestDBHttp(args.url, timeout=args.timeout, retries=args.retries)
        summary = export_days(
            days,
            args.output,
            symbol=args.symbol,
            table=args.table,
            force=args.force,
            quiet=args.quiet,
            client=client,
        )
    except DatapairError as exc:
        print(f"datapair-export: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("datapair-export: interrupted; no partial file was left", file=sys.stderr)
        return 130
    skipped = len(summary.skipped)
    for d in summary.empty:
        print(
            f"export: no rows in QuestDB for {d.day}{f' and {args.symbol}' if args.symbol else ''}: no file written",
            file=sys.stderr,
        )
    line = summary_line(
        summary.rows, summary.seconds, files=len(summary.written), skipped=skipped, failed=0, label="export"
    )
    print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
