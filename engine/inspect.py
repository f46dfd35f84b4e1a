"""``python -m engine.inspect FILE...``: a DBN file's metadata and a decode summary.

Streams every record through the same reader and kernels as the ingest, so it doubles as a
quick check that a file is whole: per-symbol and per-action counts, unmapped instrument ids,
time range, rows/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from engine.columns import FileColumns, iter_column_blocks
from engine.dbn import DEFAULT_BLOCK_BYTES
from engine.errors import DatapairError
from engine.kernels import ACTIONS

__all__ = ["inspect_file", "main", "make_parser"]


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns")) + "Z"


def inspect_file(path: str | Path, block_bytes: int | None = None) -> dict:
    """Decode ``path`` completely and return its summary as a plain dict."""
    state: list[FileColumns] = []
    by_symbol: Counter[str] = Counter()
    by_action = np.zeros(len(ACTIONS), dtype=np.int64)
    rows = 0
    first = last = None
    t0 = time.perf_counter()
    for block in iter_column_blocks(path, block_bytes or DEFAULT_BLOCK_BYTES, state=state):
        rows += len(block)
        codes = np.bincount(block.arrays["symbol"], minlength=len(block.symbols))
        for code in np.nonzero(codes)[0]:
            by_symbol[block.symbols[code]] += int(codes[code])
        by_action += np.bincount(block.arrays["action"], minlength=len(ACTIONS))
        ts = block.arrays["ts_recv"]
        first = int(ts[0]) if first is None else first
        last = int(ts[-1])
    seconds = time.perf_counter() - t0
    reader, symbology = state[0].reader, state[0].symbology
    md = reader.metadata
    return {
        "file": str(path),
        "version": md.version,
        "dataset": md.dataset,
        "schema": md.schema or "mixed",
        "start": _iso(md.start),
        "end": _iso(md.end) if md.end is not None else None,
        "ts_out": md.ts_out,
        "symbols_requested": len(md.symbols),
        "mappings": len(md.mappings),
        "records": rows,
        "other_records_skipped": reader.records_skipped,
        "unmapped_records": symbology.unmapped_records,
        "unmapped_ids": sorted(symbology.unmapped_ids),
        "first_ts_recv": _iso(first) if first is not None else None,
        "last_ts_recv": _iso(last) if last is not None else None,
        "by_symbol": dict(by_symbol.most_common()),
        "by_action": {a: int(n) for a, n in zip(ACTIONS, by_action, strict=True) if n},
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds) if seconds else None,
    }


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
