"""QuestDB -> lake export benchmark: ``/exp?fmt=parquet`` vs the client's QWP query (needs QUESTDB_URL).

A generated day (default 10M records) is loaded into a table of its own (QWP, dropped afterwards
unless ``--keep``); then each path exports that day into a fresh lake directory, in a fresh
process (its own peak RSS), ``--trials`` times:

- ``exp``: :class:`engine.questdb.read.ExportClient`: ``/exp?fmt=parquet`` streamed into a
  temporary file, then read back row group by row group;
- ``qwp``: :class:`engine.questdb.qwp_read.QwpExportClient`: ``questdb.connect(...).query(sql,
  binds)``, Arrow batches straight into the writer.

Both end in the same lake file (the same writer), checked with ``count()``; the table prints
rows/s of the whole export (count, fetch, decode, write), and whether both files hold the same
rows (a digest of every column). Without a reachable server it prints ``QUESTDB_URL not
reachable`` and exits 0.

Usage: ``QUESTDB_URL=http://localhost:9000 python bench/bench_export.py [--records 10000000] [--trials 3]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import generated_day, peak_rss_mib, print_table, run_child

URL = os.environ.get("QUESTDB_URL", "http://localhost:9000")
DATE = dt.date(2025, 10, 22)
LABELS = {"exp": "/exp?fmt=parquet -> file -> lake", "qwp": "QWP query (Arrow batches) -> lake"}


def _http(timeout: float = 600.0):
    from engine.questdb.conf import parse_questdb_url
    from engine.questdb.http import Backoff, QuestDBHttp

    return QuestDBHttp(parse_questdb_url(URL), backoff=Backoff(timeout=10.0), timeout=timeout)


def digest(path: Path) -> str:
    """BLAKE2b of every column's values in row order, column by column (dictionaries decoded)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    h = hashlib.blake2b(digest_size=16)
    with pq.ParquetFile(path) as pf:
        for name in pf.schema_arrow.names:
            col = pf.read(columns=[name]).column(0).combine_chunks()
            if pa.types.is_dictionary(col.type):
                h.update("\x1f".join(col.cast(pa.string()).to_pylist()).encode())
            else:
                h.update(np.ascontiguousarray(col.to_numpy(zero_copy_only=False)).tobytes())
    return h.hexdigest()


def child(name: str, table: str) -> dict:
    from engine.questdb.export import export_days
    from engine.questdb.qwp_read import QwpExportClient
    from engine.questdb.read import ExportClient

    client = QwpExportClient(URL, timeout=600) if name == "qwp" else ExportClient(URL, timeout=600)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as d:
        t0 = time.perf_counter()
        summary = export_days([DATE], d, table=table, client=client, force=True)
        seconds = time.perf_counter() - t0
        rss = peak_rss_mib()  # before the digest, which holds whole columns
        (day,) = summary.written
        out = {
            "rows": summary.rows,
            "seconds": seconds,
            "digest": digest(day.path),
            "mb": day.path.stat().st_size / 1e6,
        }
    out.update(name=name, rows_per_s=out["rows"] / seconds, peak_rss_mib=rss)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        _, name, table = argv[argv.index("--child") :][:3]
        print(json.dumps(child(name, table)))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--records", type=int, default=10_000_000, help="records of the generated day (default 10M)"
    )
    p.add_argument("--trials", type=int, default=3, help="runs per path; the median is shown")
    p.add_argument("--keep", action="store_true", help="keep the bench table")
    args = p.parse_args(argv)
    try:
        _http(timeout=2.0).ping()
    except Exception as exc:
        print(f"QUESTDB_URL not reachable ({URL}): {exc}\nskipping the QuestDB export benchmark")
        return 0
    from engine.questdb.conf import QuestDBOptions
    from engine.questdb.ingest import ingest_questdb

    day = generated_day(args.records, date=DATE.isoformat())
    table = f"bench_export_{uuid.uuid4().hex[:8]}"
    http = _http()
    try:
        opts = QuestDBOptions.from_env(url=URL, table=table, log_table=f"{table}_log")
        t0 = time.perf_counter()
        loaded = ingest_questdb([day], options=opts)
        if not loaded.ok:
            raise SystemExit(f"load failed: {loaded.failed}")
        print(
            f"loaded {loaded.rows:,} rows via {loaded.protocol} in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        results = []
        for name in ("exp", "qwp"):
            trials = [run_child(Path(__file__), name, table) for _ in range(args.trials)]
            for t in trials:
                print(
                    f"  {name}: {t['seconds']:.2f} s, peak RSS {t['peak_rss_mib']:.0f} MiB", file=sys.stderr
                )
            best = sorted(trials, key=lambda r: r["seconds"])[len(trials) // 2]
            best["seconds"] = statistics.median(r["seconds"] for r in trials)
            best["rows_per_s"] = best["rows"] / best["seconds"]
            best["mb_per_s"] = best["mb"] / best["seconds"]
            best["key"], best["name"] = name, LABELS[name]
            results.append(best)
    finally:
        if not args.keep:
            for t in (table, f"{table}_log"):
                http.exec(f"DROP TABLE IF EXISTS {t}")
    print_table(f"QuestDB -> lake export of one {args.records:,}-record day, server {URL} (MB/s: lake file)",
                results, LABELS["exp"])  # fmt: skip
    same = len({r["digest"] for r in results}) == 1
    fast = max(results, key=lambda r: r["rows_per_s"])
    print(f"\nboth lake files hold the same rows: {'yes' if same else 'NO'}; faster: {fast['key']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
