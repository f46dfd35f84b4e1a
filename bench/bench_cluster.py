"""Backfill of many generated days: the local pipeline vs ``--cluster local:1`` and ``local:2`` (issue 16).

Each path ingests the same DAYS generated days (RECORDS records each) into a fresh lake, in its own
child process (peak RSS includes the worker processes it waited for). Files/s and rows/s are over
the ingest itself; starting the LocalCluster is shown apart (a real cluster is already running).
The cluster's overhead per file is its wall time minus the per-file work its workers report
(decode, convert, write, publish), divided by files and multiplied by the workers.

One worker keeps both cores of a 2-core box busy (its thread decodes while the lake writer
encodes on another), so ``local:2`` cannot beat ``local:1`` here. The ``(1 core ...)`` rows pin
every thread of each worker to a core of its own (``sched_setaffinity``): the shape of a real
cluster whose workers each own their cores, and the per-core scaling that sizing one needs.

    python bench/bench_cluster.py [--days 60] [--records 200000] [--trials 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CACHE, ROOT, peak_rss_mib, run_child


def days_dir(days: int, records: int) -> Path:
    from engine.synth.day import write_day

    d = CACHE / f"cluster-{days}x{records}"
    d.mkdir(parents=True, exist_ok=True)
    day, made = dt.date(2025, 7, 1), 0
    while made < days:
        if day.weekday() < 5:
            p = d / f"XNAS.ITCH-{day}.dbn.zst"
            if not p.exists():
                tmp = d / f".{p.name}.tmp"
                write_day(tmp, records=records, date=day.isoformat(), seed=made + 1, compress=True)
                tmp.rename(p)
            made += 1
        day += dt.timedelta(days=1)
    return d


def _pin(cpu: int) -> None:
    """Every thread of this worker process onto ``cpu`` (threads started later inherit it)."""
    import contextlib
    import os

    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(int(tid), {cpu})


def child(name: str, src: str) -> dict:
    import os

    os.environ["PYTHONPATH"] = str(ROOT)  # the cluster's workers import this checkout
    from engine.inputs import find_inputs

    files = find_inputs([src])
    lake = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        startup = 0.0
        if name == "local pipeline":
            from engine.lake.ingest import ingest_parquet

            t0 = time.perf_counter()
            s = ingest_parquet(files, lake)
            seconds = time.perf_counter() - t0
            rows, ok, work = s.rows, s.ok, sum(o.seconds for o in s.outcomes)
            workers = 1
        else:
            from engine.cluster import IngestJob, ingest_cluster
            from engine.cluster.client import connect

            workers = int(name.split(":", 1)[1].split()[0])
            t0 = time.perf_counter()
            with connect(workers) as client:  # the LocalCluster --cluster local:N starts
                client.submit(int, 1).result()  # workers up
                if "core" in name:
                    cpus = sorted(os.sched_getaffinity(0))
                    for i, addr in enumerate(sorted(client.scheduler_info()["workers"])):
                        client.run(_pin, cpus[i % len(cpus)], workers=[addr])
                startup = time.perf_counter() - t0
                t0 = time.perf_counter()
                c = ingest_cluster(files, workers, IngestJob(lake=str(lake)), client=client)
                seconds = time.perf_counter() - t0
            rows, ok, work = c.rows, c.ok, sum(r.seconds for r in c.reports)
        if not ok:
            raise SystemExit(f"{name}: ingest failed")
    finally:
        shutil.rmtree(lake, ignore_errors=True)
    n = len(files)
    return {
        "name": name, "files": n, "rows": rows, "seconds": seconds, "startup": startup,
        "overhead_ms": max(0.0, (seconds * workers - work) / n * 1000) if name != "local pipeline" else 0.0,
        "peak_rss_mib": peak_rss_mib(),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=60, help="generated days (files), default 60")
    p.add_argument("--records", type=int, default=200_000, help="records per day, default 200k")
    p.add_argument("--trials", type=int, default=1, help="runs per path; the median is shown")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    src = days_dir(args.days, args.records)
    results = []
    names = ("local pipeline", "cluster local:1", "cluster local:2", "cluster local:1 (1 core)",
             "cluster local:2 (1 core each)")  # fmt: skip
    for name in names:
        trials = sorted(
            (run_child(Path(__file__), name, str(src)) for _ in range(args.trials)),
            key=lambda r: r["seconds"],
        )
        results.append(trials[len(trials) // 2])
        print(f"  {name}: {results[-1]['seconds']:.2f} s", file=sys.stderr)
    one = next(r for r in results if r["name"] == "cluster local:1")
    one_core = next(r for r in results if r["name"] == "cluster local:1 (1 core)")
    print(f"\n{args.days} generated days x {args.records:,} records (median of {args.trials})")
    print(
        f"{'path':<30} {'files/s':>8} {'rows/s':>12} {'seconds':>8} {'startup s':>10} "
        f"{'overhead/file':>14} {'peak RSS MiB':>13} {'files/s vs local:1 (same pinning)':>34}"
    )
    for r in results:
        fps = r["files"] / r["seconds"]
        base = one_core if "core" in r["name"] else one
        print(
            f"{r['name']:<30} {fps:>8.2f} {r['rows'] / r['seconds']:>12,.0f} {r['seconds']:>8.2f} "
            f"{r['startup']:>10.2f} {r['overhead_ms']:>11.0f} ms {r['peak_rss_mib']:>13.0f} "
            f"{fps / (base['files'] / base['seconds']):>18.2f}x"
        )


if __name__ == "__main__":
    main()
