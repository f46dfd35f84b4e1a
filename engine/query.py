"""``datapair-query``: query the Parquet lake with Polars (symbol and day filters, SQL, OHLCV bars).

Only the files and row groups a query needs are read (:mod:`engine.lake.scan`); the query itself
is :func:`engine.lake.query.run_query`.

Examples
--------
``python -m engine.query --dir data/parquet --symbol NVDA --date 2025-10-22 --ohlcv 1m --tz America/New_York``

``python -m engine.query --dir data/parquet --sql "SELECT action, count(*) AS n FROM df GROUP BY action"``
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence

from engine.cli import ArgumentParser, exit_now, run_cli
from engine.dbn.symbology import check_symbol
from engine.errors import QueryError
from engine.inputs import date_arg, nearest
from engine.lake.query import DEFAULT_LIMIT, FORMATS, format_frame, run_query
from engine.lake.scan import lake_symbols

__all__ = ["main", "make_parser"]


def _limit_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        msg = f"expected a row count >= 0 (0 for all), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return n


def make_parser() -> argparse.ArgumentParser:
    """The ``datapair-query`` argument parser."""
    p = ArgumentParser(
        prog="datapair-query",
        description="Query the Parquet lake (mbo_YYYY-MM-DD.parquet, mbo_SYMBOL_YYYY-MM-DD.parquet) with Polars: "
        "only the files and row groups needed are read.",
        epilog="Days are UTC dates of ts_recv (the lake's day). --end is exclusive.\n\nexamples:\n"
        "  datapair-query --dir data/parquet --symbol NVDA --date 2025-10-22 --limit 5\n"
        "  datapair-query --dir data/parquet --symbol NVDA --date 2025-10-22 --ohlcv 1m --tz America/New_York\n"
        "  datapair-query --dir data/parquet --start 2025-10-20 --end 2025-10-23 --format csv --limit 0 \\\n"
        '      --sql "SELECT action, count(*) AS n, sum(size) AS volume FROM df GROUP BY action ORDER BY n DESC"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dir", required=True, help="the lake: a directory, or an object-store URL (s3://bucket/prefix)"
    )
    p.add_argument("--symbol", help="only this symbol (e.g. NVDA; quote names with spaces)")
    days = p.add_mutually_exclusive_group()
    days.add_argument("--date", type=date_arg, help="one day, YYYY-MM-DD (UTC date of ts_recv)")
    days.add_argument("--start", type=date_arg, help="first day, YYYY-MM-DD (inclusive)")
    p.add_argument(
        "--end", type=date_arg, help="day after the last one, YYYY-MM-DD (exclusive); with --start or alone"
    )
    p.add_argument("--sql", help="SQL run on the filtered rows (or on the bars with --ohlcv) as table `df`")
    p.add_argument(
        "--ohlcv", metavar="INTERVAL", help="OHLCV bars of trades (action T): e.g. 30s, 1m, 4h, 1d"
    )
    p.add_argument("--tz", help="IANA time zone for bar alignment and shown timestamps (default UTC)")
    p.add_argument(
        "--limit", type=_limit_arg, default=DEFAULT_LIMIT, help="rows to print, 0 for all (default 20)"
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``datapair-query`` / ``python -m engine.query``: 0 ok, 1 failure, 2 usage."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.date is not None and args.end is not None:
        parser.error("--end goes with --start, not with --date")
    start, end = args.start, args.end
    if args.date is not None:
        start, end = args.date, args.date + dt.timedelta(days=1)
    return run_cli("datapair-query", lambda: _run(args, start, end))


def _run(args: argparse.Namespace, start: dt.date | None, end: dt.date | None) -> int:
    if args.symbol is not None:
        check_symbol(args.symbol, "--symbol")
    df = run_query(
        args.dir, symbol=args.symbol, start=start, end=end, sql=args.sql, interval=args.ohlcv,
        tz=args.tz, limit=args.limit,
    )  # fmt: skip
    if args.symbol is not None and (df.height == 0 or args.sql or args.ohlcv):
        known = lake_symbols(args.dir, start, end)
        if args.symbol not in known:
            near = nearest(args.symbol, sorted(known))
            hint = f"; nearest: {', '.join(near)}" if near else ""
            days = f" on days [{start or '...'}, {end or '...'})" if start or end else ""
            msg = f"no rows for symbol {args.symbol!r} in {args.dir}{days}{hint}"
            raise QueryError(msg)
    sys.stdout.write(format_frame(df, args.format))
    sys.stdout.flush()
    return 0


def run() -> None:
    """The ``datapair-query`` program: :func:`main`, then :func:`~engine.cli.exit_now`."""
    exit_now(main())


if __name__ == "__main__":
    run()
