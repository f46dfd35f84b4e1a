"""The inspect CLI: decode summary equals databento's counts; bad input exits 1 without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from engine.dbn.summary import inspect_file
from engine.inspect import main
from tests.support.oracle import dbn_store
from tests.support.samples import ROOT


def test_summary_counts_equal_databento(make_day) -> None:
    path = make_day(records=20_000)
    info = inspect_file(path, block_bytes=8192)
    df = dbn_store(path).to_df(map_symbols=True)
    assert info["records"] == len(df)
    assert info["by_symbol"] == dict(Counter(df["symbol"]))
    assert info["by_action"] == dict(Counter(df["action"]))
    assert info["unmapped_records"] == 0
    assert max(info["by_symbol"], key=info["by_symbol"].get) == "NVDA"


def test_json_output(make_day, capsys) -> None:
    path = make_day(records=20_000)
    assert main([str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 20_000 and out["dataset"] == "XNAS.ITCH" and out["version"] == 3


def test_bad_file_exits_1_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dbn.zst"
    bad.write_bytes(b"not a dbn file")
    proc = subprocess.run(
        [sys.executable, "-m", "engine.inspect", str(bad), str(tmp_path / "missing.dbn")],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{bad} at byte 0: not a DBN file" in proc.stderr
    assert "missing.dbn: file not found" in proc.stderr
