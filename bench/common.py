"""Shared helpers of the bench scripts: cached generated days, child-process runs, one result table."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("DATAPAIR_BENCH_DIR", "/tmp/datapair-bench"))


def generated_day(records: int, seed: int = 7, date: str = "2025-10-22") -> Path:
    """A generated XNAS.ITCH day, written once and reused across runs."""
    sys.path.insert(0, str(ROOT))
    from engine.synth.day import DEFAULT_SYMBOLS, write_day

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"XNAS.ITCH-{date}-{records}-{seed}.dbn.zst"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        print(f"generating {records:,} records -> {path}", file=sys.stderr)
        write_day(tmp, records=records, symbols=list(DEFAULT_SYMBOLS), date=date, seed=seed, compress=True)
        tmp.rename(path)
    return path


def peak_rss_mib() -> float:
    """Peak RSS of this process (VmHWM, reset at exec) and of its waited-for children, MiB.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used for the process itself: Linux carries it over
    fork + exec, so a child started by a big parent would report the parent's size.
    """
    own = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                own = int(line.split()[1])
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def run_child(script: Path, *args: str) -> dict:
    """Run ``script --child ARGS`` in a fresh interpreter and return the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, str(script), "--child", *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    t0 = time.perf_counter()
    rows = fn()
    return rows, time.perf_counter() - t0


def print_table(title: str, results: list[dict], baseline: str) -> None:
    """One table: rows/s, MB/s, peak RSS and the ratio to ``baseline``'s rows/s (median of trials)."""
    base = next((r for r in results if r["name"] == baseline), None)
    print(f"\n{title}")
    print(
        f"{'path':<44} {'rows':>12} {'seconds':>8} {'rows/s':>12} {'MB/s':>8} {'peak RSS MiB':>13} {'vs ' + baseline:>14}"
    )
    for r in results:
        ratio = r["rows_per_s"] / base["rows_per_s"] if base else float("nan")
        print(
            f"{r['name']:<44} {r['rows']:>12,} {r['seconds']:>8.2f} {r['rows_per_s']:>12,.0f} "
            f"{r.get('mb_per_s', float('nan')):>8.1f} {r['peak_rss_mib']:>13.0f} {ratio:>13.2f}x"
        )
