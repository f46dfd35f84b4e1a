"""``datapair-book`` (issue 13 §2): snapshot, derive and index from the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.book import OrderBooks, derive_mbp
from engine.book.__main__ import main
from engine.book.rows import DERIVE_READ, day_source, read_symbol_rows
from engine.book.snapshot import book_snapshot
from tests.book.lakebook import symbol_columns

AT = "2025-10-22 14:30:00"
AT_NS = 1_761_143_400_000_000_000


def snapshot_json(lake: Path, at: str, capsys: pytest.CaptureFixture[str]) -> dict:
    argv = [
        "snapshot",
        "--dir",
        str(lake),
        "--symbol",
        "NVDA",
        "--at",
        at,
        "--depth",
        "3",
        "--format",
        "json",
    ]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_snapshot_json_is_the_api_answer(book_lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    got = snapshot_json(book_lake, AT, capsys)
    assert got == book_snapshot(book_lake, "NVDA", AT_NS, depth=3)
    assert snapshot_json(book_lake, str(AT_NS), capsys) == got  # ns or a datetime: the same instant


def test_snapshot_table_shows_the_ladder(book_lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["snapshot", "--dir", str(book_lake), "--symbol", "NVDA", "--at", AT, "--depth", "2", "--orders"]
        )
        == 0
    )
    out = capsys.readouterr().out
    book = book_snapshot(book_lake, "NVDA", AT_NS, depth=2)
    assert out.startswith(f"NVDA at 2025-10-22 14:30:00 UTC ({AT_NS})")
    assert f"{book['bids'][0]['price']:.9g}" in out and f"{book['asks'][0]['price']:.9g}" in out
    assert "orders:" in out


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["--at", "2025-13-01"], 2, "--at"),
        (["--at", AT, "--depth", "0"], 2, "--depth"),
        (["--at", AT, "--publisher", "x"], 2, "--publisher"),
        (["--at", AT, "--symbol", " NV"], 2, "--symbol"),
        (["--at", AT, "--symbol", "NVDX"], 1, "no rows for symbol 'NVDX'"),
    ],
)
def test_snapshot_bad_input_is_one_line(
    book_lake: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, needle: str
) -> None:
    base = ["snapshot", "--dir", str(book_lake), "--symbol", "NVDA"]
    if code == 2:
        with pytest.raises(SystemExit) as exc:
            main(base + argv)
        assert exc.value.code == 2
    else:
        assert main(base + argv) == 1
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def derive(lake: Path, schema: str, symbols: str, out: Path, quiet: bool = False) -> int:
    argv = ["derive", "--dir", str(lake), "--schema", schema, "--date", "2025-10-22", "--symbols", symbols]
    return main([*argv, "--output", str(out), *(["--quiet"] if quiet else [])])


def test_derive_mbp10_equals_the_kernel_rows(
    book_lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mbp"
    assert derive(book_lake, "mbp-10", "MSFT,NVDA", out, quiet=True) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("derive: ") and "rows/s" in lines[-1]
    t = pq.read_table(out / "mbp-10_2025-10-22.parquet")
    assert t.column_names[:13] == [
        "ts_recv",
        "ts_event",
        "publisher_id",
        "instrument_id",
        "action",
        "side",
        "depth",
        "price",
        "price_raw",
        "size",
        "flags",
        "ts_in_delta",
        "sequence",
    ]
    assert t.column_names[13:19] == [
        "bid_px_00",
        "ask_px_00",
        "bid_sz_00",
        "ask_sz_00",
        "bid_ct_00",
        "ask_ct_00",
    ]
    assert t.column_names[-1] == "symbol"
    src = day_source(book_lake, "NVDA", t.column("ts_recv")[0].as_py().date())
    assert src is not None
    want = derive_mbp(OrderBooks(), read_symbol_rows(src, "NVDA", columns=DERIVE_READ), depth=10)
    df = t.to_pandas()
    nv = df[df.symbol == "NVDA"]
    assert len(nv) == len(want["ts_recv"])
    assert (nv.bid_sz_03.to_numpy() == want["bid_sz_03"]).all()
    px = np.where(want["ask_px_09"] == 2**63 - 1, np.nan, want["ask_px_09"] / 1e9)
    np.testing.assert_array_equal(nv.ask_px_09.to_numpy(), px)
    assert set(nv.action) <= set("ACMRT")


def test_derive_bbo_one_row_per_interval(book_lake: Path, tmp_path: Path) -> None:
    assert derive(book_lake, "bbo-1m", "AAPL", tmp_path, quiet=True) == 0
    t = pq.read_table(tmp_path / "bbo-1m_2025-10-22.parquet").to_pandas()
    ts = t.ts_recv.astype("int64")
    assert (ts % 60_000_000_000 == 0).all() and ts.is_monotonic_increasing and ts.is_unique
    assert {"bid_px_00", "ask_sz_00", "bid_ct_00", "symbol"} <= set(t.columns)


def test_derive_unknown_symbol_fails_with_a_hint(
    book_lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert derive(book_lake, "mbp-1", "NVDX", tmp_path) == 1
    assert "nearest: NVDA" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_index_writes_checkpoints_and_a_summary(
    book_lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(book_lake, lake, ignore=shutil.ignore_patterns("_book"))
    assert main(["index", "--dir", str(lake), "--date", "2025-10-22", "--symbols", "NVDA", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("index: ") and "rows/s" in out[-1]
    assert [p.name for p in (lake / "_book").iterdir()] == ["book_NVDA_2025-10-22.parquet"]
    rows = len(symbol_columns(lake / "mbo_2025-10-22.parquet", "NVDA")["ts_recv"])
    assert f"{rows:,} rows" in out[-1]


def test_python_dash_m_engine_book_help() -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "engine.book", "--help"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and "snapshot" in r.stdout and "examples:" in r.stdout


def test_ingest_book_index_writes_the_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.ingest import main as ingest_main
    from engine.synth.day import write_day

    day = tmp_path / "day.dbn.zst"
    write_day(day, 20_000, ("NVDA", "AAPL"), "2025-10-22", seed=2)
    lake = tmp_path / "lake"
    assert ingest_main([str(day), "--parquet", str(lake), "--book-index", "--quiet", "--jobs", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("book index: ")
    assert sorted(p.name for p in (lake / "_book").iterdir()) == [
        "book_AAPL_2025-10-22.parquet",
        "book_NVDA_2025-10-22.parquet",
    ]
