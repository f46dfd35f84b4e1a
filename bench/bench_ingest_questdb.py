"""QuestDB ingest benchmark: each protocol of the QuestDB sink vs the naive baseline (needs QUESTDB_URL).

Paths, each in a fresh process (its own peak RSS), on the same generated day, each into a fresh
table (dropped afterwards unless ``--keep``):

- ``qwp``: :func:`engine.questdb.ingest.ingest_questdb` over QWP/WebSocket (when the server offers it);
- ``ilp-http``: the same over ILP/HTTP (``QDB_FLUSH_ROWS`` / ``QDB_BATCH_BYTES`` batches);
- ``ilp-tcp``: the same over ILP/TCP (when the port answers);
- baseline: databento ``DBNStore.to_df()`` in chunks + ``questdb.Sender.dataframe`` over ILP/HTTP
  into a table the client creates (the seed's way);
- ``ceiling``: the official client alone: the day's 16 columns already decoded into one in-memory
  Arrow table (built before the clock starts), sent with ``questdb.connect(...).dataframe()`` in
  500K-row calls into a table made by our DDL (same dedup keys), until ``count()`` shows every row.
  No loader can beat it on this server; our QWP row is read as a fraction of it, from one run;
- ``ilp ceiling``: the same for ILP/HTTP: the day as one prebuilt pandas frame with the same
  columns (``ilp_frame``), sent with the client's ``Buffer.dataframe`` + ``Sender.flush`` in
  ``QDB_FLUSH_ROWS`` batches into a table made by our DDL; our ILP/HTTP row is read against it.

Time runs from the start of the load until ``count()`` shows every row (ours: the engine waits
for the WAL apply and checks the counts itself; baseline: polled). MB/s is the source file's
bytes per second. Targets on a 2-core box shared with the server: QWP >= 2.5M rows/s end to
end, ILP/HTTP >= 0.35M rows/s, peak RSS <= 1 GiB.

Without a reachable server it prints ``QUESTDB_URL not reachable`` and exits 0.

Usage: ``QUESTDB_URL=http://localhost:9000 python bench/bench_ingest_questdb.py [--records 10000000]
[--trials 1] [--protocols qwp,ilp-http,ilp-tcp] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import generated_day, peak_rss_mib, print_table, run_child

URL = os.environ.get("QUESTDB_URL", "http://localhost:9000")
TARGETS = {"qwp": 2.5e6, "ilp-http": 0.35e6}
RSS_TARGET_MIB = 1024
BASELINE = "baseline"
CEILING = "ceiling"
ILP_CEILING = "ilp-ceiling"
LABELS = {
    ILP_CEILING: "ilp ceiling: prebuilt frame + Buffer.dataframe (ILP/HTTP)",
    CEILING: "ceiling: prebuilt Arrow + client dataframe() (QWP)",
    "qwp-cli": "datapair QWP, whole CLI (start-up included)",
    "qwp": "datapair QWP/WebSocket",
    "ilp-http": "datapair ILP/HTTP",
    "ilp-tcp": "datapair ILP/TCP",
    BASELINE: "databento to_df() + Sender.dataframe ILP/HTTP",
}


def _http(timeout: float = 60.0):
    from engine.questdb.conf import parse_questdb_url
    from engine.questdb.http import Backoff, QuestDBHttp

    return QuestDBHttp(parse_questdb_url(URL), backoff=Backoff(timeout=timeout), timeout=timeout)


def _server_pid() -> int | None:
    """The local QuestDB server's JVM (its command line names questdb), if this box runs it."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    cmd = fh.read()
            except OSError:
                continue
            if b"java" in cmd and b"questdb" in cmd.lower():
                return int(entry.name)
    return None


def _server_cpu() -> float:
    """CPU seconds the local server has used so far (all its threads); NaN when it is not local."""
    pid = _server_pid()
    if pid is None:
        return float("nan")
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client_cpu() -> float:
    """CPU seconds of this process and its waited-for children (the CLI row's command)."""
    return sum(
        ru.ru_utime + ru.ru_stime
        for ru in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


class Clock:
    """Wall seconds, client CPU and server CPU of the timed part of a path (its ``done`` dict)."""

    def __init__(self) -> None:
        self.cpu, self.server, self.t0 = _client_cpu(), _server_cpu(), time.perf_counter()

    def done(self, **fields: Any) -> dict:
        return {**fields, "seconds": time.perf_counter() - self.t0, "client_cpu": _client_cpu() - self.cpu,
                "server_cpu": _server_cpu() - self.server}  # fmt: skip


def _count(http, table: str) -> int:
    try:
        return int(http.exec(f"SELECT count() AS n FROM {table}").dataset[0][0])
    except Exception:
        return 0


def child_ours(protocol: str, path: str, table: str) -> dict:
    from engine.questdb.conf import QuestDBOptions
    from engine.questdb.ingest import ingest_questdb

    opts = QuestDBOptions.from_env(protocol=protocol, table=table, log_table=f"{table}_log", force=True)
    from engine import stages

    clock = Clock()
    summary = ingest_questdb([path], options=opts, jobs=1)  # in this process: its stages are ours
    out = clock.done(rows=summary.rows, protocol=summary.protocol, stages=stages.take())
    if not summary.ok:
        raise SystemExit(f"load failed: {summary.failed}")
    return out


def child_baseline(path: str, table: str, chunk: int = 1_000_000) -> dict:
    import databento as db
    import questdb

    from engine.questdb.conf import parse_questdb_url

    http = _http()
    conf = parse_questdb_url(URL).ilp_http_conf()
    clock = Clock()
    store = db.DBNStore.from_file(path)
    rows = 0
    with questdb.Sender.from_conf(conf) as sender:
        for df in store.to_df(count=chunk):
            frame = df.reset_index()
            sender.dataframe(frame, table_name=table, symbols=["symbol"], at="ts_event")
            rows += len(frame)
        sender.flush()
    while _count(http, table) < rows:
        time.sleep(0.05)
    return clock.done(rows=rows, protocol="ilp-http")


def child_cli(path: str, table: str) -> dict:
    """``python -m engine.ingest DAY --questdb URL --protocol qwp``: what a user waits for."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "engine.ingest", path, "--questdb", URL, "--protocol", "qwp", "--table", table,
           "--quiet", "--force"]  # fmt: skip
    env = {**os.environ, "QDB_LOG_TABLE": f"{table}_log"}
    clock = Clock()
    subprocess.run(cmd, check=True, cwd=root, env=env, stdout=subprocess.DEVNULL)
    out = clock.done(protocol="qwp")
    return {**out, "rows": _count(_http(), table)}


def _prebuilt(path: str) -> Any:
    from engine.dbn.columns import ColumnBlock, iter_column_blocks
    from engine.questdb.keys import DaySequencer
    from engine.questdb.protocols import concat_blocks

    seq = DaySequencer()
    return concat_blocks(
        [ColumnBlock({**b.arrays, "day_seq": seq.number(b)}, b.symbols) for b in iter_column_blocks(path)]
    )


def child_ilp_ceiling(path: str, table: str) -> dict:
    import questdb

    from engine.questdb.conf import QuestDBOptions, parse_questdb_url
    from engine.questdb.protocols import SYMBOL_COLUMNS, ilp_frame
    from engine.questdb.sink import prepare_server

    opts = prepare_server(QuestDBOptions.from_env(protocol="ilp-http", table=table, log_table=f"{table}_log"))
    df = ilp_frame(_prebuilt(path))  # built before the clock starts
    conf = parse_questdb_url(URL).ilp_http_conf(auto_flush="off")
    http = _http()
    clock = Clock()
    with questdb.Sender.from_conf(conf) as sender:
        buf = sender.new_buffer()
        for lo in range(0, len(df), opts.flush_rows):
            buf.clear()
            buf.dataframe(
                df.iloc[lo : lo + opts.flush_rows],
                table_name=opts.table,
                symbols=SYMBOL_COLUMNS,
                at="ts_event",
            )
            sender.flush(buf, clear=False, transactional=True)
    while _count(http, opts.table) < len(df):
        time.sleep(0.05)
    return clock.done(rows=len(df), protocol="ilp-http")


def child_ceiling(path: str, table: str, chunk: int = 500_000) -> dict:
    import pyarrow as pa
    import questdb

    from engine.dbn.columns import ColumnBlock, iter_column_blocks
    from engine.questdb.conf import QuestDBOptions, parse_questdb_url
    from engine.questdb.keys import DaySequencer
    from engine.questdb.protocols import qwp_table
    from engine.questdb.sink import prepare_server

    opts = prepare_server(QuestDBOptions.from_env(protocol="qwp", table=table, log_table=f"{table}_log"))
    seq = DaySequencer()
    parts = [
        qwp_table(ColumnBlock({**b.arrays, "day_seq": seq.number(b)}, b.symbols))
        for b in iter_column_blocks(path)
    ]
    whole = pa.concat_tables(parts).combine_chunks()  # built before the clock starts
    del parts
    http = _http()
    clock = Clock()
    with questdb.connect(parse_questdb_url(URL).qwp_conf()) as db:
        for lo in range(0, whole.num_rows, chunk):
            db.dataframe(whole.slice(lo, chunk), table_name=opts.table, at="ts_event")
    while _count(http, opts.table) < whole.num_rows:
        time.sleep(0.05)
    return clock.done(rows=whole.num_rows, protocol="qwp")


def run_child_mode(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("name")
    p.add_argument("path")
    p.add_argument("table")
    a = p.parse_args(argv)
    if a.name == BASELINE:
        out = child_baseline(a.path, a.table)
    elif a.name == CEILING:
        out = child_ceiling(a.path, a.table)
    elif a.name == ILP_CEILING:
        out = child_ilp_ceiling(a.path, a.table)
    elif a.name == "qwp-cli":
        out = child_cli(a.path, a.table)
    else:
        out = child_ours(a.name, a.path, a.table)
    size = Path(a.path).stat().st_size
    out.update(
        name=a.name,
        rows_per_s=out["rows"] / out["seconds"],
        mb_per_s=size / out["seconds"] / 1e6,
        peak_rss_mib=peak_rss_mib(),
    )
    print(json.dumps(out))
    return 0


def available(protocols: list[str]) -> list[str]:
    from engine.questdb.conf import parse_questdb_url
    from engine.questdb.protocols import detect_protocol

    address = parse_questdb_url(URL)
    out = []
    for proto in protocols:
        if proto == "qwp" and detect_protocol(address) != "qwp":
            print("QWP/WebSocket not offered by this server: skipping qwp", file=sys.stderr)
            continue
        if proto == "ilp-tcp":
            try:
                socket.create_connection((address.host, address.tcp_port), timeout=2).close()
            except OSError:
                print(f"ILP/TCP port {address.tcp_port} closed: skipping ilp-tcp", file=sys.stderr)
                continue
        out.append(proto)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        return run_child_mode(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="example: QUESTDB_URL=http://localhost:9000 "
                                "python bench/bench_ingest_questdb.py --records 10000000")  # fmt: skip
    p.add_argument(
        "--records", type=int, default=10_000_000, help="records of the generated day (default 10M)"
    )
    p.add_argument("--trials", type=int, default=1, help="runs per path; the median is shown")
    p.add_argument("--protocols", default="qwp,ilp-http,ilp-tcp", help="our paths to run (comma separated)")
    p.add_argument(
        "--no-baseline", action="store_true", help="skip the databento + Sender.dataframe baseline"
    )
    p.add_argument("--keep", action="store_true", help="keep the bench tables")
    p.add_argument("--no-ceiling", action="store_true", help="skip the client-alone ceiling row")
    args = p.parse_args(argv)
    try:
        _http(timeout=2.0).ping()
    except Exception as exc:
        print(f"QUESTDB_URL not reachable ({URL}): {exc}\nskipping the QuestDB ingest benchmark")
        return 0
    protocols = available([s.strip() for s in args.protocols.split(",") if s.strip()])
    day = generated_day(args.records)
    ceiling = [] if args.no_ceiling else [CEILING] if "qwp" in protocols else []
    ceiling += [ILP_CEILING] if "ilp-http" in protocols and not args.no_ceiling else []
    cli = ["qwp-cli"] if "qwp" in protocols else []
    names = [*ceiling, *protocols, *cli, *([] if args.no_baseline else [BASELINE])]
    http = _http()
    results = []
    for name in names:
        trials = []
        for _ in range(args.trials):
            table = f"bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
            try:
                trials.append(run_child(Path(__file__), name, str(day), table))
            finally:
                if not args.keep:
                    for t in (table, f"{table}_log"):
                        http.exec(f"DROP TABLE IF EXISTS {t}")
        best = sorted(trials, key=lambda r: r["seconds"])[len(trials) // 2]
        best["seconds"] = statistics.median(r["seconds"] for r in trials)
        best["rows_per_s"] = best["rows"] / best["seconds"]
        best["name"] = LABELS[name]
        best["key"] = name
        results.append(best)
    print_table(f"QuestDB ingest, {args.records:,}-record day ({day.stat().st_size / 1e6:.0f} MB zstd), server {URL}",
                results, LABELS[BASELINE] if not args.no_baseline else LABELS[names[0]])  # fmt: skip
    print()
    for r in results:
        goal = TARGETS.get(r["key"])
        rate = f"{r['rows_per_s'] / 1e6:.2f}M rows/s"
        verdict = (
            ""
            if goal is None
            else (
                " (target >= {:.2f}M: {})".format(goal / 1e6, "met" if r["rows_per_s"] >= goal else "MISSED")
            )
        )
        rss = f"peak RSS {r['peak_rss_mib']:.0f} MiB ({'ok' if r['peak_rss_mib'] <= RSS_TARGET_MIB else 'over 1 GiB'})"
        print(f"{r['name']}: {rate}{verdict}, {rss}")
    print("\nCPU of each path (the box has 2 cores; the server runs on them too), median trial:")
    for r in results:
        busy = (r["client_cpu"] + r["server_cpu"]) / (2 * r["seconds"])
        print(f"  {r['name']}: wall {r['seconds']:.2f} s, client CPU {r['client_cpu']:.2f} s, "
              f"server CPU {r['server_cpu']:.2f} s, both cores {busy:.0%} busy")  # fmt: skip
    top = next((r for r in results if r["key"] == CEILING), None)
    for key in ("qwp", "qwp-cli"):
        mine = next((r for r in results if r["key"] == key), None)
        if top is not None and mine is not None and not math.isnan(top["server_cpu"]):
            floor = (mine["client_cpu"] + top["server_cpu"]) / 2  # both cores busy, no other work
            print(f"  {LABELS[key]}: with its client CPU and the ceiling's server CPU on 2 cores, no run "
                  f"beats {floor:.2f} s = {floor and top['seconds'] / floor:.2f} of the ceiling")  # fmt: skip
    for r in results:
        if r.get("stages"):
            parts = ", ".join(
                f"{k} {c:.2f}/{w:.2f}" for k, (c, w) in sorted(r["stages"].items(), key=lambda kv: -kv[1][1])
            )
            print(f"{r['name']} stages (CPU s / wall s; send runs on its own thread beside decode): {parts}")
    ilp_top = next((r for r in results if r["key"] == ILP_CEILING), None)
    ilp = next((r for r in results if r["key"] == "ilp-http"), None)
    if ilp_top is not None and ilp is not None:
        print(
            f"{LABELS['ilp-http']} / ilp ceiling: {ilp['rows_per_s'] / ilp_top['rows_per_s']:.2f} (target >= 0.9)"
        )
    for key in ("qwp", "qwp-cli"):
        mine = next((r for r in results if r["key"] == key), None)
        if top is not None and mine is not None:
            print(f"{LABELS[key]} / ceiling: {mine['rows_per_s'] / top['rows_per_s']:.2f} "
                  "(target with start-up >= 0.75 on 3M rows, >= 0.9 on 10M)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
