"""``datapair-export``: QuestDB's ``mbo_ticks`` -> the Parquet lake, one UTC day at a time.

The work is :func:`engine.questdb.export.export_days`: verified against ``count()``, written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from engine.cli import ArgumentParser, exit_now, run_cli
from engine.inputs import date_arg
from engine.progress import summary_line
from engine.questdb.export import day_range, export_days
from engine.questdb.qwp_read import QwpExportClient
from engine.questdb.read import DEFAULT_TABLE, DEFAULT_URL, ExportClient

__all__ = ["main", "make_parser"]


def make_parser() -> argparse.ArgumentParser:
    """The ``datapair-export`` argument parser."""
    p = ArgumentParser(
        prog="datapair-export",
        description="Export QuestDB's mbo_ticks into the Parquet lake, one UTC day (of ts_recv) at a time, "
        "verified against count() and written atomically.",
        epilog="--end is exclusive: --start 2025-10-20 --end 2025-10-22 exports the 20th and the 21st.\n"
        "Env: QUESTDB_URL (default http://localhost:9000).\n\nexamples:\n"
        "  datapair-export --date 2025-10-22 --output data/parquet\n"
        "  datapair-export --start 2025-10-20 --end 2025-10-23 --symbol NVDA --output data/parquet --force\n"
        "  datapair-export --date 2025-10-22 --output data/parquet --via exp   # through /exp?fmt=parquet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    days = p.add_mutually_exclusive_group(required=True)
    days.add_argument("--date", type=date_arg, help="one day, YYYY-MM-DD")
    days.add_argument("--start", type=date_arg, help="first day, YYYY-MM-DD (inclusive; needs --end)")
    p.add_argument("--end", type=date_arg, help="day after the last one, YYYY-MM-DD (exclusive)")
    p.add_argument("--symbol", help="export one symbol into mbo_SYMBOL_YYYY-MM-DD.parquet")
    p.add_argument(
        "--output",
        required=True,
        help="the lake directory (created if missing) or object-store URL (s3://bucket/prefix)",
    )
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
    p.add_argument(
        "--via",
        choices=("qwp", "exp"),
        default="qwp",
        help="how rows travel: qwp (a QWP query, Arrow batches; the default, faster) or exp "
        "(/exp?fmt=parquet through a temporary file)",
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

    def run() -> int:
        cls = QwpExportClient if args.via == "qwp" else ExportClient
        client = cls(args.url, timeout=args.timeout, retries=args.retries)
        summary = export_days(
            days, args.output, symbol=args.symbol, table=args.table, force=args.force, quiet=args.quiet,
            client=client,
        )  # fmt: skip
        for d in summary.empty:
            which = f" and {args.symbol}" if args.symbol else ""
            print(f"datapair-export: no rows in QuestDB for {d.day}{which}: no file written", file=sys.stderr)
        line = summary_line(
            summary.rows, summary.seconds, files=len(summary.written), skipped=len(summary.skipped), failed=0,
            label="export",
        )  # fmt: skip
        print(line, file=sys.stderr)
        return 0

    return run_cli("datapair-export", run)


def run() -> None:
    """The ``datapair-export`` program: :func:`main`, then :func:`~engine.cli.exit_now`."""
    exit_now(main())


if __name__ == "__main__":
    run()
