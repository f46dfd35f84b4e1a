"""``python -m engine.inspect FILE...``: a DBN file's metadata and a decode summary.

Streams every record through the same reader and kernels as the ingest, so it doubles as a
quick check that a file is whole: per-symbol and per-action counts, unmapped instrument ids,
time range, rows/s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.cli import ArgumentParser, exit_now, run_cli
from engine.dbn.summary import inspect_file
from engine.errors import DatapairError
from engine.progress import ProgressBoard, RateClock, show_progress, summary_line

__all__ = ["FORMATS", "main", "make_parser"]

FORMATS = ("table", "json")


def make_parser() -> argparse.ArgumentParser:
    """The ``datapair-inspect`` argument parser."""
    parser = ArgumentParser(
        prog="datapair-inspect",
        description="Print a DBN MBO file's metadata and a full decode summary (every record is decoded).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  datapair-inspect data/dbn/XNAS.ITCH-2025-10-22.dbn.zst\n"
        "  python -m engine.inspect DAY.dbn.zst --format json\n"
        "exit codes: 0 ok, 1 a file could not be read, 2 bad arguments, 130 interrupted",
    )
    parser.add_argument("files", nargs="+", type=Path, help="DBN files (.dbn or .dbn.zst, v1/v2/v3)")
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="table (default) or json: one JSON object per file"
    )
    parser.add_argument("--json", action="store_true", help="same as --format json")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--block-bytes", type=int, default=None, help="decompressed bytes per block")
    return parser


def _table(info: dict) -> str:
    top = ", ".join(f"{s} {n:,}" for s, n in list(info["by_symbol"].items())[:8])
    more = len(info["by_symbol"]) - 8
    actions = ", ".join(f"{a} {n:,}" for a, n in info["by_action"].items())
    lines = [
        f"{info['file']}: DBN v{info['version']} {info['dataset']} {info['schema']}",
        f"  ts_recv {info['first_ts_recv']} .. {info['last_ts_recv']}",
        f"  symbols: {top}" + (f" and {more:,} more" if more > 0 else ""),
        f"  actions: {actions}",
    ]
    if info["unmapped_records"]:
        lines.append(f"  unmapped: {info['unmapped_records']:,} records of ids {info['unmapped_ids'][:10]}")
    lines.append(
        f"  {info['records']:,} records ({info['other_records_skipped']:,} other records skipped) in "
        f"{info['seconds']:.2f} s, {info['rows_per_s'] or 0:,} rows/s"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``datapair-inspect`` / ``python -m engine.inspect``."""
    args = make_parser().parse_args(argv)
    fmt = "json" if args.json else args.format
    return run_cli("datapair-inspect", lambda: _run(args, fmt))


def _run(args: argparse.Namespace, fmt: str) -> int:
    status = 0
    clock = RateClock()
    rows = 0
    ok = 0
    with ProgressBoard(show_progress(args.quiet)) as board:
        for i, path in enumerate(args.files):
            try:
                board.start(i, path.name, path.stat().st_size if path.is_file() else None)

                def progress(done: int, _size: int, n: int, i: int = i) -> None:
                    board.update(i, done, n)

                info = inspect_file(path, args.block_bytes, progress)
            except DatapairError as exc:
                board.finish(i, "FAILED")
                print(f"datapair-inspect: error: {exc}", file=sys.stderr)
                status = 1
                continue
            board.finish(i)
            rows += info["records"]
            ok += 1
            print(json.dumps(info) if fmt == "json" else _table(info), flush=True)
    if fmt != "json" and not args.quiet:
        failed = len(args.files) - ok
        print(
            summary_line(rows, clock.seconds, files=len(args.files), failed=failed, label="inspect"),
            file=sys.stderr,
        )
    return status


def run() -> None:
    """The ``datapair-inspect`` program: :func:`main`, then :func:`~engine.cli.exit_now`."""
    exit_now(main())


if __name__ == "__main__":
    run()
