"""Records whose instrument_id has no symbol mapping: kept with the id as text, and counted."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from engine.ingest import main
from engine.lake.ingest import ingest_parquet
from tests.support.dbn_bytes import dbn_header, mbo_bytes


def test_unmapped_ids_keep_the_id_and_are_counted(tmp_path: Path, capsys) -> None:
    src = tmp_path / "nomap.dbn"
    src.write_bytes(dbn_header() + mbo_bytes(300))  # a header with no mappings: instrument 6155 unknown
    summary = ingest_parquet([src], tmp_path / "lake")
    assert summary.ok and summary.rows == 300
    assert summary.unmapped == 300
    assert "300 rows with unmapped instrument_id" in summary.line()
    (f,) = (tmp_path / "lake").glob("mbo_*.parquet")
    assert set(pq.read_table(f, columns=["symbol"]).column("symbol").to_pylist()) == {"6155"}
    assert main([str(src), "--parquet", str(tmp_path / "lake2"), "-q"]) == 0
    assert "300 rows with unmapped instrument_id" in capsys.readouterr().out


def test_mapped_day_reports_no_unmapped(make_day, tmp_path: Path) -> None:
    summary = ingest_parquet([make_day(records=5_000)], tmp_path)
    assert summary.ok and summary.unmapped == 0
    assert "unmapped" not in summary.line()
