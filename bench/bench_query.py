"""Query benchmark: OHLCV 1m of one symbol-day, and a cross-symbol aggregation of the day.

Paths, each in a fresh process (its own peak RSS), on the same generated day:

- datapair: :func:`engine.lake.scan.scan_lake` (footer pruning + Polars lazy scan) on the lake
  written by :func:`engine.lake.ingest.ingest_parquet`, then :func:`engine.lake.ohlcv.ohlcv` or Polars SQL;
- DuckDB on the same Parquet file (``read_parquet``), the same filters and aggregates;
- databento ``DBNStore.to_df()`` of the DBN file + pandas (``resample`` / ``groupby``): no lake.

``rows`` is the MBO rows in the query's scope (the symbol-day, or the whole day); MB/s is those
rows at 56 bytes (their DBN size) per second. Lake paths: warm-up, then the median of
``--trials``; databento decodes once (tens of seconds) and both of its queries reuse the frame,
so its time is decode + query. Target: datapair one symbol-day OHLCV <= 300 ms.

Usage: ``python bench/bench_query.py [--records 20000000] [--trials 5] [--symbol NVDA]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CACHE, generated_day, peak_rss_mib, print_table, run_child

DATE = dt.date(2025, 10, 22)
NEXT = DATE + dt.timedelta(days=1)
RECORD_BYTES = 56
AGG_SQL = (
    "SELECT symbol, count(*) AS n, sum(CASE WHEN action = 'T' THEN 1 ELSE 0 END) AS trades, "
    "sum(CASE WHEN action = 'T' THEN size ELSE 0 END) AS volume, "
    "sum(CASE WHEN action = 'T' THEN price * size ELSE 0 END) / sum(CASE WHEN action = 'T' THEN size ELSE 0 END) AS vwap "
    "FROM df GROUP BY symbol ORDER BY symbol"
)
DUCK_OHLCV = (
    "SELECT symbol, time_bucket(INTERVAL '1 minute', ts_event) AS ts, arg_min(price, ts_event) AS open, "
    "max(price) AS high, min(price) AS low, arg_max(price, ts_event) AS close, sum(size) AS volume, "
    "count(*) AS trades, sum(price * size) / sum(size) AS vwap FROM read_parquet(?) "
    "WHERE symbol = ? AND action = 'T' AND ts_recv >= ? AND ts_recv < ? GROUP BY ALL ORDER BY 1, 2"
)
LABELS = {
    "ours": "datapair scan_lake + Polars",
    "duckdb": "DuckDB read_parquet on the lake",
    "databento": "databento to_df() + pandas",
}


def lake_for(day: Path) -> Path:
    """The lake of ``day`` (written once, reused)."""
    from engine.lake.ingest import ingest_parquet

    out = CACHE / f"lake-{day.name.removesuffix('.dbn.zst')}"
    if not (out / f"mbo_{DATE}.parquet").exists():
        print(f"ingesting {day.name} -> {out}", file=sys.stderr)
        s = ingest_parquet([day], out, jobs=1)
        if s.failed:
            raise RuntimeError(f"ingest failed: {s.failed}")
    return out


def _median(fn, trials: int) -> tuple[object, float]:
    fn()  # warm up (file cache, Numba/Polars/DuckDB first-call costs)
    times, result = [], None
    for _ in range(trials):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def child(path: str, day: Path, lake: Path, symbol: str, trials: int) -> dict:
    import polars as pl

    day_file = str(lake / f"mbo_{DATE}.parquet")
    out: dict[str, dict] = {}
    if path == "ours":
        from engine.lake.ohlcv import ohlcv
        from engine.lake.query import run_query
        from engine.lake.scan import scan_lake

        bars, secs = _median(
            lambda: ohlcv(scan_lake(lake, symbol=symbol, start=DATE, end=NEXT), "1m").collect(), trials
        )
        scope = scan_lake(lake, symbol=symbol, start=DATE, end=NEXT).select(pl.len()).collect().item()
        out["ohlcv"] = {
            "seconds": secs,
            "rows": scope,
            "bars": bars.height,
            "volume": int(bars["volume"].sum()),
        }
        agg, secs = _median(lambda: run_query(lake, start=DATE, end=NEXT, sql=AGG_SQL, limit=0), trials)
        out["agg"] = {"seconds": secs, "rows": int(agg["n"].sum()), "volume": int(agg["volume"].sum())}
    elif path == "duckdb":
        import duckdb

        con = duckdb.connect()
        lo = dt.datetime(DATE.year, DATE.month, DATE.day, tzinfo=dt.UTC)
        hi = lo + dt.timedelta(days=1)
        bars, secs = _median(
            lambda: con.execute(DUCK_OHLCV, [day_file, symbol, lo, hi]).to_arrow_table(), trials
        )
        scope = con.execute(
            "SELECT count(*) FROM read_parquet(?) WHERE symbol = ?", [day_file, symbol]
        ).fetchone()[0]
        out["ohlcv"] = {
            "seconds": secs,
            "rows": scope,
            "bars": bars.num_rows,
            "volume": int(pl.from_arrow(bars)["volume"].sum()),
        }
        sql = AGG_SQL.replace("FROM df", "FROM read_parquet(?) WHERE ts_recv >= ? AND ts_recv < ?")
        agg, secs = _median(lambda: con.execute(sql, [day_file, lo, hi]).to_arrow_table(), trials)
        a = pl.from_arrow(agg)
        out["agg"] = {"seconds": secs, "rows": int(a["n"].sum()), "volume": int(a["volume"].sum())}
    else:
        import warnings

        import databento as db

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = db.DBNStore.from_file(day).to_df()
        decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        t = (
            df[(df["symbol"] == symbol) & (df["action"] == "T")]
            .set_index("ts_event")
            .sort_index(kind="stable")
        )
        t["notional"] = t["price"] * t["size"]
        r = t.resample("1min")
        bars = r["price"].ohlc().join(r.agg({"size": "sum", "notional": "sum", "action": "count"}))
        bars = bars[bars["action"] > 0]
        bars["vwap"] = bars["notional"] / bars["size"]
        secs = time.perf_counter() - t0
        scope = int((df["symbol"] == symbol).sum())
        out["ohlcv"] = {
            "seconds": decode + secs,
            "rows": scope,
            "bars": len(bars),
            "volume": int(bars["size"].sum()),
        }
        t0 = time.perf_counter()
        tr = df["action"] == "T"
        df["t_size"] = df["size"].where(tr, 0)
        df["t_notional"] = (df["price"] * df["size"]).where(tr, 0.0)
        g = (
            df.assign(t=tr)
            .groupby("symbol")
            .agg(
                n=("size", "size"),
                trades=("t", "sum"),
                volume=("t_size", "sum"),
                notional=("t_notional", "sum"),
            )
        )
        g["vwap"] = g["notional"] / g["volume"]
        secs = time.perf_counter() - t0
        out["agg"] = {"seconds": decode + secs, "rows": int(g["n"].sum()), "volume": int(g["volume"].sum())}
    for r in out.values():
        r["peak_rss_mib"] = peak_rss_mib()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=20_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--symbol", default="NVDA")
    p.add_argument(
        "--paths", default="ours,duckdb,databento", help="comma-separated subset of ours,duckdb,databento"
    )
    p.add_argument(
        "--child", nargs=5, metavar=("PATH", "DAY", "LAKE", "SYMBOL", "TRIALS"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.child:
        path, day, lake, symbol, trials = args.child
        print(json.dumps(child(path, Path(day), Path(lake), symbol, int(trials))))
        return 0
    day = generated_day(args.records, args.seed, DATE.isoformat())
    lake = lake_for(day)
    results: dict[str, dict] = {}
    for path in args.paths.split(","):
        print(f"running {path} ...", file=sys.stderr)
        results[path] = run_child(Path(__file__), path, str(day), str(lake), args.symbol, str(args.trials))
    for query, title in (
        ("ohlcv", f"OHLCV 1m, {args.symbol}, one day ({args.records:,}-record day; rows = the symbol-day)"),
        ("agg", f"per-symbol count/trades/volume/vwap over the whole day ({args.records:,} records)"),
    ):
        rows = []
        for path, res in results.items():
            r = res[query]
            rows.append(
                {
                    "name": LABELS[path],
                    "rows": r["rows"],
                    "seconds": r["seconds"],
                    "rows_per_s": r["rows"] / r["seconds"],
                    "mb_per_s": r["rows"] * RECORD_BYTES / r["seconds"] / 1e6,
                    "peak_rss_mib": r["peak_rss_mib"],
                }
            )
        print_table(title, rows, baseline=LABELS["databento"] if "databento" in results else rows[0]["name"])
        checks = {path: (res[query]["volume"], res[query].get("bars")) for path, res in results.items()}
        agree = len(set(checks.values())) == 1
        print(f"check (volume, bars) per path: {checks} -> {'agree' if agree else 'DIFFER'}")
    if "ours" in results:
        ms = results["ours"]["ohlcv"]["seconds"] * 1000
        print(
            f"\ntarget: one symbol-day OHLCV <= 300 ms: datapair {ms:.0f} ms -> {'met' if ms <= 300 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
