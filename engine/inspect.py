"""``python -m engine.inspect FILE...``: a DBN file's metadata and a decode summary.

Streams every record through the same reader and kernels as the ingest, so it doubles as a
quick check that a file is whole: per-symbol and per-action counts, unmapped instrument ids,
time range, rows/s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.dbn.summary import inspect_file
from engine.errors import DatapairError

__all__ = ["main", "make_parser"]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine.inspect",
        description="Print a DBN MBO file's metadata and a full decode summary.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m engine.inspect data/dbn/XNAS.ITCH-2025-10-22.dbn.zst\n"
        "  python -m engine.inspect DAY.dbn.zst --json",
    )
    parser.add_argument("files", nargs="+", type=Path, help="DBN files (.dbn or .dbn.zst, v1/v2/v3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    parser.add_argument("--block-bytes", type=int, default=None, help="decompressed bytes per block")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    status = 0
    for path in args.files:
        try:
            info = inspect_file(path, args.block_bytes)
        except DatapairError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(info))
            continue
        top = ", ".join(f"{s} {n:,}" for s, n in list(info["by_symbol"].items())[:8])
        print(f"{info['file']}: DBN v{info['version']} {info['dataset']} {info['schema']}")
        print(f"  ts_recv {info['first_ts_recv']} .. {info['last_ts_recv']}")
        print(f"  symbols: {top}")
        print(f"  actions: {info['by_action']}")
        if info["unmapped_records"]:
            print(f"  unmapped: {info['unmapped_records']:,} records of ids {info['unmapped_ids'][:10]}")
        print(
            f"{info['records']:,} records ({info['other_records_skipped']:,} other skipped) in "
            f"{info['seconds']:.2f} s, {info['rows_per_s'] or 0:,} rows/s"
        )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
