"""Lake queries as ``datapair-query`` runs them: filters, OHLCV bars, SQL on ``df``, text output."""

from __future__ import annotations

import datetime as dt
import os

import polars as pl

from engine.dbn.columns import polars_unsigned
from engine.errors import QueryError
from engine.lake.ohlcv import ohlcv, parse_interval, parse_tz
from engine.lake.scan import scan_lake

__all__ = ["DEFAULT_LIMIT", "FORMATS", "format_frame", "polars_problem", "run_query"]

FORMATS = ("table", "csv", "json")
DEFAULT_LIMIT = 20


def run_query(
    lake_dir: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    sql: str | None = None,
    interval: str | None = None,
    tz: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> pl.DataFrame:
    """Run a lake query as the CLI does and return the result.

    Filters (symbol, days) come first; then OHLCV bars if ``interval`` is given; then ``sql``
    runs on the result as table ``df``; then at most ``limit`` rows are kept (0: all). With
    ``tz``, bars align to that zone's calendar and timestamps are shown in it.

    Raises
    ------
    QueryError
        For a bad interval or zone, bad SQL (with Polars' own message), or unreadable files.
    """
    if limit < 0:
        msg = f"limit must be >= 0 (0 means all rows), got {limit}"
        raise QueryError(msg)
    if interval is not None:
        parse_interval(interval)
    zone = parse_tz(tz)
    lf = scan_lake(lake_dir, symbol=symbol, start=start, end=end)
    lf = lf.with_columns(polars_unsigned(lf.collect_schema().names()))  # DBN's unsigned types (README)
    if interval is not None:
        lf = ohlcv(lf, interval, zone)
    elif zone is not None:
        lf = lf.with_columns(pl.col("ts_event", "ts_recv").dt.convert_time_zone(zone))
    try:
        if sql is not None:
            lf = pl.SQLContext(df=lf).execute(sql)
        if limit:
            lf = lf.head(limit)
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        what = "SQL query failed" if sql is not None else "query failed"
        msg = f"{what}: {polars_problem(exc)}"
        raise QueryError(msg) from None


def polars_problem(exc: Exception) -> str:
    """Polars' error as one line: its first line, named by kind, without the plan it prints after.

    ``unable to find column "foo"; valid columns: [...]`` becomes ``unknown column "foo" (the
    columns are ...)``; a parser error stays the parser's sentence.
    """
    first = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
    if isinstance(exc, pl.exceptions.ColumnNotFoundError) or first.startswith("unable to find column"):
        name, _, rest = first.removeprefix("unable to find column ").partition(";")
        cols = rest.split(":", 1)[1].strip() if ":" in rest else ""
        cols = cols.strip("[]").replace('"', "")
        return f"unknown column {name.strip()}" + (f" (the columns are {cols})" if cols else "")
    if isinstance(exc, pl.exceptions.SQLSyntaxError) or "sql parser error" in first:
        return "syntax error: " + first.removeprefix("sql parser error: ")
    if first.startswith("relation ") and "not found" in first:
        return first + " (the table is named df)"
    return first


def format_frame(df: pl.DataFrame, fmt: str = "table") -> str:
    """``df`` as text: an aligned ``table``, ``csv`` (header row) or ``json`` (array of objects).

    Timestamps are ISO 8601 with nanoseconds and offset in CSV and JSON; JSON writes NaN as null.
    """
    cats = [n for n, t in df.schema.items() if isinstance(t, pl.Categorical | pl.Enum)]
    if cats:
        df = df.with_columns(pl.col(cats).cast(pl.String))
    if fmt == "csv":
        return df.write_csv()
    if fmt == "json":
        return df.write_json() + "\n"
    if fmt == "table":
        with pl.Config(tbl_rows=max(df.height, 1), tbl_cols=-1, tbl_width_chars=1_000, fmt_str_lengths=80):
            return f"{df}\n"
    msg = f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}"
    raise QueryError(msg)
