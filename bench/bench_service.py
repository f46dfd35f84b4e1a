"""Benchmark the HTTP service on a generated day: /data latency, streaming rate, load.

The server runs as its own process (``python -m service``, waitress), the client here talks to it
over loopback with keep-alive connections, so the numbers are what an HTTP client sees.

Measured, with the named baseline beside ours:

1. ``/data`` latency p50/p99 of random 1-minute NVDA windows (JSON, the seed's request);
   baseline: the naive in-process way (pyarrow dataset filter + one ``json.dumps`` per row).
2. Rows/s and MB/s streamed for a 1-hour NVDA window as JSON, NDJSON and Arrow, and the server's
   peak RSS; baseline: QuestDB ``/exec`` JSON for the same rows when ``QUESTDB_URL`` is set.
3. Requests/s of 1-minute windows under concurrent load.

Targets on a 20M-record day: p50 <= 20 ms for the 1-minute window, >= 1M rows/s streamed as
NDJSON or Arrow.

Examples
--------
``python bench/bench_service.py``                       (20M records; generated once, reused)
``python bench/bench_service.py --records 2000000 --requests 100``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NS = 1_000_000_000


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark datapair's HTTP service (/data latency, streaming rows/s, load).",
        epilog="example: python bench/bench_service.py --records 20000000",
    )
    p.add_argument(
        "--records", type=int, default=20_000_000, help="records of the generated day (default 20M)"
    )
    p.add_argument("--date", default="2025-10-22", help="day to generate")
    p.add_argument(
        "--dir",
        default=os.environ.get("DATAPAIR_BENCH_DIR", "/tmp/datapair-bench"),
        help="where the day and lake are kept",
    )
    p.add_argument("--requests", type=int, default=300, help="1-minute requests for the latency percentiles")
    p.add_argument("--concurrency", type=int, default=8, help="client threads for the load test")
    p.add_argument("--load-seconds", type=float, default=10.0, help="duration of the load test")
    p.add_argument("--threads", type=int, default=8, help="waitress threads of the server")
    p.add_argument(
        "--questdb-url", default=os.environ.get("QUESTDB_URL"), help="QuestDB for the /exec baseline"
    )
    p.add_argument("--questdb-table", default=os.environ.get("QUESTDB_TABLE", "mbo_ticks"))
    p.add_argument("--seed", type=int, default=7)
    return p


def prepare(args: argparse.Namespace) -> Path:
    from engine.lake.ingest import ingest_parquet
    from engine.synth.day import write_day

    d = Path(args.dir) / f"{args.records}"
    d.mkdir(parents=True, exist_ok=True)
    day = d / f"XNAS.ITCH-{args.date}.dbn.zst"
    if not day.exists():
        t = time.perf_counter()
        write_day(day, args.records, date=args.date, seed=args.seed)
        print(f"generated {day} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    lake = d / "lake"
    t = time.perf_counter()
    s = ingest_parquet([day], lake, quiet=True)
    if not s.skipped:
        print(f"ingested into {lake} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return lake


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Server:
    def __init__(self, lake: Path, threads: int, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATAPAIR_LAKE": str(lake),
            "DATAPAIR_STORE": "lake",
            **(extra_env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", str(self.port), "--threads", str(threads), "--quiet"],
            env=env, cwd=str(ROOT),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the server did not come up")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def post(conn: http.client.HTTPConnection, doc: dict, headers: dict | None = None) -> tuple[int, int, int]:
    """POST /data; (status, body bytes, X-Row-Count), the body read to its end."""
    conn.request("POST", "/data", body=json.dumps(doc), headers=headers or {})
    resp = conn.getresponse()
    n = 0
    while chunk := resp.read(1 << 20):
        n += len(chunk)
    return resp.status, n, int(resp.headers.get("X-Row-Count") or -1)


def latency(
    conn: http.client.HTTPConnection, windows: list[int], warmup: int = 20
) -> tuple[list[float], float]:
    """Seconds per 1-minute /data request (after ``warmup`` requests) and the mean rows per answer."""
    lat, rows = [], []
    for i, start in enumerate(windows):
        t = time.perf_counter()
        status, _, n = post(conn, {"start_ts": start, "end_ts": start + 60 * NS})
        dt = time.perf_counter() - t
        if status != 200:
            raise RuntimeError(f"/data answered {status}")
        if i >= warmup:
            lat.append(dt)
            rows.append(n)
    return lat, statistics.mean(rows)


def pct(values: Sequence[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(q / 100 * (len(v) - 1)))]


def minute_windows(lake: Path, n: int, seed: int) -> tuple[list[int], int, int]:
    from service.stores.lake import LakeStore

    r = LakeStore(lake).time_range("NVDA")
    assert r is not None
    rng = random.Random(seed)
    # 09:30-16:00 New York of the day: the regular session
    lo = r.start // (86_400 * NS) * 86_400 * NS + (13 * 3600 + 30 * 60) * NS
    hi = lo + (6 * 3600 + 30 * 60 - 60) * NS
    return [rng.randrange(lo, hi) for _ in range(n)], lo, hi


def naive_baseline(lake: Path, windows: list[int]) -> list[float]:
    """The seed's way in-process: dataset filter, to_pylist, json.dumps per row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dset = ds.dataset(str(lake), format="parquet", exclude_invalid_files=True)
    tstype = pa.timestamp("ns", tz="UTC")
    times = []
    for start in windows:
        t = time.perf_counter()
        ts = pc.field("ts_event")
        lo, hi = (
            pa.scalar(start, pa.int64()).cast(tstype),
            pa.scalar(start + 60 * NS, pa.int64()).cast(tstype),
        )
        tab = dset.to_table(filter=(pc.field("symbol") == "NVDA") & (ts >= lo) & (ts <= hi))
        tab = tab.sort_by([("ts_event", "ascending"), ("ts_recv", "ascending"), ("sequence", "ascending")])
        body = "[" + ",".join(json.dumps(r, default=str) for r in tab.to_pylist()) + "]"
        assert body
        times.append(time.perf_counter() - t)
    return times


def exec_baseline(url: str, table: str, start: int, end: int) -> tuple[int, float, int]:
    """QuestDB /exec JSON of the same rows, paged 100k at a time: (rows, seconds, bytes)."""
    from urllib.parse import quote

    from service.stores.questdb import parse_questdb_url

    _, host, port = parse_questdb_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=300)
    rows = size = 0
    t = time.perf_counter()
    lo = 0
    while True:
        sql = f"SELECT * FROM {table} WHERE symbol = 'NVDA' AND ts_event >= {start} AND ts_event <= {end}"
        conn.request("GET", f"/exec?query={quote(sql)}&limit={lo},{lo + 100_000}")
        body = conn.getresponse().read()
        size += len(body)
        n = len(json.loads(body).get("dataset", []))
        rows += n
        lo += n
        if n < 100_000:
            break
    return rows, time.perf_counter() - t, size


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    lake = prepare(args)
    windows, lo, _ = minute_windows(lake, args.requests + 20, args.seed)
    server = Server(lake, args.threads)
    rows_out: list[tuple[str, str, str, str, str, str]] = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        # 1. latency of 1-minute windows, with the default row-group cache and without it
        lat, rows_per = latency(conn, windows)
        cold_server = Server(lake, args.threads, {"DATAPAIR_LAKE_CACHE_MB": "0"})
        try:
            cold, _ = latency(http.client.HTTPConnection("127.0.0.1", cold_server.port, timeout=300), windows)
        finally:
            cold_server.stop()
        base = naive_baseline(lake, windows[20:60])
        for name, v in (("p50", 50), ("p99", 99)):
            rows_out.append(
                (
                    f"/data 1-min NVDA, JSON: {name} ms",
                    f"{pct(lat, v) * 1e3:.1f}",
                    f"{pct(base, v) * 1e3:.1f}",
                    "naive pyarrow+json.dumps",
                    f"{pct(base, v) / pct(lat, v):.1f}x",
                    f"{rows_per:.0f} rows/req avg" if v == 50 else "",
                )
            )
            rows_out.append(
                (
                    f"  same, row-group cache off: {name} ms",
                    f"{pct(cold, v) * 1e3:.1f}",
                    f"{pct(base, v) * 1e3:.1f}",
                    "naive pyarrow+json.dumps",
                    f"{pct(base, v) / pct(cold, v):.1f}x",
                    "DATAPAIR_LAKE_CACHE_MB=0",
                )
            )

        # 2. streaming a 1-hour window
        hour = (lo + 30 * 60 * NS, lo + 90 * 60 * NS)  # 10:00-11:00 New York
        _, _, n_rows = post(conn, {"start_ts": hour[0], "end_ts": hour[1], "format": "arrow"})  # warm-up
        qdb = None
        if args.questdb_url:
            try:
                qdb = exec_baseline(args.questdb_url, args.questdb_table, *hour)
            except (OSError, ValueError) as exc:
                print(f"QuestDB baseline skipped: {exc}", file=sys.stderr)
        for fmt in ("json", "ndjson", "arrow"):
            best = None
            for _ in range(3):
                t = time.perf_counter()
                status, size, _ = post(conn, {"start_ts": hour[0], "end_ts": hour[1], "format": fmt})
                dt = time.perf_counter() - t
                assert status == 200
                best = dt if best is None else min(best, dt)
            assert best is not None
            rate = n_rows / best
            if qdb:
                other = f"{qdb[0] / qdb[1] / 1e6:.2f}M"
                ratio = f"{rate / (qdb[0] / qdb[1]):.1f}x"
            else:
                other, ratio = "-", "-"
            rows_out.append(
                (
                    f"/data 1-hour NVDA stream {fmt}: rows/s",
                    f"{rate / 1e6:.2f}M",
                    other,
                    "QuestDB /exec JSON" if qdb else "(QUESTDB_URL unset)",
                    ratio,
                    f"{n_rows} rows, {size / best / 2**20:.0f} MiB/s",
                )
            )
        rows_out.append(("server peak RSS MiB", f"{peak_rss_mib(server.proc.pid):.0f}", "", "", "", ""))

        # 3. concurrent load
        stop = time.monotonic() + args.load_seconds
        done: list[float] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
            rng = random.Random(k)
            while time.monotonic() < stop:
                start = rng.choice(windows)
                t0 = time.perf_counter()
                st, _, _ = post(c, {"start_ts": start, "end_ts": start + 60 * NS})
                if st == 200:
                    with lock:
                        done.append(time.perf_counter() - t0)

        t = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.concurrency)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        rows_out.append(
            (
                f"load: {args.concurrency} clients, 1-min windows: req/s",
                f"{len(done) / wall:.0f}",
                "",
                "",
                "",
                f"p50 {pct(done, 50) * 1e3:.1f} ms, p99 {pct(done, 99) * 1e3:.1f} ms",
            )
        )
        rows_out.append(
            ("server peak RSS MiB (after load)", f"{peak_rss_mib(server.proc.pid):.0f}", "", "", "", "")
        )
    finally:
        server.stop()
    print(
        f"\nbench_service: {args.records:,} records, {args.date}, lake {lake}, server threads {args.threads}"
    )
    head = ("measure", "ours", "baseline", "baseline is", "ratio", "notes")
    widths = [max(len(str(r[i])) for r in [head, *rows_out]) for i in range(len(head))]
    for r in [head, *rows_out]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
