"""``GET /api/mbo/book`` at random instants of a generated day: with the book checkpoints and without.

Setup (not timed; reused from ``$DATAPAIR_BENCH_DIR``, default /tmp/datapair-bench): ``python -m
engine.synth OUT --records N --date 2025-10-22 --seed 7``, ``python -m engine.ingest OUT --parquet
LAKE``, ``datapair-book index --dir LAKE`` (its time is printed). Then the app (Falcon, lake store)
answers ``--instants`` requests at instants drawn uniformly from the busiest symbol's day (seed 7),
through ``falcon.testing`` (no socket: the store's and the route's time), after 5 warm-up requests:

- ``checkpoints``: the lake store as served (nearest minute checkpoint, then the rows after it);
- ``full replay``: the same store with ``checkpoints=False`` (the day replayed from its start),
  on ``--replay-instants`` of the same instants (it is slow by design).

Prints one table: p50, p90, p99, max in ms and rows replayed per request (median).
Usage: ``python bench/bench_book_api.py [--records 20000000] [--instants 200] [--replay-instants 20]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CACHE, ROOT

SYMBOL = "NVDA"


def prepare(records: int, seed: int = 7, date: str = "2025-10-22") -> Path:
    """The lake of the generated day with its checkpoints (each step skipped when done before)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    day = CACHE / f"XNAS.ITCH-{date}-{records}-{seed}.dbn.zst"
    lake = CACHE / f"lake-book-{records}-{seed}"
    run = lambda *a: subprocess.run([sys.executable, "-m", *a], check=True, cwd=ROOT)  # noqa: E731
    if not day.exists():
        tmp = day.with_name(day.name + ".tmp.dbn.zst")
        run("engine.synth", str(tmp), "--records", str(records), "--date", date, "--seed", str(seed))
        tmp.rename(day)
    if not (lake / f"mbo_{date}.parquet").exists():
        run("engine.ingest", str(day), "--parquet", str(lake), "--quiet")
    if not (lake / "_book").is_dir():
        t0 = time.perf_counter()
        run("engine.book", "index", "--dir", str(lake), "--quiet")
        print(f"index: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return lake


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def measure(client, instants: list[int]) -> list[float]:
    out = []
    for at in instants:
        t0 = time.perf_counter()
        r = client.simulate_get("/api/mbo/book", params={"symbol": SYMBOL, "at": str(at), "depth": "10"})
        out.append((time.perf_counter() - t0) * 1e3)
        assert r.status_code == 200, r.text
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=20_000_000)
    p.add_argument("--instants", type=int, default=200)
    p.add_argument("--replay-instants", type=int, default=20)
    p.add_argument("--lake", type=Path, help="an existing lake (indexed) instead of the generated one")
    args = p.parse_args()
    import falcon.testing
    import numpy as np

    from engine.book.snapshot import ReplayStats, book_snapshot
    from service.app import create_app
    from service.stores.lake import LakeStore

    lake = args.lake or prepare(args.records)
    r = LakeStore(lake).time_range(SYMBOL)
    assert r is not None
    rng = np.random.default_rng(7)
    instants = rng.integers(r.start, r.end, args.instants).tolist()
    rows = []
    for label, checkpoints, ats in (
        ("checkpoints", True, instants),
        ("full replay", False, instants[: args.replay_instants]),
    ):
        client = falcon.testing.TestClient(create_app(LakeStore(lake, checkpoints=checkpoints)))
        measure(client, ats[:5])  # warm-up: kernels loaded, footers cached
        ms = measure(client, ats)
        replayed = []
        for at in ats[:20]:
            st = ReplayStats()
            book_snapshot(lake, SYMBOL, at, checkpoints=checkpoints, stats=st)
            replayed.append(st.rows)
        rows.append(
            (label, len(ats), pct(ms, 0.5), pct(ms, 0.9), pct(ms, 0.99), max(ms), statistics.median(replayed))
        )
    print(f"/api/mbo/book?symbol={SYMBOL}&depth=10 on {lake} (random instants of the day, seed 7)")
    print(
        f"{'path':<13} {'requests':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'rows replayed':>14}"
    )
    for label, n, p50, p90, p99, mx, rep in rows:
        print(f"{label:<13} {n:>8} {p50:>8.1f} {p90:>8.1f} {p99:>8.1f} {mx:>8.1f} {rep:>14,.0f}")
    print("targets (issue 13): with checkpoints p50 <= 50 ms, p99 <= 200 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
