"""Order-book benchmark: replay of a generated day by the Numba books vs the plain-Python reference book.

Paths (each in a fresh process, so peak RSS is its own; columns decoded by databento before
timing; kernels compiled on a small prefix first; median of ``--trials``):

- ``ours_replay``: :meth:`engine.book.OrderBooks.apply` over the whole day, one block.
- ``reference``: the reference book of ``tests/book/reference.py`` over the first
  ``--reference-rows`` rows (its rate is extrapolated to the day: it is per-record Python).
- ``ours_mbp10`` / ``ours_mbp1``: replay + MBP-10 / MBP-1 rows (:func:`engine.book.mbp.iter_mbp`,
  chunks of 65,536 rows, columns materialized); ``rows/s`` counts input MBO rows, ``out rows``
  the MBP rows emitted.
- ``ours_bbo1s``: replay + BBO-1s sampling.

Usage: ``python bench/bench_book.py [--records 10000000] [--file DAY.dbn.zst] [--trials 3]``.
Without ``--file`` the day is generated once with ``python -m engine.synth`` into
``$DATAPAIR_BENCH_DIR`` (default /tmp/datapair-bench) and reused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CACHE, ROOT, peak_rss_mib, run_child

PATHS = ("ours_replay", "reference", "ours_mbp10", "ours_mbp1", "ours_bbo1s")
LABELS = {
    "ours_replay": "datapair OrderBooks.apply (Numba)",
    "reference": "reference Python book (tests/book)",
    "ours_mbp10": "datapair replay + MBP-10 rows",
    "ours_mbp1": "datapair replay + MBP-1 rows",
    "ours_bbo1s": "datapair replay + BBO-1s rows",
}
BOOK = ("action", "side", "price_raw", "size", "order_id", "flags", "instrument_id", "publisher_id")
NEEDED = {
    "ours_replay": BOOK,
    "reference": BOOK,
    "ours_mbp10": (*BOOK, "ts_event", "ts_recv", "ts_in_delta", "sequence"),
    "ours_mbp1": (*BOOK, "ts_event", "ts_recv", "ts_in_delta", "sequence"),
    "ours_bbo1s": (*BOOK, "ts_event", "ts_recv", "sequence"),
}


def day_file(records: int, seed: int = 7, date: str = "2025-10-22") -> Path:
    """The generated day (``python -m engine.synth``), written once into the bench cache."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"XNAS.ITCH-{date}-{records}-{seed}.dbn.zst"
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp.dbn.zst")
        print(f"generating {records:,} records -> {path}", file=sys.stderr)
        cmd = [sys.executable, "-m", "engine.synth", str(tmp), "--records", str(records),
               "--date", date, "--seed", str(seed)]  # fmt: skip
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        tmp.rename(path)
    return path


def load_columns(file: Path, names: tuple[str, ...]) -> dict:
    """The day's ``names`` columns, decoded by databento in chunks (not timed; one column copy at a time)."""
    import databento as db
    import numpy as np

    from engine.book import columns_from_records

    parts: dict[str, list] = {k: [] for k in names}
    for chunk in db.DBNStore.from_file(file).to_ndarray(count=1 << 20):
        cols = columns_from_records(chunk)
        for k in names:
            parts[k].append(cols[k])
    return {k: np.concatenate(parts.pop(k)) for k in names}


def child(path_name: str, file: Path, trials: int, reference_rows: int) -> dict:
    from engine.book import OrderBooks
    from engine.book.bbo import derive_bbo
    from engine.book.mbp import iter_mbp

    cols = load_columns(file, NEEDED[path_name])
    n = len(cols["action"])
    prefix = {k: v[:5000] for k, v in cols.items()}
    out_rows = 0
    extra = {}

    if path_name == "reference":
        from tests.book.reference import ReferenceBooks, replay

        n = min(n, reference_rows)

        def run() -> None:
            replay(ReferenceBooks(), cols, 0, n)

    elif path_name == "ours_replay":
        OrderBooks().apply(prefix)  # compile (a load from the cache after the first run)
        books_box: list = []

        def run() -> None:
            books = OrderBooks()
            books.apply(cols)
            books_box[:] = [books]

    elif path_name in ("ours_mbp10", "ours_mbp1"):
        depth = 10 if path_name == "ours_mbp10" else 1
        for _ in iter_mbp(OrderBooks(), prefix, depth):
            pass

        def run() -> None:
            nonlocal out_rows
            out_rows = sum(len(chunk["row"]) for chunk in iter_mbp(OrderBooks(), cols, depth))

    else:
        derive_bbo(OrderBooks(), prefix, "1s")

        def run() -> None:
            nonlocal out_rows
            out_rows = len(derive_bbo(OrderBooks(), cols, "1s")["ts_recv"])

    seconds, cpu = [], []
    for _ in range(trials):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if path_name == "ours_replay":
        books = books_box[0]
        extra = {
            "state_mib": books.nbytes() / 2**20,
            "live_orders": books.live_orders,
            "counters": books.counters,
        }
    med = statistics.median(seconds)
    med_cpu = statistics.median(cpu)
    return {
        "name": path_name, "rows": n, "seconds": med, "rows_per_s": n / med, "cpu_seconds": med_cpu,
        "cpu_rows_per_s": n / med_cpu, "out_rows": out_rows, "trials": [round(s, 3) for s in seconds],
        "peak_rss_mib": peak_rss_mib(), **extra,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=10_000_000, help="records of the generated day")
    p.add_argument("--file", type=Path, help="use this DBN day instead of a generated one")
    p.add_argument("--trials", type=int, default=3, help="timed trials per path (median reported)")
    p.add_argument("--reference-rows", type=int, default=500_000, help="rows the Python reference replays")
    p.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of " + ",".join(PATHS))
    p.add_argument("--child", nargs=2, metavar=("PATH", "FILE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.trials, args.reference_rows)))
        return 0
    file = args.file or day_file(args.records)
    results = []
    for name in args.paths.split(","):
        res = run_child(Path(__file__), name, str(file), "--trials", str(args.trials),
                        "--reference-rows", str(args.reference_rows))  # fmt: skip
        print(f"{name}: {json.dumps(res)}", file=sys.stderr)
        results.append(res)
    ref = next((r for r in results if r["name"] == "reference"), None)
    print(
        f"\norder-book replay of {file.name} (median of {args.trials}; reference extrapolated from its prefix;"
    )
    print("cpu rows/s divides by the process CPU time, which a busy shared machine does not inflate)")
    print(
        f"{'path':<38} {'rows':>11} {'seconds':>8} {'rows/s':>12} {'cpu rows/s':>12} {'out rows':>11} "
        f"{'peak RSS MiB':>13} {'vs reference':>13}"
    )
    for r in results:
        ratio = r["cpu_rows_per_s"] / ref["cpu_rows_per_s"] if ref else float("nan")
        print(
            f"{LABELS[r['name']]:<38} {r['rows']:>11,} {r['seconds']:>8.2f} {r['rows_per_s']:>12,.0f} "
            f"{r['cpu_rows_per_s']:>12,.0f} {r['out_rows']:>11,} {r['peak_rss_mib']:>13.0f} {ratio:>12.1f}x"
        )
    ours = next((r for r in results if r["name"] == "ours_replay"), None)
    if ours:
        print(f"\nbook state after the day: {ours['state_mib']:.0f} MiB, {ours['live_orders']:,} live orders")
        print("counters:", ours["counters"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
