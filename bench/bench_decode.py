"""Decode benchmark: our streaming reader to columns vs databento's ``to_ndarray()`` and ``to_df()``.

Each path runs in a fresh process (so peak RSS is its own), on the same generated day, several
trials, median reported. Usage: ``python bench/bench_decode.py [--records 10000000] [--trials 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import generated_day, peak_rss_mib, print_table, run_child

PATHS = ("zstd_only", "ours_columns", "ours_arrow", "databento_to_ndarray", "databento_to_df")
LABELS = {
    "zstd_only": "zstd decompress only (ceiling)",
    "ours_columns": "datapair DBNReader -> NumPy columns",
    "ours_arrow": "datapair -> Arrow RecordBatches",
    "databento_to_ndarray": "databento DBNStore.to_ndarray()",
    "databento_to_df": "databento DBNStore.to_df()",
}


def child(path_name: str, file: Path) -> dict:
    t0 = time.perf_counter()
    if path_name == "zstd_only":
        import zstandard

        rows = 0
        with file.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as r:
            while chunk := r.read(4 << 20):
                rows += len(chunk)
        rows //= 56
    elif path_name in ("ours_columns", "ours_arrow"):
        from engine.dbn.columns import iter_column_blocks

        # compile outside the timed region (cache=True makes this a load from disk)
        for _ in iter_column_blocks(file, 1 << 20):
            break
        t0 = time.perf_counter()
        rows = 0
        for block in iter_column_blocks(file):
            if path_name == "ours_arrow":
                block.to_arrow()
            rows += len(block)
    elif path_name == "databento_to_ndarray":
        import databento as db

        rows = len(db.DBNStore.from_file(file).to_ndarray())
    else:
        import warnings

        import databento as db

        warnings.simplefilter("ignore")
        rows = len(db.DBNStore.from_file(file).to_df())
    seconds = time.perf_counter() - t0
    return {"rows": rows, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000_000, help="records in the generated day")
    parser.add_argument("--trials", type=int, default=3, help="trials per path (median reported)")
    parser.add_argument(
        "--paths", default=",".join(PATHS), help="comma-separated subset of " + ",".join(PATHS)
    )
    parser.add_argument("--child", nargs=2, metavar=("PATH", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0
    file = generated_day(args.records)
    results = []
    for name in args.paths.split(","):
        trials = 1 if name == "databento_to_df" else args.trials
        runs = [run_child(Path(__file__), name, str(file)) for _ in range(trials)]
        secs = statistics.median(r["seconds"] for r in runs)
        rows = runs[0]["rows"]
        results.append(
            {
                "name": LABELS[name],
                "rows": rows,
                "seconds": secs,
                "rows_per_s": rows / secs,
                "mb_per_s": rows * 56 / secs / 1e6,
                "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            }
        )
        print(f"  {LABELS[name]}: {rows / secs:,.0f} rows/s", file=sys.stderr)
    print_table(
        f"decode {args.records:,} MBO records ({file.stat().st_size / 1e6:.0f} MB zstd), median of {args.trials}",
        results,
        LABELS["databento_to_ndarray"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
