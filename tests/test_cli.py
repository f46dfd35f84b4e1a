"""The command lines as a new user meets them (issue 11): one-line errors, Ctrl-C, inputs, hints."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import ingest, inspect, query
from engine.cli import EXIT_INTERRUPTED, Interrupted, run_cli
from engine.inputs import find_inputs
from engine.synth import __main__ as synth_cli
from engine.synth.day import write_day
from tests.support.hooks import BLOCK_ENCODER_ON_DAY, patched_env
from tests.support.samples import ROOT

SYMBOLS = ("NVDA", "AAPL", "MSFT")


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("days")
    out = []
    for i, date in enumerate(("2025-10-21", "2025-10-22")):
        p = d / f"XNAS.ITCH-{date}.dbn.zst"
        write_day(p, 20_000, SYMBOLS, date, seed=3 + i)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def lake(days: list[Path], tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lake")
    assert ingest.main([*map(str, days), "--parquet", str(out), "--quiet"]) == 0
    return out


# -- Ctrl-C and SIGTERM --------------------------------------------------------------------------------
def test_run_cli_maps_interrupts_and_errors(capsys) -> None:
    def stopped() -> int:
        raise Interrupted(1, 3)

    assert run_cli("datapair-x", stopped) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "datapair-x: interrupted: 1 of 3 files done\n"

    def ctrl_c() -> int:
        raise KeyboardInterrupt

    assert run_cli("datapair-x", ctrl_c) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "datapair-x: interrupted\n"


def test_exit_now_runs_atexit_flushes_and_keeps_the_status(tmp_path) -> None:
    """The programs end through exit_now (no module teardown): what they printed and their atexit
    handlers' work must survive it, with their exit status."""
    code = (
        "import atexit, sys\n"
        "from engine.cli import exit_now\n"
        "atexit.register(lambda: open(sys.argv[1], 'w').write('atexit ran'))\n"
        "print('x' * 100_000, end='')\n"
        "print('to stderr', file=sys.stderr, end='')\n"
        "exit_now(3)\n"
    )
    marker = tmp_path / "atexit"
    out = subprocess.run([sys.executable, "-c", code, str(marker)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 3
    assert out.stdout == "x" * 100_000 and out.stderr == "to stderr"
    assert marker.read_text() == "atexit ran"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_ingest_stops_workers_cleans_up_and_says_how_far(days, tmp_path, sig) -> None:
    out = tmp_path / "lake"
    env = patched_env(tmp_path, BLOCK_ENCODER_ON_DAY.format(day="2025-10-22"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.ingest", *map(str, days), "--parquet", str(out), "--quiet", "--jobs", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        first_done = out / "mbo_2025-10-21.parquet"
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in out.iterdir() if p.name.endswith(".tmp")] if out.is_dir() else []
            if first_done.exists() and temps:
                break
            time.sleep(0.05)  # polling for a condition, with a deadline
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C does: the whole group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert err.strip().splitlines() == ["datapair-ingest: interrupted: 1 of 2 files done"]
    assert sorted(p.name for p in out.iterdir() if p.name != ".datapair.lock") == ["mbo_2025-10-21.parquet"]


# -- inputs ------------------------------------------------------------------------------------------
def test_directories_take_plain_and_zstd_files_and_recurse_on_request(days, tmp_path) -> None:
    (tmp_path / "2025-10-21").mkdir()
    nested = tmp_path / "2025-10-21" / days[0].name
    nested.write_bytes(days[0].read_bytes())
    plain = tmp_path / "day.dbn"
    plain.write_bytes(b"DBN")  # found by name; decoding is not find_inputs' business
    assert find_inputs([tmp_path]) == [plain]
    assert find_inputs([tmp_path], recursive=True) == [nested, plain]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match=r"no \*\.dbn\.zst or \*\.dbn file in this directory.*--recursive"):
        find_inputs([empty])


def test_symbol_filter_errors_name_where_the_path_came_from(days, tmp_path, capsys, monkeypatch) -> None:
    assert ingest.main([str(days[0]), "--parquet", str(tmp_path), "--symbol-filter", "/nonexist"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("datapair-ingest: error: --symbol-filter /nonexist: cannot read it")
    monkeypatch.setenv("SYMBOL_FILTER", "/nonexist")
    assert ingest.main([str(days[0]), "--parquet", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("datapair-ingest: error: SYMBOL_FILTER /nonexist: cannot read it")


def test_unknown_symbols_warn_with_the_nearest_known(days, tmp_path, capsys) -> None:
    code = ingest.main([str(days[0]), "--parquet", str(tmp_path), "--symbols", "NVDA,ZZZZ,AAPX", "--quiet"])
    assert code == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["datapair-ingest: warning: no rows for AAPX (nearest: AAPL), ZZZZ"]


def test_query_of_an_unknown_symbol_exits_1_with_a_hint(lake, capsys) -> None:
    assert query.main(["--dir", str(lake), "--symbol", "NVDX"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"datapair-query: error: no rows for symbol 'NVDX' in {lake}; nearest: NVDA"
    assert query.main(["--dir", str(lake), "--symbol", "NVDA", "--limit", "1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["symbol"] == "NVDA"


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("SELECT foo FROM df", 'unknown column "foo" (the columns are ts_event, symbol,'),
        ("SELEC * FROM df", "syntax error"),
        ("SELECT * FROM nope", "the table is named df"),
    ],
)
def test_sql_errors_are_one_line(lake, capsys, sql: str, needle: str) -> None:
    assert query.main(["--dir", str(lake), "--sql", sql]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "FAILED HERE" not in err


# -- inspect matches the others ------------------------------------------------------------------------
def test_inspect_speaks_like_the_other_commands(days, tmp_path, capsys) -> None:
    assert inspect.main([str(days[0]), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "  actions: A " in out and "{" not in out
    assert inspect.main([str(days[0]), "--format", "json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 20_000
    assert inspect.main([str(tmp_path / "missing.dbn"), "--quiet"]) == 1
    assert capsys.readouterr().err.startswith("datapair-inspect: error: ")
    with pytest.raises(SystemExit) as exc:
        inspect.main(["--format", "xml", str(days[0])])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("datapair-inspect: error: argument --format")


# -- synth ---------------------------------------------------------------------------------------------
def test_synth_refuses_a_weekend_unless_asked(tmp_path, capsys) -> None:
    out = tmp_path / "sat.dbn"
    assert synth_cli.main([str(out), "--date", "2025-10-25", "--records", "100"]) == 2
    assert "Saturday" in capsys.readouterr().err and not out.exists()
    assert synth_cli.main([str(out), "--date", "2025-10-25", "--records", "100", "--allow-weekend", "-q"]) == 0
    assert out.exists()


def test_synth_reports_progress_per_block(tmp_path) -> None:
    seen: list[int] = []
    write_day(tmp_path / "d.dbn", 10_000, SYMBOLS, "2025-10-22", block_records=3_000, progress=seen.append)
    assert len(seen) >= 4 and seen[-1] == 10_000 and all(b > a for a, b in itertools.pairwise(seen))
    assert all(b - a <= 3_000 for a, b in zip([0, *seen], seen, strict=False))


def test_every_cli_has_one_line_usage_errors(capsys) -> None:
    for main in (ingest.main, query.main, inspect.main):
        with pytest.raises(SystemExit) as exc:
            main(["--no-such-flag"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--help" in err


def test_readme_keeps_a_new_users_promises() -> None:
    text = (ROOT / "README.md").read_text()
    assert "Python >= 3.11" in text or "Python 3.11" in text
    for script in ("datapair-ingest", "datapair-query", "datapair-export", "datapair-inspect", "datapair-serve",
                   "datapair-synth"):  # fmt: skip
        assert script in text
    before_tests = text.split("## Tests")[0]
    assert "../shared" not in before_tests  # nothing a user needs lives outside the repository
    assert "the seed" not in before_tests.lower()  # say "the original server"
