"""One temporary-file rule for every writer, and the cleaner that knows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.tempfiles import TEMP_PATTERN, remove_stale_temps, temp_path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_every_writer_names_its_temporaries_alike(tmp_path: Path) -> None:
    final = tmp_path / "mbo_2025-10-22.parquet"
    for purpose in ("", "download"):
        t = temp_path(final, purpose)
        m = TEMP_PATTERN.match(t.name)
        assert t.parent == tmp_path and t.name.startswith(".mbo_2025-10-22.parquet")
        assert m and int(m["pid"]) == os.getpid()
    assert TEMP_PATTERN.match(temp_path(tmp_path / "day.dbn.zst").name)


def test_the_cleaner_removes_dead_writers_files_only(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = [
        tmp_path / f".mbo_2025-10-22.parquet.{dead}.0badcafe.tmp",
        tmp_path / f".mbo_2025-10-22.parquet.download.{dead}.0badcafe.tmp",  # the export's download
        tmp_path / f".day.dbn.zst.{dead}.0badcafe.tmp",  # the generator's
    ]
    live = [temp_path(tmp_path / "mbo_2025-10-23.parquet"), temp_path(tmp_path / "x.parquet", "download")]
    other = [tmp_path / "mbo_2025-10-22.parquet", tmp_path / ".hidden", tmp_path / f"notes.{dead}.tmp"]
    for p in stale + live + other:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in live + other)
