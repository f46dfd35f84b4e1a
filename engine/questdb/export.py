"""Export QuestDB's ``mbo_ticks`` into the Parquet lake, day by day.

For each UTC day D (the lake's day: the date of ts_recv) the export asks QuestDB for ``count()``
of the day's rows, reads the rows ordered by symbol, each symbol's in feed order, by default as Arrow batches of
a QWP query (:class:`~engine.questdb.qwp_read.QwpExportClient`; 1.4-1.9x the rows/s of the
other path on a 10M-row day, see ``bench/bench_export.py``), or as Parquet from ``/exp?fmt=parquet``
through a temporary download (:class:`~engine.questdb.read.ExportClient`), and rewrites them as
the ingest does: the same file names
(:func:`engine.lake.layout.lake_file_name`), schema (:data:`engine.dbn.columns.MBO_SCHEMA`), writer settings
(:class:`engine.lake.encode.ParquetOptions`), row groups cut at symbol boundaries and footer
metadata (``datapair.rows``, ``datapair.day``, ``datapair.symbol``, ``datapair.source``). The file is
written under a hidden temporary name and renamed into place only when the rows written equal
QuestDB's count; memory stays bounded (one row group and one read batch at a time).

An existing complete lake file whose row count equals QuestDB's count is skipped (``--force``
rewrites it).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.cli import Interrupted
from engine.errors import SinkError, StoreUnavailableError
from engine.lake.layout import (
    SourceEntry,
    lake_file_name,
    lake_lock,
    lake_metadata,
    read_lake_info,
    remove_stale_temps,
    temp_path,
)
from engine.lake.options import ParquetOptions
from engine.lake.store import resolve
from engine.lake.writer import RunWriter
from engine.progress import ProgressBoard, RateClock, show_progress
from engine.questdb.qwp_read import QwpExportClient
from engine.questdb.read import (
    DEFAULT_TABLE,
    DEFAULT_URL,
    ExportClient,
    check_symbol,
    check_table,
    day_query,
)

__all__ = ["DayExport", "ExportSummary", "day_range", "export_day", "export_days"]


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


def _up_to_date(path: Path, count: int) -> bool:
    if not path.exists():
        return False
    try:
        info = read_lake_info(path)
    except SinkError:
        return False
    return info.complete and info.rows == count


def export_day(
    client: ExportClient,
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
    download = temp_path(final, "download")
    temp = temp_path(final)
    key = (day, symbol)
    if board is not None:
        board.start(key, final.name, None)
    writer: RunWriter | None = None
    progress = (lambda n: board.update(key, n)) if board is not None else None
    try:
        for attempt in range(client.stream_retries + 1):
            writer = RunWriter(temp, options)
            try:
                for batch in client.read_day(q, download, progress):
                    writer.write(batch)
                break
            except StoreUnavailableError:  # the rows broke off mid-stream: the day again, from scratch
                writer.discard()
                writer = None
                if attempt == client.stream_retries:
                    raise
        assert writer is not None
        writer.flush()
        if writer.rows != count:
            msg = (
                f"{final.name}: QuestDB's count() for {day} is {count:,} rows but its export gave {writer.rows:,} "
                f"(table {table} changing during the export?); nothing was written"
            )
            raise SinkError(msg)
        source = SourceEntry(
            f"questdb:{table}", 0, 0, rows=writer.rows, rows_by_day={day.isoformat(): writer.rows},
            row_groups=(0, writer.row_groups), filter=[symbol] if symbol is not None else None,
        )  # fmt: skip
        writer.close(lake_metadata(writer.rows, day.isoformat(), symbol, [source]))
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
    client: ExportClient | None = None,
    options: ParquetOptions | None = None,
) -> ExportSummary:
    """Export each of ``days`` (see :func:`export_day`); stops at the first failure."""
    check_table(table)
    if symbol is not None:
        check_symbol(symbol)
    if client is None:
        client = QwpExportClient(url)  # the default: faster than /exp (bench/bench_export.py)
    where = resolve(out_dir)
    if not where.local:  # an object-store lake: export into a local staging lake, publish each file whole
        with tempfile.TemporaryDirectory(prefix="datapair-export-") as staging:
            summary = export_days(
                days, staging, url=url, symbol=symbol, table=table, force=True, quiet=quiet, client=client,
                options=options,
            )  # fmt: skip
            for d in summary.written:
                where.publish(Path(d.path), Path(d.path).name)  # temporary key, copy, delete
        return summary
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    summary = ExportSummary()
    clock = RateClock()
    with ProgressBoard(show_progress(quiet)) as board:
        try:
            for day in days:
                summary.days.append(
                    export_day(
                        client,
                        out,
                        day,
                        symbol=symbol,
                        table=table,
                        force=force,
                        options=options,
                        board=board,
                    )
                )
        except KeyboardInterrupt:  # export_day removed its temporary files on the way out
            raise Interrupted(len(summary.days), len(days), "day") from None
    summary.seconds = clock.seconds
    return summary
