"""Issue 6: DBN day files -> the Parquet lake, checked against databento's own decoding.

Every test reads the lake back (pyarrow and Polars) and compares every column of every row with
``databento.DBNStore`` (``to_ndarray`` for the fields, ``to_df(map_symbols=True)`` for symbols).
Rows are compared as multisets (the lake stores them clustered by symbol, then ts_event).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import wait
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import zstandard

from engine.dbn.columns import COLUMNS, MBO_SCHEMA, ColumnBlock, iter_column_blocks
from engine.ingest import main
from engine.inputs import find_inputs, read_symbol_filter
from engine.lake import sink as sink_module
from engine.lake.encode import ParquetOptions, StripeJob, ThreadEncoder
from engine.lake.ingest import ingest_parquet, is_complete
from engine.lake.layout import SourceEntry, list_lake, read_lake_info
from engine.lake.sink import ParquetSink
from engine.pipeline.sinks import FileSink, SinkResult
from tests.support.dbn_bytes import write_midnight_file
from tests.support.hooks import BLOCK_ENCODER_ON_DAY, patched_env
from tests.support.oracle import dbn_store
from tests.support.samples import MBO_SAMPLES, ROOT, sample_path

SYMBOLS = ("NVDA", "AAPL", "MSFT", "TSLA", "AMD")
DATE = "2025-10-22"
# Small stripes and row groups: a few thousand rows already make many parts and row groups.
SMALL = ParquetOptions(stripe_rows=8_192, row_group_rows=1_024, max_row_group_rows=2_048)
UNDEF = 2**63 - 1
_KEY = ["ts_recv", "sequence", "ts_event", "order_id", "instrument_id", "price_raw", "size", "flags",
        "channel_id", "publisher_id", "ts_in_delta", "action", "side", "symbol"]  # fmt: skip


# -- oracle and readers ------------------------------------------------------------------------------


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in one canonical order (so two multisets of rows compare equal)."""
    return frame[list(COLUMNS)].sort_values(_KEY, kind="stable").reset_index(drop=True)


def oracle(path: Path, symbols: set[str] | None = None) -> pd.DataFrame:
    """databento's decoding of ``path`` as the canonical columns (int64 ns, exact ints, NaN prices)."""
    store = dbn_store(path)
    kwargs = {"schema": "mbo"} if store.schema is None else {}
    rec = np.asarray(store.to_ndarray(**kwargs))
    sym = store.to_df(map_symbols=True, price_type="fixed", pretty_ts=False, **kwargs)["symbol"].to_numpy()
    raw = rec["price"].astype(np.int64)
    price = np.where(raw == UNDEF, np.nan, raw / 1e9)
    f = pd.DataFrame(
        {
            "ts_event": rec["ts_event"].astype(np.int64),
            "symbol": sym.astype(object),
            "instrument_id": rec["instrument_id"].view(np.int32),
            "publisher_id": rec["publisher_id"].astype(np.int16),
            "order_id": rec["order_id"].view(np.int64),
            "price_raw": raw,
            "price": price,
            "size": rec["size"].view(np.int32),
            "flags": rec["flags"].astype(np.int16),
            "channel_id": rec["channel_id"].astype(np.int16),
            "action": rec["action"].astype("U1").astype(object),
            "side": rec["side"].astype("U1").astype(object),
            "ts_recv": rec["ts_recv"].astype(np.int64),
            "ts_in_delta": rec["ts_in_delta"].astype(np.int32),
            "sequence": rec["sequence"].astype(np.int64),
        }
    )
    if symbols is not None:
        f = f[f["symbol"].isin(symbols)]
    return canonical(f)


def frame_from_arrow(table: pa.Table) -> pd.DataFrame:
    assert table.schema.remove_metadata() == MBO_SCHEMA
    cols = {}
    for name in COLUMNS:
        c = table.column(name)
        if pa.types.is_dictionary(c.type):
            cols[name] = np.array(c.to_pylist(), dtype=object)
        elif pa.types.is_timestamp(c.type):
            cols[name] = c.cast(pa.int64()).to_numpy()
        else:
            cols[name] = c.to_numpy()
    return canonical(pd.DataFrame(cols))


def frame_from_polars(df: pl.DataFrame) -> pd.DataFrame:
    assert df.schema["ts_event"] == pl.Datetime("ns", "UTC")
    assert df.schema["ts_recv"] == pl.Datetime("ns", "UTC")
    assert df.schema["instrument_id"] == pl.Int32 and df.schema["sequence"] == pl.Int64
    cols = {}
    for name in COLUMNS:
        s = df[name]
        if s.dtype in (pl.Categorical, pl.Enum, pl.String):
            cols[name] = np.array(s.cast(pl.String).to_list(), dtype=object)
        elif isinstance(s.dtype, pl.Datetime):
            cols[name] = s.dt.epoch("ns").to_numpy()
        else:
            cols[name] = s.to_numpy()
    return canonical(pd.DataFrame(cols))


def lake_paths(lake: Path, by_symbol: bool = False) -> list[Path]:
    return [f.path for f in list_lake(lake, by_symbol=by_symbol)]


def assert_lake_equals(lake: Path, expected: pd.DataFrame, by_symbol: bool = False) -> None:
    """The lake read with pyarrow and with Polars holds exactly ``expected``'s rows."""
    paths = lake_paths(lake, by_symbol)
    assert paths, f"no lake files in {lake}"
    table = pa.concat_tables([pq.read_table(p) for p in paths]) if paths else None
    got = frame_from_arrow(table)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    got_pl = frame_from_polars(pl.concat([pl.read_parquet(p) for p in paths], how="vertical_relaxed"))
    pd.testing.assert_frame_equal(got_pl, expected, check_dtype=False)
    for p in paths:
        info = read_lake_info(p)
        assert info.complete and info.rows == pq.read_metadata(p).num_rows


def assert_clustered(path: Path) -> None:
    """Inside every row group rows are ordered by symbol, each symbol's rows in feed order (ts_recv
    never goes back, ties keep the source's sequence order); statistics on symbol and ts_event."""
    pf = pq.ParquetFile(path)
    for g in range(pf.num_row_groups):
        t = pf.read_row_group(g, columns=["symbol", "ts_recv", "sequence"])
        sym = np.array(t.column("symbol").to_pylist(), dtype=object).astype(str)
        recv = t.column("ts_recv").cast(pa.int64()).to_numpy()
        assert (sym[1:] >= sym[:-1]).all(), f"row group {g} of {path.name} is not ordered by symbol"
        same = sym[1:] == sym[:-1]
        assert (recv[1:][same] >= recv[:-1][same]).all(), f"row group {g} of {path.name}: feed order broken"
        rg = pf.metadata.row_group(g)
        for name in ("symbol", "ts_event", "ts_recv"):
            st = rg.column(COLUMNS.index(name)).statistics
            assert st is not None and st.has_min_max
        st = rg.column(COLUMNS.index("symbol")).statistics  # written by the assembler, not pyarrow
        assert (st.min, st.max, st.null_count) == (min(sym), max(sym), 0)


def no_temps(lake: Path) -> bool:
    return not [p for p in lake.iterdir() if p.name.startswith(".mbo_")]


# -- generated files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def day(make_day) -> Path:
    return make_day(records=30_000, symbols=SYMBOLS, date=DATE, seed=11)


@pytest.fixture(scope="module")
def day_oracle(day: Path) -> pd.DataFrame:
    return oracle(day)


@pytest.fixture(scope="module")
def midnight_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_midnight_file(tmp_path_factory.mktemp("midnight"), SYMBOLS)


# -- the lake equals the source ----------------------------------------------------------------------


@pytest.mark.parametrize("name", MBO_SAMPLES, ids=lambda s: s.split("/", 1)[1])
def test_samples_equal_databento(name: str, tmp_path: Path) -> None:
    path = sample_path(name)
    s = ingest_parquet([path], tmp_path / "lake", jobs=1)
    assert s.ok, s.failed
    expected = oracle(path)
    assert s.rows == len(expected)
    assert_lake_equals(tmp_path / "lake", expected)


def test_all_samples_together_share_days(tmp_path: Path) -> None:
    """Nine sources, two UTC days, two workers: each day file holds every source's rows."""
    paths = [sample_path(n) for n in MBO_SAMPLES]
    s = ingest_parquet(paths, tmp_path, jobs=2)
    assert s.ok, s.failed
    expected = canonical(pd.concat([oracle(p) for p in paths]))
    assert s.rows == len(expected)
    assert_lake_equals(tmp_path, expected)
    infos = [read_lake_info(p) for p in lake_paths(tmp_path)]
    assert sum(len(i.sources) for i in infos) == len(paths)
    assert ingest_parquet(paths, tmp_path, jobs=2).skipped == len(paths)
    # re-ingesting one source replaces its own rows and keeps the others' (copied, not decoded)
    s = ingest_parquet(paths[3:5], tmp_path, force=True)
    assert s.ok and s.rows == sum(len(oracle(p)) for p in paths[3:5])
    assert_lake_equals(tmp_path, expected)


@pytest.mark.parametrize("damage", ["truncated", "incomplete"])
def test_a_damaged_day_file_is_never_silently_replaced(tmp_path: Path, damage: str) -> None:
    """Rewriting a day whose file cannot be read would drop the other sources' rows: refused."""
    paths = [sample_path(n) for n in MBO_SAMPLES if "databento-dbn/test_data.mbo.v" in n]  # share a day
    assert ingest_parquet(paths, tmp_path, jobs=1).ok
    (day_file,) = lake_paths(tmp_path)
    if damage == "truncated":
        data = day_file.read_bytes()
        day_file.write_bytes(data[: len(data) // 2])
    else:  # a footer whose datapair.rows disagrees with the rows it holds
        t = pq.read_table(day_file)
        md = dict(pq.read_metadata(day_file).metadata)
        md[b"datapair.rows"] = str(t.num_rows + 1).encode()
        pq.write_table(t.replace_schema_metadata(md), day_file)
    before = day_file.read_bytes()
    s = ingest_parquet(paths[:1], tmp_path, force=False)
    assert not s.ok and str(day_file) in s.failed[0][1] and "--force" in s.failed[0][1]
    assert day_file.read_bytes() == before  # untouched
    s = ingest_parquet(paths, tmp_path, force=True)  # every source of the day, as the message says
    assert s.ok
    assert_lake_equals(tmp_path, canonical(pd.concat([oracle(p) for p in paths])))


@pytest.mark.parametrize("jobs", [1, 2])
def test_generated_day_equals_databento(
    day: Path, day_oracle: pd.DataFrame, tmp_path: Path, jobs: int
) -> None:
    s = ingest_parquet([day], tmp_path, jobs=jobs, options=SMALL)
    assert s.ok and s.rows == 30_000 and s.files == 1 and s.bytes == day.stat().st_size
    assert [Path(o).name for o in s.outputs] == [f"mbo_{DATE}.parquet"]
    assert_lake_equals(tmp_path, day_oracle)
    path = tmp_path / f"mbo_{DATE}.parquet"
    assert pq.read_metadata(path).num_row_groups > 15  # many stripes, stitched into one file
    assert_clustered(path)
    assert no_temps(tmp_path)


def assert_feed_order(table: pa.Table, source: pd.DataFrame, symbol: str) -> None:
    """``symbol``'s rows of ``table`` are exactly its rows of the source file, in the file's order."""
    mine = table.filter(pc.equal(table.column("symbol").cast(pa.string()), symbol))
    theirs = source[source["symbol"] == symbol]
    for col in ("sequence", "order_id", "ts_event", "ts_recv", "action"):
        got = mine.column(col)
        got = got.cast(pa.int64()) if pa.types.is_timestamp(got.type) else got
        got = got.cast(pa.string()) if pa.types.is_dictionary(got.type) else got
        assert got.to_pylist() == theirs[col].tolist(), (symbol, col)


@pytest.mark.parametrize("name", ["generated", "midnight"])
def test_each_symbols_rows_keep_feed_order(name: str, day: Path, midnight_file: Path, tmp_path: Path) -> None:
    """The lake keeps the file's order per symbol (ts_event goes back in it: CME snapshots)."""
    src = day if name == "generated" else midnight_file
    s = ingest_parquet([src], tmp_path, options=SMALL)
    assert s.ok
    source = oracle(src)  # the file's order
    lake = pa.concat_tables([pq.read_table(p) for p in lake_paths(tmp_path)])  # days in order
    for symbol in SYMBOLS:
        assert_feed_order(lake, source, symbol)
    if name == "midnight":  # the snapshot's ts_event lies days before the rows it follows
        ts = source[source["symbol"] == SYMBOLS[0]]["ts_event"].to_numpy()
        assert (np.diff(ts) < 0).any()


def test_default_layout(day: Path, day_oracle: pd.DataFrame, tmp_path: Path) -> None:
    """Default options: zstd, dictionary symbol/action/side, statistics, footer metadata."""
    s = ingest_parquet([day], tmp_path)
    assert s.ok
    path = tmp_path / f"mbo_{DATE}.parquet"
    assert_lake_equals(tmp_path, day_oracle)
    md = pq.read_metadata(path)
    col = {md.row_group(0).column(i).path_in_schema: md.row_group(0).column(i) for i in range(md.num_columns)}
    zstd = set(ParquetOptions().compressed_columns)
    assert {n for n, c in col.items() if c.compression == "ZSTD"} == zstd  # where zstd pays (README table)
    assert {c.compression for n, c in col.items() if n not in zstd} == {"UNCOMPRESSED"}
    for name in ("symbol", "action", "side"):
        assert any("DICT" in e for e in col[name].encodings)
    info = read_lake_info(path)
    assert info.rows == 30_000 and info.day == DATE and info.symbol is None
    (src,) = info.sources
    assert (src.name, src.size, src.mtime_ns) == (day.name, day.stat().st_size, day.stat().st_mtime_ns)
    assert src.rows_by_day == {DATE: 30_000}
    assert pq.read_schema(path).remove_metadata() == MBO_SCHEMA


def test_midnight_split_and_snapshot_stay_with_ts_recv_day(midnight_file: Path, tmp_path: Path) -> None:
    s = ingest_parquet([midnight_file], tmp_path, jobs=1, options=SMALL)
    assert s.ok, s.failed
    expected = oracle(midnight_file)
    assert_lake_equals(tmp_path, expected)
    days = {f.day.isoformat(): f.path for f in list_lake(tmp_path)}
    assert sorted(days) == ["2025-10-22", "2025-10-23"]
    ns = 86_400 * 10**9
    for d, path in days.items():
        t = pq.read_table(path)
        recv = t.column("ts_recv").cast(pa.int64()).to_numpy()
        want = (dt.date.fromisoformat(d) - dt.date(1970, 1, 1)).days
        assert (recv // ns == want).all()
        assert len(t) == (expected["ts_recv"] // ns == want).sum() == read_lake_info(path).rows
        assert_clustered(path)
    # the snapshot rows are in day 2's file although their ts_event is on 2025-10-20
    snap = pq.read_table(days["2025-10-23"]).column("ts_event").cast(pa.int64()).to_numpy()
    assert (snap // ns == (dt.date(2025, 10, 20) - dt.date(1970, 1, 1)).days).sum() == 300
    md = pq.read_metadata(days["2025-10-23"])
    mins = [md.row_group(g).column(0).statistics.min for g in range(md.num_row_groups)]
    assert min(mins).date() == dt.date(2025, 10, 20)  # found through ts_event statistics


# -- layout: readers prune row groups ----------------------------------------------------------------


def test_one_symbol_one_hour_touches_few_row_groups(make_day, tmp_path: Path) -> None:
    """Stripes make ts_event statistics prune by time; symbol runs make ``symbol`` statistics
    prune by symbol. DuckDB uses both by itself; pyarrow and Polars prune on ts_event but not on
    a dictionary column's statistics, which our readers (query CLI, service) apply from the footer."""
    path = make_day(records=200_000, symbols=SYMBOLS, date=DATE, seed=3)
    assert ingest_parquet([path], tmp_path, options=SMALL).ok
    f = tmp_path / f"mbo_{DATE}.parquet"
    md = pq.read_metadata(f)
    n = md.num_row_groups
    sym_stats = [md.row_group(g).column(COLUMNS.index("symbol")).statistics for g in range(n)]
    assert any(st.min == st.max == "NVDA" for st in sym_stats)  # the busy symbol has its own groups
    lo = pd.Timestamp(f"{DATE} 15:00", tz="UTC")
    hi = lo + pd.Timedelta(hours=1)
    in_hour = (ds.field("ts_event") >= lo) & (ds.field("ts_event") < hi)
    flt = (ds.field("symbol") == "AAPL") & in_hour
    full = pq.read_table(f).filter(flt)
    assert full.num_rows > 0
    # pyarrow: row groups kept by ts_event statistics alone
    (frag,) = ds.dataset(f, format="parquet").get_fragments()
    by_time = frag.split_by_row_group(in_hour)
    assert len(by_time) <= n // 5, (len(by_time), n)
    assert pa.concat_tables([k.to_table(filter=flt) for k in by_time]).num_rows == full.num_rows
    # footer statistics of symbol and ts_event together (what the lake's readers do)
    ts = [md.row_group(g).column(COLUMNS.index("ts_event")).statistics for g in range(n)]
    both = [
        g
        for g in range(n)
        if sym_stats[g].min <= "AAPL" <= sym_stats[g].max and ts[g].max >= lo and ts[g].min < hi
    ]
    assert 0 < len(both) <= n // 20, (len(both), n)
    assert pq.ParquetFile(f).read_row_groups(both).filter(flt).num_rows == full.num_rows
    # Polars reads the same rows
    got = pl.scan_parquet(f).filter(
        (pl.col("symbol") == "AAPL") & pl.col("ts_event").is_between(lo, hi, closed="left")
    )
    assert len(got.collect()) == full.num_rows
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.execute("PRAGMA enable_profiling='json'")
    con.execute("PRAGMA profiling_output=?", [str(tmp_path / "profile.json")])
    q = "SELECT count(*) FROM read_parquet(?) WHERE symbol = 'AAPL' AND ts_event >= ? AND ts_event < ?"
    assert con.execute(q, [str(f), lo.to_pydatetime(), hi.to_pydatetime()]).fetchone()[0] == full.num_rows
    con.execute("PRAGMA disable_profiling")
    prof = json.loads((tmp_path / "profile.json").read_text())
    if "total_row_groups_scanned" in prof:  # DuckDB >= 1.2 reports it
        assert prof["total_row_groups_scanned"] <= n // 20, (prof["total_row_groups_scanned"], n)


# -- filters, per-symbol files -----------------------------------------------------------------------


def test_symbol_filter(day: Path, day_oracle: pd.DataFrame, tmp_path: Path) -> None:
    s = ingest_parquet([day], tmp_path, symbols={"AAPL", "TSLA", "NOPE"}, options=SMALL)
    assert s.ok
    want = canonical(day_oracle[day_oracle["symbol"].isin({"AAPL", "TSLA"})])
    assert s.rows == len(want) > 0
    assert_lake_equals(tmp_path, want)
    assert read_lake_info(tmp_path / f"mbo_{DATE}.parquet").sources[0].filter == ["AAPL", "NOPE", "TSLA"]
    # a different filter is a different run: not skipped
    assert ingest_parquet([day], tmp_path, symbols={"AAPL"}, options=SMALL).skipped == 0
    assert_lake_equals(tmp_path, canonical(day_oracle[day_oracle["symbol"] == "AAPL"]))


def test_symbol_filter_file_and_cli(
    day: Path, day_oracle: pd.DataFrame, tmp_path: Path, monkeypatch, capsys
) -> None:
    flt = tmp_path / "symbols.txt"
    flt.write_text("# the two we trade\nNVDA\n\n  MSFT   # big\n")
    assert read_symbol_filter(flt) == {"NVDA", "MSFT"}
    monkeypatch.setenv("SYMBOL_FILTER", str(flt))
    assert main([str(day), "--parquet", str(tmp_path / "lake"), "--quiet"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("ingest: 1 file, ") and "0 failed" in out.out and out.err == ""
    assert_lake_equals(tmp_path / "lake", canonical(day_oracle[day_oracle["symbol"].isin({"NVDA", "MSFT"})]))
    # --symbols wins over SYMBOL_FILTER
    assert main([str(day), "--parquet", str(tmp_path / "l2"), "-q", "--symbols", "AMD"]) == 0
    assert_lake_equals(tmp_path / "l2", canonical(day_oracle[day_oracle["symbol"] == "AMD"]))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    monkeypatch.setenv("SYMBOL_FILTER", str(empty))
    assert main([str(day), "--parquet", str(tmp_path / "l3"), "-q"]) == 1
    assert "empty.txt" in capsys.readouterr().err


@pytest.mark.parametrize("day_files", [True, False])
def test_by_symbol_files(day: Path, day_oracle: pd.DataFrame, tmp_path: Path, day_files: bool) -> None:
    s = ingest_parquet([day], tmp_path, by_symbol=True, day_files=day_files, options=SMALL)
    assert s.ok
    files = list_lake(tmp_path, by_symbol=True)
    assert sorted(f.symbol for f in files) == sorted(SYMBOLS)
    assert all(f.path.name == f"mbo_{f.symbol}_{DATE}.parquet" for f in files)
    assert_lake_equals(tmp_path, day_oracle, by_symbol=True)
    for f in files:
        info = read_lake_info(f.path)
        assert info.symbol == f.symbol and info.rows == (day_oracle["symbol"] == f.symbol).sum()
        assert_feed_order(pq.read_table(f.path), day_oracle, f.symbol)
    assert bool(list_lake(tmp_path)) == day_files
    assert ingest_parquet([day], tmp_path, by_symbol=True, day_files=day_files, options=SMALL).skipped == 1


# -- reruns ------------------------------------------------------------------------------------------


def test_rerun_skips_exactly_and_force_rewrites(day: Path, day_oracle: pd.DataFrame, tmp_path: Path) -> None:
    assert ingest_parquet([day], tmp_path, options=SMALL).rows == 30_000
    out = tmp_path / f"mbo_{DATE}.parquet"
    inode = out.stat().st_ino
    s = ingest_parquet([day], tmp_path, options=SMALL)
    assert (s.skipped, s.rows, s.outputs) == (1, 0, []) and out.stat().st_ino == inode
    assert is_complete(day, tmp_path)
    s = ingest_parquet([day], tmp_path, force=True, options=SMALL)
    assert (s.skipped, s.rows) == (0, 30_000) and out.stat().st_ino != inode
    assert_lake_equals(tmp_path, day_oracle)
    # a source that changed on disk (new mtime) replaces its own rows, never doubles them
    os.utime(day, ns=(day.stat().st_atime_ns, day.stat().st_mtime_ns + 1))
    try:
        assert not is_complete(day, tmp_path)
        assert ingest_parquet([day], tmp_path, options=SMALL).rows == 30_000
        assert_lake_equals(tmp_path, day_oracle)
    finally:
        os.utime(day, ns=(day.stat().st_atime_ns, day.stat().st_mtime_ns - 1))


def test_incomplete_day_is_not_skipped(midnight_file: Path, tmp_path: Path) -> None:
    """A lost day file (or one with a different row count) makes the source run again."""
    assert ingest_parquet([midnight_file], tmp_path, options=SMALL).ok
    (tmp_path / "mbo_2025-10-23.parquet").unlink()
    assert not is_complete(midnight_file, tmp_path)
    s = ingest_parquet([midnight_file], tmp_path, options=SMALL)
    assert s.skipped == 0 and s.rows == 12_000
    assert_lake_equals(tmp_path, oracle(midnight_file))


def test_killed_run_leaves_no_partial_file_and_rerun_is_exact(
    day: Path, day_oracle: pd.DataFrame, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    script = (
        "import sys; import engine.lake.encode as enc; from engine.lake.ingest import ingest_parquet; "
        "opts = enc.ParquetOptions(stripe_rows=1024, row_group_rows=256, max_row_group_rows=512); "
        f"ingest_parquet([{str(day)!r}], {str(lake)!r}, jobs=1, options=opts)"
    )
    env = patched_env(tmp_path, BLOCK_ENCODER_ON_DAY.format(day=DATE))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not temps(lake):
            time.sleep(0.02)  # polling for a condition, with a deadline
        assert proc.poll() is None and temps(lake), "the run ended (or never wrote) before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the run, its forkserver, its workers
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    writers = {int(p.name.split(".")[-3]) for p in temps(lake)}
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in writers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not list_lake(lake) and temps(lake)  # temporaries only, no final name
    s = ingest_parquet([day], lake, options=SMALL)
    assert s.ok and s.rows == 30_000 and s.skipped == 0
    assert_lake_equals(lake, day_oracle)
    assert no_temps(lake)


def temps(lake: Path) -> list[Path]:
    return [p for p in lake.iterdir() if p.name.endswith(".tmp")] if lake.is_dir() else []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- bad input ---------------------------------------------------------------------------------------


def test_corrupt_file_among_good_ones(day: Path, day_oracle: pd.DataFrame, tmp_path: Path, capsys) -> None:
    good2 = sample_path("databento-python/IFEU.IMPACT/test_data.mbo.dbn.zst")
    data = day.read_bytes()
    truncated = tmp_path / "in" / "truncated.dbn.zst"
    truncated.parent.mkdir()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    garbage = tmp_path / "in" / "garbage.dbn.zst"
    garbage.write_bytes(b"this is not a DBN file at all" * 100)
    lake = tmp_path / "lake"
    s = ingest_parquet([truncated, day, garbage, good2], lake, jobs=2, options=SMALL)
    assert {Path(p).name for p, _ in s.failed} == {"truncated.dbn.zst", "garbage.dbn.zst"}
    for p, message in s.failed:
        assert Path(p).name in message and "Traceback" not in message
    assert s.rows == 30_000 + 4
    assert_lake_equals(lake, canonical(pd.concat([day_oracle, oracle(good2)])))
    assert all(src.name != "truncated.dbn.zst" for f in lake_paths(lake) for src in read_lake_info(f).sources)
    assert no_temps(lake)
    # the CLI: non-zero exit, one clear line per failed file, a summary
    code = main([str(truncated), str(day), "--parquet", str(lake), "-q"])
    out = capsys.readouterr()
    assert code == 1
    assert "FAILED" in out.err and "truncated.dbn.zst" in out.err and "1 skipped, 1 failed" in out.out


@pytest.mark.parametrize("name", ["databento-python/GLBX.MDP3/test_data.mbo.dbn.zst", "generated"])
def test_a_record_of_another_schema_fails_the_file_unless_skipped(
    name: str, day: Path, tmp_path: Path, capsys
) -> None:
    """Issue 15: one record's rtype set to 0x01 in an MBO file used to vanish silently."""
    src = day if name == "generated" else sample_path(name)
    raw = bytearray(zstandard.ZstdDecompressor().decompressobj().decompress(src.read_bytes()))
    header = 8 + int.from_bytes(raw[4:8], "little")
    header += -header % 8 if raw[3] == 3 else 0
    assert raw[header + 1] == 0xA0
    at = header + 56 * 2  # the third record
    raw[at + 1] = 0x01
    bad = tmp_path / "one_bad_record.dbn"
    bad.write_bytes(bytes(raw))
    lake = tmp_path / "lake"
    code = main([str(bad), "--parquet", str(lake), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"one_bad_record.dbn at byte {at}" in err and "rtype 0x01" in err and "--skip-bad-records" in err
    assert not list_lake(lake)
    code = main([str(bad), "--parquet", str(lake), "--quiet", "--skip-bad-records"])
    out = capsys.readouterr()
    records = len(dbn_store(src).to_ndarray())
    assert code == 0 and "1 corrupt records skipped" in out.out
    assert f"{records - 1:,} rows" in out.out
    (info,) = [read_lake_info(f.path) for f in list_lake(lake)][:1]
    assert [s.bad_records for s in info.sources] == [1]


def test_inputs_dirs_and_data_dir(day: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    d = tmp_path / "data"
    d.mkdir()
    (d / day.name).symlink_to(day)
    (d / "notes.txt").write_text("not a day file")
    assert find_inputs([d]) == [d / day.name]
    monkeypatch.setenv("DATA_DIR", str(d))
    assert main(["--parquet", str(tmp_path / "lake"), "-q"]) == 0
    assert "1 file, 30,000 rows" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.dbn.zst"), "--parquet", str(tmp_path / "lake")]) == 1
    assert "missing.dbn.zst: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--no-day-files", "--parquet", str(tmp_path)])
    assert exc.value.code == 2


class RowCounter:
    """A second sink fed from the same decoded blocks (as the QuestDB sink will be)."""

    def __init__(self, out: str) -> None:
        self.out = out

    def __call__(self, path: Path) -> CountingSink:
        return CountingSink(Path(self.out) / f"{path.name}.rows")


class CountingSink(FileSink):
    def __init__(self, target: Path) -> None:
        self.target = target
        self.rows = 0

    def write(self, block: ColumnBlock) -> None:
        self.rows += len(block)

    def close(self) -> SinkResult:
        self.target.write_text(str(self.rows))
        return SinkResult(rows=self.rows, outputs=[str(self.target)])

    def abort(self) -> None:
        pass


def test_extra_sinks_share_the_decode(day: Path, day_oracle: pd.DataFrame, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    s = ingest_parquet([day], lake, extra_sinks=[RowCounter(str(tmp_path))], options=SMALL)
    assert s.ok and (tmp_path / f"{day.name}.rows").read_text() == "30000"
    assert_lake_equals(lake, day_oracle)
    inode = (lake / f"mbo_{DATE}.parquet").stat().st_ino
    (tmp_path / f"{day.name}.rows").unlink()
    s = ingest_parquet([day], lake, extra_sinks=[RowCounter(str(tmp_path))], options=SMALL)
    # the lake already holds the day: its sink does nothing; the other sink still gets every row
    assert s.ok and s.skipped == 0 and (tmp_path / f"{day.name}.rows").read_text() == "30000"
    assert (lake / f"mbo_{DATE}.parquet").stat().st_ino == inode


def test_summary_says_where_the_time_went(day: Path, tmp_path: Path) -> None:
    """Every stage of the lake path is timed in the workers and comes back summed per run."""
    s = ingest_parquet(
        [day, day], tmp_path, options=SMALL, force=True
    )  # the same day twice: two files' stages
    assert s.ok
    worker = {"decompress", "convert", "sort", "write"}
    assert worker <= set(s.stages) and ({"Parquet encoder", "encode"} & set(s.stages))
    for name, (cpu, wall) in s.stages.items():
        assert cpu >= 0 and wall >= 0, name
    assert sum(s.stages[n][0] for n in ("decompress", "convert", "sort")) > 0
    encode = sum(s.stages.get(n, [0, 0])[0] for n in ("Parquet encoder", "encode"))
    assert encode > 0
    in_worker = sum(w for n, (_, w) in s.stages.items() if n != "Parquet encoder")
    assert in_worker <= s.file_seconds * 1.01  # the worker's stages lie inside its files' time


def _sink_day(
    day: Path, out: Path, options: ParquetOptions, encoder: ThreadEncoder, by_symbol: bool = False
) -> ParquetSink:
    """Every block of ``day`` through a ParquetSink on ``encoder``, closed (and the encoder too)."""
    sink = ParquetSink(out, SourceEntry.of_file(day), by_symbol=by_symbol, options=options, encoder=encoder)
    for block in iter_column_blocks(day):
        sink.write(block)
    sink.source_done(0)
    sink.close()
    encoder.close()
    return sink


def _assert_lake_is(out: Path, oracle: pd.DataFrame, by_symbol: bool = False) -> None:
    """The lake in ``out`` holds the source, row for row, each symbol in feed order."""
    assert_lake_equals(out, oracle, by_symbol=by_symbol)
    lake = pa.concat_tables([pq.read_table(p) for p in lake_paths(out)])
    for symbol in SYMBOLS:
        assert_feed_order(lake, oracle, symbol)


class _AlwaysBusy(ThreadEncoder):
    """A shared encoder whose slots are always taken: the sink encodes every stripe itself."""

    def free_slots(self) -> int:
        return 0


@pytest.mark.parametrize("by_symbol", [False, True])
def test_stripes_encoded_by_the_worker_equal_the_source(
    day: Path, day_oracle: pd.DataFrame, tmp_path: Path, by_symbol: bool
) -> None:
    """Work stealing: when every encoder slot is busy the sink sorts the stripe in place and
    encodes it itself; the lake is the same, row for row, feed order kept."""
    sink = _sink_day(day, tmp_path, SMALL, _AlwaysBusy(SMALL), by_symbol=by_symbol)
    assert sink.stolen == -(-30_000 // SMALL.stripe_rows) and sink.rows == 30_000
    _assert_lake_is(tmp_path, day_oracle, by_symbol=by_symbol)


def _ramp(rows: int, first: int, full: int) -> list[int]:
    """Stripe sizes of a ``rows``-row file: ``first``, doubling up to ``full``, then what is left."""
    sizes, cap = [], first
    while rows > cap:
        sizes.append(cap)
        rows -= cap
        cap = min(cap * 2, full)
    return [*sizes, rows]


class _Recording(ThreadEncoder):
    """A shared encoder that records the rows of every stripe submitted to it. ``busy``: it reports
    a job finished only when the sink blocks for it (still busy when the sink is closed); else it
    finishes each job before :meth:`submit` returns (idle whenever the sink looks)."""

    def __init__(self, options: ParquetOptions, busy: bool) -> None:
        super().__init__(options)
        self.submitted: list[int] = []
        self.busy = busy

    def submit(self, slot: int, job: StripeJob) -> None:
        self.submitted.append(job.rows)
        super().submit(slot, job)
        if not self.busy:
            wait(list(self._futures))

    def completed(self, block: bool) -> list[tuple[int, str | None]]:
        return super().completed(block) if block or not self.busy else []


def test_stripes_ramp_up_and_the_last_one_is_encoded_beside_the_encoder(
    day: Path, day_oracle: pd.DataFrame, tmp_path: Path
) -> None:
    """A file's first stripe is ``first_stripe_rows`` and each next one doubles up to
    ``stripe_rows`` (the encoder starts early); the last stripe, with the encoder still busy, is
    encoded by the sink itself. The lake is the source, row for row, in feed order."""
    opts = replace(SMALL, first_stripe_rows=1_024, slots=8)
    encoder = _Recording(opts, busy=True)
    sink = _sink_day(day, tmp_path, opts, encoder)
    *sent, last = _ramp(30_000, 1_024, 8_192)
    assert encoder.submitted == sent and sink.stolen == 1
    assert last > 0 and sink.rows == 30_000
    _assert_lake_is(tmp_path, day_oracle)


def test_the_planning_process_loads_neither_numba_nor_pyarrow(
    day: Path, day_oracle: pd.DataFrame, tmp_path: Path
) -> None:
    """``datapair-ingest --parquet`` into a new lake: the command's own process plans the run and
    waits; pyarrow and Numba load only in the workers (start-up and memory: its import no longer
    competes with the forkserver's, and ~100 MiB of PSS less). The lake is still the source."""
    code = (
        "import sys\n"
        "from engine.ingest import main\n"
        f"status = main([{str(day)!r}, '--parquet', {str(tmp_path)!r}, '--quiet'])\n"
        "print(status, sorted(m for m in ('numba', 'pyarrow', 'polars', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 []"
    assert_lake_equals(tmp_path, day_oracle)


def test_the_last_stripe_is_split_with_an_idle_encoder(
    day: Path, day_oracle: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the encoder idle when the file ends, it takes the first half of the last stripe and
    the sink encodes the second: both finish together. Same lake, row for row, feed order kept."""
    monkeypatch.setattr(sink_module, "MIN_SPLIT_ROWS", 1_000)
    opts = replace(SMALL, first_stripe_rows=1_024)
    encoder = _Recording(opts, busy=False)
    sink = _sink_day(day, tmp_path, opts, encoder)
    *sent, last = _ramp(30_000, 1_024, 8_192)
    assert encoder.submitted == [*sent, last // 2] and sink.stolen == 1
    _assert_lake_is(tmp_path, day_oracle)


@pytest.mark.parametrize("scatter_max_runs", [0, 1_000_000])
@pytest.mark.parametrize("busy", [False, True])
def test_scatter_and_gather_give_the_same_lake(
    day: Path, day_oracle: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    scatter_max_runs: int, busy: bool,
) -> None:  # fmt: skip
    """Stripes are put in symbol order by gathering (many runs) or scattering (few): either way,
    in the encoder's slot or in place (``busy``: the sink encodes), the lake is the source, row
    for row, each symbol in feed order."""
    monkeypatch.setattr(sink_module, "SCATTER_MAX_RUNS", scatter_max_runs)
    encoder = _AlwaysBusy(SMALL) if busy else _Recording(SMALL, busy=False)
    sink = _sink_day(day, tmp_path, SMALL, encoder)
    stripes = -(-30_000 // SMALL.stripe_rows)
    if busy:
        assert sink.stolen == stripes
    else:  # an idle encoder: every stripe went to its slots (the last is too small to split)
        assert isinstance(encoder, _Recording) and len(encoder.submitted) == stripes and sink.stolen == 0
    _assert_lake_is(tmp_path, day_oracle)
