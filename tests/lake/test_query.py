"""Issue 5: querying the lake with Polars (filters, SQL, OHLCV, formats, pushdown, errors)."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

from engine.errors import QueryError
from engine.lake.ingest import ingest_parquet
from engine.lake.ohlcv import BAR_COLUMNS, ohlcv, parse_interval
from engine.lake.options import ParquetOptions
from engine.lake.query import format_frame, run_query
from engine.lake.scan import ScanRun, plan_scan, scan_lake
from engine.query import main
from tests.support.oracle import dbn_store

DATE = dt.date(2025, 10, 22)
NEXT = DATE + dt.timedelta(days=1)
SYMBOLS = ("NVDA", "AAPL", "BRN FMJ0024!", "BRK_B")
SMALL_GROUPS = ParquetOptions(stripe_rows=16_384, row_group_rows=2_048, max_row_group_rows=4_096)
SQL_EXAMPLE = "SELECT action, count(*) AS n, sum(size) AS volume FROM df GROUP BY action ORDER BY n DESC"
NS = 1_000_000_000


@pytest.fixture(scope="module")
def day(make_day) -> Path:
    return make_day(records=60_000, symbols=SYMBOLS, date=DATE.isoformat(), seed=5)


@pytest.fixture(scope="module")
def lake(day: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Day files only, small row groups so pruning has something to prune."""
    out = tmp_path_factory.mktemp("lake")
    s = ingest_parquet([day], out, jobs=1, options=SMALL_GROUPS)
    assert s.rows == 60_000 and not s.failed
    return out


@pytest.fixture(scope="module")
def lake_by_symbol(day: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per-symbol files only."""
    out = tmp_path_factory.mktemp("lake_sym")
    ingest_parquet([day], out, jobs=1, by_symbol=True, day_files=False, options=SMALL_GROUPS)
    return out


@pytest.fixture(scope="module")
def oracle(day: Path) -> pd.DataFrame:
    """databento's own decoding of the source day, with symbols mapped."""
    df = dbn_store(day).to_df(map_symbols=True).reset_index()
    assert len(df) == 60_000
    return df


def reference_ohlcv(df: pd.DataFrame, freq: str, tz: str | None) -> pd.DataFrame:
    """Plain pandas OHLCV over databento's frame: trades (action T), open/close by arrival order."""
    t = df[(df["action"] == "T") & df["price"].notna()].copy()
    ts = t["ts_event"] if tz is None else t["ts_event"].dt.tz_convert(tz)
    t["bar"] = ts.dt.floor(freq)
    t = t.sort_values(["symbol", "ts_event", "ts_recv", "sequence"], kind="stable")
    t["notional"] = t["price"] * t["size"]
    g = t.groupby(["symbol", "bar"], sort=True)
    out = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["size"].sum().astype("int64"),
            "trades": g.size().astype("int64"),
            "vwap": g["notional"].sum() / g["size"].sum(),
        }
    ).reset_index()
    return out


@pytest.mark.parametrize(
    ("interval", "freq", "tz"),
    [("1m", "1min", None), ("30s", "30s", None), ("1h", "1h", "America/New_York"), ("1d", "1D", "America/New_York"),
     ("15m", "15min", "Asia/Kolkata")],
)  # fmt: skip
def test_ohlcv_matches_reference_from_databento(lake: Path, oracle: pd.DataFrame, interval, freq, tz) -> None:
    got = run_query(lake, start=DATE, end=NEXT, interval=interval, tz=tz, limit=0)
    assert got.columns == list(BAR_COLUMNS)
    ref = reference_ohlcv(oracle, freq, tz)
    assert got.height == len(ref) > 0
    assert got["symbol"].to_list() == ref["symbol"].tolist()
    got_ts = got["ts"].dt.convert_time_zone("UTC").dt.epoch("ns").to_numpy()
    ref_ts = ref["bar"].dt.tz_convert("UTC").astype("int64").to_numpy()
    np.testing.assert_array_equal(got_ts, ref_ts)
    for c in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(got[c].to_numpy(), ref[c].to_numpy(), err_msg=c)
    np.testing.assert_array_equal(got["volume"].to_numpy(), ref["volume"].to_numpy())
    np.testing.assert_array_equal(got["trades"].to_numpy(), ref["trades"].to_numpy())
    np.testing.assert_allclose(got["vwap"].to_numpy(), ref["vwap"].to_numpy(), rtol=1e-12)
    if tz is not None:
        assert got.schema["ts"] == pl.Datetime("ns", tz)


def test_ohlcv_one_symbol_and_daily_bar_aligned_to_local_midnight(lake: Path, oracle: pd.DataFrame) -> None:
    bars = ohlcv(scan_lake(lake, symbol="NVDA"), "1d", tz="America/New_York").collect()
    assert bars.height == 1
    assert bars["ts"][0] == dt.datetime(2025, 10, 22, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    t = oracle[(oracle["symbol"] == "NVDA") & (oracle["action"] == "T")]
    assert bars["trades"][0] == len(t)
    assert bars["volume"][0] == int(t["size"].sum())
    assert bars["high"][0] == t["price"].max()


def test_sql_example_matches_databento(lake: Path, oracle: pd.DataFrame) -> None:
    got = run_query(lake, sql=SQL_EXAMPLE, limit=0)
    ref = oracle.groupby("action").agg(n=("size", "size"), volume=("size", "sum")).reset_index()
    ref = ref.sort_values("n", ascending=False)
    assert got["action"].cast(pl.String).to_list() == ref["action"].tolist()
    assert got["n"].to_list() == ref["n"].tolist()
    assert got["volume"].to_list() == ref["volume"].tolist()


def test_sql_runs_after_symbol_and_date_filters(lake: Path, oracle: pd.DataFrame) -> None:
    got = run_query(
        lake,
        symbol="BRN FMJ0024!",
        start=DATE,
        end=NEXT,
        sql="SELECT count(*) AS n, min(symbol) AS s FROM df",
    )
    assert got["n"][0] == int((oracle["symbol"] == "BRN FMJ0024!").sum())
    assert got["s"].cast(pl.String)[0] == "BRN FMJ0024!"


def test_sql_on_bars(lake: Path) -> None:
    bars = run_query(lake, symbol="NVDA", interval="1h", limit=0)
    got = run_query(lake, symbol="NVDA", interval="1h", sql="SELECT sum(trades) AS t, max(high) AS h FROM df")
    assert got["t"][0] == bars["trades"].sum()
    assert got["h"][0] == bars["high"].max()


def test_rows_and_values_equal_databento(lake: Path, oracle: pd.DataFrame) -> None:
    got = run_query(lake, symbol="AAPL", start=DATE, end=NEXT, limit=0).sort("ts_recv", "sequence")
    ref = oracle[oracle["symbol"] == "AAPL"].sort_values(["ts_recv", "sequence"])
    assert got.height == len(ref)
    np.testing.assert_array_equal(
        got["ts_event"].dt.epoch("ns").to_numpy(), ref["ts_event"].astype("int64").to_numpy()
    )
    np.testing.assert_array_equal(got["order_id"].to_numpy().view(np.uint64), ref["order_id"].to_numpy())
    np.testing.assert_array_equal(got["price"].to_numpy(), ref["price"].to_numpy())
    assert got["action"].cast(pl.String).to_list() == ref["action"].tolist()


def test_limit_default_and_zero(lake: Path) -> None:
    assert run_query(lake).height == 20
    assert run_query(lake, limit=7).height == 7
    assert run_query(lake, limit=0).height == 60_000


def test_per_symbol_files_agree_with_day_files(lake: Path, lake_by_symbol: Path) -> None:
    for sym in SYMBOLS:
        a = run_query(lake, symbol=sym, start=DATE, end=NEXT, limit=0).sort("ts_recv", "sequence")
        b = run_query(lake_by_symbol, symbol=sym, start=DATE, end=NEXT, limit=0).sort("ts_recv", "sequence")
        assert a.height > 0
        assert a.with_columns(pl.col("symbol").cast(pl.String)).equals(
            b.with_columns(pl.col("symbol").cast(pl.String))
        )
    # Without --symbol, a lake of per-symbol files gives every row once.
    assert run_query(lake_by_symbol, limit=0).height == 60_000


def test_both_kinds_of_files_never_double_count(lake: Path, lake_by_symbol: Path, tmp_path: Path) -> None:
    both = tmp_path / "both"
    shutil.copytree(lake, both)
    for f in lake_by_symbol.glob("mbo_*.parquet"):
        shutil.copy(f, both / f.name)
    assert run_query(both, limit=0).height == 60_000
    plan = plan_scan(both, symbol="NVDA")
    assert [f.symbol for f in plan.files] == ["NVDA"]
    assert run_query(both, symbol="NVDA", limit=0).height == run_query(lake, symbol="NVDA", limit=0).height


def test_day_filter_on_ts_recv(lake: Path, tmp_path: Path) -> None:
    assert run_query(lake, start=DATE, end=NEXT, limit=0).height == 60_000
    with pytest.raises(QueryError, match="no lake files"):
        run_query(lake, start=NEXT, end=NEXT + dt.timedelta(days=1))
    # A file named for another day holding this day's rows: rows are filtered on ts_recv.
    odd = tmp_path / "odd"
    odd.mkdir()
    shutil.copy(lake / "mbo_2025-10-22.parquet", odd / "mbo_2025-10-23.parquet")
    assert run_query(odd, start=NEXT, end=NEXT + dt.timedelta(days=1), limit=0).height == 0


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_every_format_parses_back(lake: Path, fmt: str) -> None:
    df = run_query(lake, symbol="NVDA", limit=50).with_columns(
        pl.col("symbol", "action", "side").cast(pl.String)
    )
    text = format_frame(df, fmt)
    if fmt == "csv":
        back = pl.read_csv(io.StringIO(text), schema_overrides={"order_id": pl.Int64, "price_raw": pl.Int64})
        assert back.columns == df.columns
        assert back.height == df.height
        for c in ("ts_event", "ts_recv"):
            ts = pl.Series(pd.to_datetime(back[c].to_list(), utc=True).as_unit("ns").asi8)
            assert ts.to_list() == df[c].dt.epoch("ns").to_list()
        for c in ("order_id", "price_raw", "size", "sequence", "symbol", "action", "side"):
            assert back[c].cast(df.schema[c]).to_list() == df[c].to_list(), c
        np.testing.assert_array_equal(back["price"].to_numpy(), df["price"].to_numpy())
    elif fmt == "json":
        rows = json.loads(text)
        assert len(rows) == df.height and list(rows[0]) == df.columns
        for row, ref in zip(rows, df.iter_rows(named=True), strict=True):
            for c in ("order_id", "price_raw", "size", "symbol", "action", "side", "sequence"):
                assert row[c] == ref[c], c
            assert row["price"] == (None if np.isnan(ref["price"]) else ref["price"])
        for c in ("ts_event", "ts_recv"):
            assert [pd.Timestamp(r[c]).value for r in rows] == df[c].dt.epoch("ns").to_list(), c
    else:
        lines = text.splitlines()
        assert lines[0] == f"shape: ({df.height}, {df.width})"
        body = [ln for ln in lines if ln.startswith("│") and "NVDA" in ln]
        assert len(body) == df.height
        cells = [c.strip() for c in body[0].strip("│").split("┆")]
        assert cells[df.columns.index("order_id")] == str(df["order_id"][0])
        assert cells[df.columns.index("symbol")] == "NVDA"


def test_cli_formats(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(lake), "--date", "2025-10-22", "--sql", SQL_EXAMPLE, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sum(r["n"] for r in rows) == 60_000
    assert (
        main(
            [
                "--dir",
                str(lake),
                "--symbol",
                "NVDA",
                "--ohlcv",
                "5m",
                "--tz",
                "America/New_York",
                "--format",
                "csv",
                "--limit",
                "0",
            ]
        )
        == 0
    )
    back = pl.read_csv(io.StringIO(capsys.readouterr().out))
    assert back.columns == list(BAR_COLUMNS)
    assert back["ts"][0].startswith("2025-10-22T") and back["ts"][0].endswith("-0400")
    assert set(back["symbol"].to_list()) == {"NVDA"}


def corrupt_row_groups(path: Path, keep: set[int]) -> None:
    """Overwrite the column chunks of every row group not in ``keep`` with zeros (footer intact)."""
    md = pq.read_metadata(path)
    with open(path, "r+b") as f:
        for g in range(md.num_row_groups):
            if g in keep:
                continue
            rg = md.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
                f.seek(start)
                f.write(b"\0" * col.total_compressed_size)


def test_pushdown_one_symbol_one_hour_reads_few_row_groups(lake: Path, tmp_path: Path) -> None:
    lo = int(dt.datetime(2025, 10, 22, 15, tzinfo=dt.UTC).timestamp()) * NS
    window = (lo, lo + 3600 * NS)
    plan = plan_scan(lake, symbol="AAPL", ts_event=window)
    assert plan.row_groups_total >= 15
    assert 0 < plan.row_groups_read <= plan.row_groups_total // 5
    assert plan.rows_read <= plan.rows_total // 5
    expected = pl.read_parquet(lake / "mbo_2025-10-22.parquet").filter(
        (pl.col("symbol") == "AAPL")
        & (pl.col("ts_event").dt.epoch("ns") >= window[0])
        & (pl.col("ts_event").dt.epoch("ns") < window[1])
    )
    assert expected.height > 0
    # Proof that nothing else is read: the other row groups are zeroed out in a copy.
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(lake / "mbo_2025-10-22.parquet", broken / "mbo_2025-10-22.parquet")
    md = pq.read_metadata(broken / "mbo_2025-10-22.parquet")
    offsets = np.cumsum([0] + [md.row_group(g).num_rows for g in range(md.num_row_groups)])
    needed = {
        g for r in plan.runs for g in range(md.num_row_groups)
        if r.rows is not None and offsets[g] >= r.first and offsets[g + 1] <= r.first + r.rows
    }  # fmt: skip
    assert len(needed) == plan.row_groups_read
    corrupt_row_groups(broken / "mbo_2025-10-22.parquet", needed)
    got = scan_lake(broken, symbol="AAPL", ts_event=window).collect()
    assert got.equals(expected)
    with pytest.raises(pl.exceptions.PolarsError):  # the control: a full read does hit the zeros
        pl.read_parquet(broken / "mbo_2025-10-22.parquet")


@pytest.mark.parametrize("symbol", [None, "NVDA", "BRK_B", "ZZZ"])
@pytest.mark.parametrize("hours", [None, (4, 5), (13, 15), (8, 8.001), (23, 30)])
def test_pruned_scan_equals_a_full_filter(lake: Path, symbol: str | None, hours) -> None:
    window = None
    if hours is not None:
        base = int(dt.datetime(2025, 10, 22, tzinfo=dt.UTC).timestamp()) * NS
        window = (base + int(hours[0] * 3600 * NS), base + int(hours[1] * 3600 * NS))
    plan = plan_scan(lake, symbol=symbol, start=DATE, end=NEXT, ts_event=window)
    got = scan_lake(lake, symbol=symbol, start=DATE, end=NEXT, ts_event=window).collect()
    full = pl.read_parquet(lake / "mbo_2025-10-22.parquet")
    cond = pl.lit(True)
    if symbol is not None:
        cond &= pl.col("symbol") == symbol
    if window is not None:
        ev = pl.col("ts_event").dt.epoch("ns")
        cond &= (ev >= window[0]) & (ev < window[1])
    assert got.equals(full.filter(cond))
    if symbol is not None or window is not None:
        assert plan.rows_read < plan.rows_total
    if symbol in ("NVDA", "BRK_B") and hours is None:
        assert any(r.exact for r in plan.runs)  # a busy symbol's own row groups need no row filter


def test_no_pushdown_needed_reads_whole_files(lake: Path) -> None:
    plan = plan_scan(lake, start=DATE, end=NEXT)
    assert plan.runs == [ScanRun(lake / "mbo_2025-10-22.parquet", 0, None, exact=True)]
    assert plan.row_groups_read == plan.row_groups_total


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dir", "{missing}"], "does not exist"),
        (["--dir", "{empty}"], "no lake files"),
        (["--dir", "{lake}", "--date", "2025-10-23"], "no lake files in"),
        (["--dir", "{lake}", "--symbol", "ZZZZ"], "no rows for symbol 'ZZZZ'"),  # like the service's 404
        (["--dir", "{lake}", "--sql", "SELEC * FROM df"], "SQL query failed: syntax error"),
        (["--dir", "{lake}", "--sql", "SELECT nope FROM df"], "nope"),
        (["--dir", "{lake}", "--ohlcv", "1x"], "bad OHLCV interval '1x'"),
        (["--dir", "{lake}", "--ohlcv", "0m"], "bad OHLCV interval '0m'"),
        (["--dir", "{lake}", "--ohlcv", "1m", "--tz", "Mars/Base"], "unknown time zone 'Mars/Base'"),
    ],
)
def test_cli_errors_are_clear(
    lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args, message
) -> None:
    (tmp_path / "empty").mkdir()
    fill = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "lake": lake}
    rc = main([a.format(**fill) for a in args])
    err = capsys.readouterr()
    assert rc == 1
    assert err.err.startswith("datapair-query: error: ")
    assert message in err.err
    assert "Traceback" not in err.err
    assert len(err.err.strip().splitlines()) == 1


def test_cli_usage_errors(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--dir", str(lake), "--date", "2025-10-22", "--end", "2025-10-23"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--dir", str(lake), "--limit", "-1"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "exclusive" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["1s", "30s", "1m", "15m", "4h", "1d"])
def test_parse_interval_accepts(text: str) -> None:
    assert parse_interval(text) == text


@pytest.mark.parametrize("text", ["", "m", "0s", "-1m", "1mo", "1w", "1.5h", "1 m", "1M"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(QueryError):
        parse_interval(text)
