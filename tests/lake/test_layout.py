"""Lake file names, listing and stale temporary files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import SinkError
from engine.lake.layout import (
    lake_file_name,
    list_lake,
    parse_lake_name,
    read_lake_info,
    remove_stale_temps,
    temp_path,
)


@pytest.mark.parametrize("symbol", [None, "NVDA", "ES_F", "BRN FMJ0024!", "A/B", "x%y", "BRK.B"])
def test_lake_names_round_trip(symbol: str | None) -> None:
    name = lake_file_name("2025-10-22", symbol)
    assert "/" not in name and name.endswith("_2025-10-22.parquet")
    f = parse_lake_name(name)
    assert f is not None and f.symbol == symbol and f.day.isoformat() == "2025-10-22"


def test_list_lake_and_stale_temps(tmp_path: Path) -> None:
    for name in (
        "mbo_2025-10-22.parquet",
        "mbo_NVDA_2025-10-22.parquet",
        "mbo_2025-10-21.parquet",
        "x.parquet",
    ):
        (tmp_path / name).write_bytes(b"")
    assert [f.path.name for f in list_lake(tmp_path)] == ["mbo_2025-10-21.parquet", "mbo_2025-10-22.parquet"]
    assert [f.symbol for f in list_lake(tmp_path, by_symbol=True)] == ["NVDA"]
    assert len(list_lake(tmp_path, by_symbol=None)) == 3
    mine = temp_path(tmp_path / "mbo_2025-10-22.parquet")
    mine.write_bytes(b"")
    dead = tmp_path / ".mbo_2025-10-23.parquet.999999999.abcd0123.tmp"
    dead.write_bytes(b"")
    assert remove_stale_temps(tmp_path) == [dead] and mine.exists()
    assert parse_lake_name(mine.name) is None
    with pytest.raises(SinkError, match="datapair"):
        pq.write_table(pa.table({"a": [1]}), tmp_path / "plain.parquet")
        read_lake_info(tmp_path / "plain.parquet")
