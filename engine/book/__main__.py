"""``datapair-book``: the order book from the lake (``python -m engine.book``).

- ``snapshot``: the book of a symbol at any nanosecond (:func:`engine.book.snapshot.book_snapshot`);
- ``derive``: MBP-1/MBP-10/BBO-1s/BBO-1m series of a day as Parquet (:mod:`engine.book.derive`);
- ``index``: the minute checkpoints that make snapshots fast (:mod:`engine.book.index`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.cli import ArgumentParser, exit_now, run_cli
from engine.dbn.symbology import check_symbol
from engine.errors import QueryError
from engine.inputs import date_arg, parse_symbols
from engine.progress import ProgressBoard, RateClock, show_progress, summary_line
from engine.timeparse import ACCEPTED_FORMS, format_ns, parse_timestamp

__all__ = ["main", "make_parser"]

PROG = "datapair-book"
EXAMPLES = f"""examples:
  {PROG} snapshot --dir data/parquet --symbol NVDA --at "2025-10-22 14:30:00"
  {PROG} snapshot --dir data/parquet --symbol NVDA --at 1761143400000000000 --depth 5 --orders --format json
  {PROG} derive --dir data/parquet --schema mbp-10 --date 2025-10-22 --symbols NVDA,AAPL --output data/mbp
  {PROG} index --dir data/parquet --date 2025-10-22
"""


def _int_arg(lo: int, hi: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = lo - 1
        if not lo <= v <= hi:
            msg = f"expected {what} from {lo} to {hi}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return v

    return parse


def _at_arg(tz: str | None = None) -> Any:
    def parse(text: str) -> int:
        try:
            return parse_timestamp(text, field="--at", tz=tz, text_ok=True)
        except QueryError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def make_parser() -> argparse.ArgumentParser:
    """The ``datapair-book`` argument parser (sub-commands snapshot, derive, index)."""
    p = ArgumentParser(
        prog=PROG,
        description="The order book rebuilt from the lake's MBO rows: the book at any instant, MBP/BBO series, checkpoints.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{snapshot,derive,index}")

    s = sub.add_parser("snapshot", help="the book of a symbol after every record with ts_recv <= --at",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    s.add_argument("--dir", required=True, type=Path, help="the lake directory")
    s.add_argument("--symbol", required=True, help="the symbol, e.g. NVDA")
    s.add_argument(
        "--at", required=True, help=f"the instant: ns since 1970 UTC or date-time text ({ACCEPTED_FORMS})"
    )
    s.add_argument("--tz", help="IANA zone for naive --at text (default UTC)")
    s.add_argument(
        "--depth", type=_int_arg(1, 1000, "a depth"), default=10, help="levels per side (default 10)"
    )
    s.add_argument(
        "--publisher",
        type=_int_arg(0, 65535, "a publisher_id"),
        help="one venue's book (default: all venues merged by price)",
    )
    s.add_argument("--orders", action="store_true", help="list each level's orders in queue order")
    s.add_argument("--format", choices=("table", "json"), default="table", help="output (default table)")
    s.add_argument(
        "--no-checkpoints", action="store_true", help="replay the day from its start (for comparison)"
    )

    d = sub.add_parser("derive", help="MBP-1/MBP-10/BBO-1s/BBO-1m Parquet series of a day",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    d.add_argument("--dir", required=True, type=Path, help="the lake directory")
    d.add_argument(
        "--schema", required=True, choices=("mbp-1", "mbp-10", "bbo-1s", "bbo-1m"), help="the series"
    )
    d.add_argument("--date", required=True, type=date_arg, help="the day, YYYY-MM-DD (UTC date of ts_recv)")
    d.add_argument("--symbols", help="comma-separated symbols (default: every symbol of the day)")
    d.add_argument("--output", required=True, type=Path, help="directory of SCHEMA_YYYY-MM-DD.parquet")
    d.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    i = sub.add_parser("index", help="write the book checkpoints (one a minute per symbol-day) beside the lake",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    i.add_argument("--dir", required=True, type=Path, help="the lake directory (checkpoints go to DIR/_book)")
    i.add_argument("--date", type=date_arg, help="one day, YYYY-MM-DD (default: every day of the lake)")
    i.add_argument("--symbols", help="comma-separated symbols (default: every symbol)")
    i.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``datapair-book`` / ``python -m engine.book``: 0 ok, 1 failure, 2 usage."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        try:
            check_symbol(args.symbol, "--symbol")
            args.at = _at_arg(args.tz)(args.at)
        except (QueryError, argparse.ArgumentTypeError) as exc:
            parser.error(f"argument --{'symbol' if isinstance(exc, QueryError) else 'at'}: {exc}")
        return run_cli(PROG, lambda: _snapshot(args))
    if args.symbols is not None:
        try:
            args.symbols = parse_symbols(args.symbols)
        except (QueryError, ValueError) as exc:
            parser.error(f"argument --symbols: {exc}")
    return run_cli(PROG, lambda: _derive(args) if args.command == "derive" else _index(args))


def _level_text(level: dict[str, Any] | None) -> tuple[str, str, str]:
    if level is None:
        return "", "", ""
    return str(level["count"]), f"{level['size']:,}", f"{level['price']:.9g}"


def format_table(book: dict[str, Any]) -> str:
    """The book as a ladder: bids on the left, asks on the right, best first."""
    last = format_ns(book["ts_recv"]) if book["ts_recv"] is not None else "none"
    lines = [f"{book['symbol']} at {format_ns(book['at'])} ({book['at']}); last record {last}"]
    lines.append(f"{'count':>7} {'bid size':>12} {'bid':>14} | {'ask':<14} {'ask size':>12} {'count':>7}")
    bids, asks = book["bids"], book["asks"]
    for k in range(max(len(bids), len(asks))):
        bc, bs, bp = _level_text(bids[k] if k < len(bids) else None)
        ac, as_, ap = _level_text(asks[k] if k < len(asks) else None)
        lines.append(f"{bc:>7} {bs:>12} {bp:>14} | {ap:<14} {as_:>12} {ac:>7}")
        for side, lv in (
            ("bid", bids[k] if k < len(bids) else None),
            ("ask", asks[k] if k < len(asks) else None),
        ):
            if lv is not None and "orders" in lv:
                queue = ", ".join(f"{o['order_id']}x{o['size']}" for o in lv["orders"])
                lines.append(f"    {side} {lv['price']:.9g} orders: {queue}")
    if not bids and not asks:
        lines.append("(empty book)")
    return "\n".join(lines) + "\n"


def _snapshot(args: argparse.Namespace) -> int:
    from engine.book.snapshot import book_snapshot

    book = book_snapshot(
        args.dir, args.symbol, args.at, args.depth, args.publisher, args.orders,
        checkpoints=not args.no_checkpoints,
    )  # fmt: skip
    sys.stdout.write(json.dumps(book) + "\n" if args.format == "json" else format_table(book))
    sys.stdout.flush()
    return 0


def _derive(args: argparse.Namespace) -> int:
    from engine.book.derive import derive_day

    clock = RateClock()
    with ProgressBoard(show_progress(args.quiet), unit="rows") as board:

        def progress(symbol: str, done: int) -> None:
            board.start(symbol, symbol, None)
            board.update(symbol, done, done)

        s = derive_day(args.dir, args.schema, args.date, args.output, args.symbols, progress)
    print(f"{s.path}: {s.rows_out:,} {args.schema} rows of {s.symbols} symbol(s)")
    print(summary_line(s.rows_in, clock.seconds, label="derive"))
    return 0


def _index(args: argparse.Namespace) -> int:
    from engine.book.index import index_lake

    clock = RateClock()
    with ProgressBoard(show_progress(args.quiet), unit="rows") as board:

        def progress(label: str, done: int, total: int) -> None:
            board.start(label, label, None)
            board.update(label, done, done)

        s = index_lake(
            args.dir, None if args.date is None else [args.date], args.symbols, on_progress=progress
        )
    for label in s.unordered:
        print(
            f"{PROG}: {label}: ts_recv goes backwards in feed order, no checkpoints (snapshots replay the day)",
            file=sys.stderr,
        )
    print(f"{len(s.files)} symbol-day(s), {s.checkpoints:,} checkpoints in {Path(args.dir) / '_book'}")
    print(summary_line(s.rows, clock.seconds, label="index"))
    return 0


def run() -> None:
    """The ``datapair-book`` program: :func:`main`, then :func:`~engine.cli.exit_now`."""
    exit_now(main())


if __name__ == "__main__":
    run()
