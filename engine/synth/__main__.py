"""``datapair-synth`` / ``python -m engine.synth``: write a realistic synthetic MBO day (see :mod:`engine.synth.day`)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

import zstandard

from engine.cli import ArgumentParser, exit_now, run_cli
from engine.errors import ConfigError
from engine.inputs import date_arg
from engine.progress import ProgressBoard, show_progress
from engine.synth.day import DEFAULT_BLOCK_RECORDS, DEFAULT_DATE, DEFAULT_SYMBOLS, write_day

__all__ = ["main", "make_parser"]


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        msg = f"not an integer: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value <= 0:
        msg = f"must be > 0, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _symbol_list(text: str) -> list[str]:
    syms = [s.strip() for s in text.split(",") if s.strip()]
    if not syms:
        msg = f"no symbols in {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return syms


def make_parser() -> argparse.ArgumentParser:
    """The ``datapair-synth`` / ``python -m engine.synth`` argument parser."""
    parser = ArgumentParser(
        prog="datapair-synth",
        description="Write a realistic synthetic XNAS.ITCH MBO day (DBN v3 with symbology), "
        "deterministic for a seed. Zstd-compressed when OUT ends with .zst.",
        epilog="examples:\n"
        "  python -m engine.synth day.dbn.zst --records 2000000 --seed 7\n"
        "  python -m engine.synth day.dbn.zst --records 10_000_000 --symbols NVDA,AAPL,MSFT "
        "--date 2025-10-22\n"
        "  python -m engine.synth plain.dbn --records 1000 --quiet\n"
        "exit codes: 0 ok, 1 failure (e.g. cannot write OUT), 2 bad arguments, 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # fmt: off
    add = parser.add_argument
    add("out", metavar="OUT", help="output file (.dbn.zst for zstd, .dbn for plain)")
    add("--records", "-n", type=_positive_int, default=1_000_000,
        help="records in the day, one R per symbol included (default: %(default)s)")
    add("--symbols", type=_symbol_list, default=list(DEFAULT_SYMBOLS), help="comma-separated raw symbols; "
        f"NVDA (else the first) is the busiest (default: {','.join(DEFAULT_SYMBOLS)})")
    add("--date", type=date_arg, default=dt.date.fromisoformat(DEFAULT_DATE),
        help="trading day YYYY-MM-DD; session 04:00-20:00 New York (default: %(default)s)")
    add("--seed", type=int, default=0, help="non-negative seed: same seed, same bytes (default: 0)")
    add("--level", type=int, default=3, help="zstd compression level (default: 3)")
    add("--threads", type=int, default=1, help="zstd worker threads; 0 compresses in the generating thread, "
        "any value >= 1 gives the same bytes (default: 1)")
    add("--block-records", type=_positive_int, default=DEFAULT_BLOCK_RECORDS,
        help="records generated per block, bounds memory (default: %(default)s)")
    add("--allow-weekend", action="store_true", help="generate a Saturday or Sunday too "
        "(refused by default: XNAS has no session then)")
    add("--quiet", "-q", action="store_true", help="no progress bar and no summary line on success")
    # fmt: on
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return 0 on success, 1 on failure, 2 on bad arguments."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return exc.code if isinstance(exc.code, int) else 2
    if args.date.weekday() >= 5 and not args.allow_weekend:
        day = args.date.strftime("%A")
        print(f"{parser.prog}: error: {args.date} is a {day}: no XNAS session; pass --allow-weekend to "
              "generate it anyway", file=sys.stderr)  # fmt: skip
        return 2
    return run_cli(parser.prog, lambda: _run(args, parser.prog))


def _run(args: argparse.Namespace, prog: str) -> int:
    board = ProgressBoard(show_progress(args.quiet), unit="rec")
    try:
        with board:
            board.start(0, Path(args.out).name, args.records)
            summary = write_day(
                args.out, args.records, args.symbols, args.date, args.seed,
                level=args.level, threads=args.threads, block_records=args.block_records,
                progress=lambda n: board.update(0, n, n),
            )  # fmt: skip
            board.finish(0)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: failed: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except zstandard.ZstdError as exc:
        print(f"{prog}: failed: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(
            f"{summary.path}: {summary.records:,} records, {summary.bytes_written / 2**20:.1f} MiB "
            f"in {summary.seconds:.2f} s ({summary.records_per_s / 1e6:.2f}M records/s)"
        )
    return 0


def run() -> None:
    """The ``datapair-synth`` program: :func:`main`, then :func:`~engine.cli.exit_now`."""
    exit_now(main())


if __name__ == "__main__":
    run()
