"""Benchmark the synthetic day generator: records/s, MB/s, output size and peak RSS.

Each trial runs in a fresh process (so its peak RSS is its own) after a warm-up that loads the
cached Numba kernels. Rows: the default path (zstd level 3, one worker thread overlapping the
generator), zstd in the generating thread, and plain DBN (generator + disk, no compression).

    python bench/bench_synth.py                 # 10M records, 3 trials, median
    python bench/bench_synth.py --records 2_000_000 --trials 1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.synth.day import DEFAULT_SYMBOLS, write_day

RECORD_BYTES = 56
TARGET = 1.5e6

CONFIGS = [
    ("synth zstd-3, 1 worker thread (default)", ".dbn.zst", {"threads": 1}),
    ("synth zstd-3, in generating thread", ".dbn.zst", {"threads": 0}),
    ("synth plain .dbn (no zstd)", ".dbn", {}),
]


def _trial(path: str, records: int, kwargs: dict) -> tuple[float, int, int]:
    write_day(path, 10_000, DEFAULT_SYMBOLS, "2025-10-22", 1, **kwargs)  # warm up (load kernels)
    t0 = time.perf_counter()
    summary = write_day(path, records, DEFAULT_SYMBOLS, "2025-10-22", 42, **kwargs)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return seconds, summary.bytes_written, peak_kib


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records",
        type=lambda s: int(s.replace("_", "")),
        default=10_000_000,
        help="records per generated day (default: %(default)s)",
    )
    parser.add_argument("--trials", type=int, default=3, help="trials per row, median reported (default: 3)")
    args = parser.parse_args()  # fmt: skip
    ctx = mp.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, suffix, kwargs in CONFIGS:
            runs = []
            for _ in range(args.trials):
                with ctx.Pool(1) as pool:
                    runs.append(pool.apply(_trial, (str(Path(tmp) / f"day{suffix}"), args.records, kwargs)))
            seconds = statistics.median(r[0] for r in runs)
            rows.append((name, seconds, runs[0][1], max(r[2] for r in runs)))
    base = rows[0][1]
    print(f"{args.records:,} records, {len(DEFAULT_SYMBOLS)} symbols, median of {args.trials} trial(s)")
    print(f"{'path':42} {'rows/s':>10} {'MB/s':>8} {'seconds':>8} {'output':>10} {'ratio':>6} {'peak RSS':>9} {'vs default':>10}")  # fmt: skip
    for name, seconds, size, peak_kib in rows:
        rate = args.records / seconds
        mb_s = args.records * RECORD_BYTES / seconds / 1e6
        ratio = args.records * RECORD_BYTES / size
        print(
            f"{name:42} {rate / 1e6:>9.2f}M {mb_s:>8.0f} {seconds:>8.2f} {size / 2**20:>7.1f}MiB "
            f"{ratio:>5.2f}x {peak_kib / 1024:>6.0f}MiB {base / seconds:>9.2f}x"
        )
    ok = args.records / rows[0][1] >= TARGET
    print(f"target {TARGET / 1e6:.1f}M records/s end to end: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
