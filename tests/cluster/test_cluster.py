"""Issue 16: backfills on a Dask LocalCluster give the same lake as one process, also when a worker dies.

One LocalCluster of 2 worker processes serves the module. Its workers start with a
``sitecustomize`` hook (:data:`tests.support.hooks.KILL_WORKER_ONCE`): once a test creates the
``armed`` file, the first worker to commit a lake file kills itself (SIGKILL) with that file
written under its temporary name; Dask runs the task again on a live worker.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.cluster import IngestJob, ingest_cluster, parse_cluster
from engine.errors import ConfigError
from engine.lake.groups import day_groups
from engine.lake.ingest import ingest_parquet
from engine.lake.layout import list_lake, read_lake_info
from engine.synth.day import write_day
from tests.support.hooks import KILL_WORKER_ONCE, patched_env
from tests.support.samples import ROOT

distributed = pytest.importorskip("distributed")

RECORDS = 3_000


def weekdays(n: int, first: dt.date = dt.date(2025, 7, 1)) -> list[dt.date]:
    out, d = [], first
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """60 generated days, plus a second (symbol-split) file of the first day: 61 files, 60 day groups."""
    d = tmp_path_factory.mktemp("dbn")
    out = []
    for i, day in enumerate(weekdays(60)):
        p = d / f"XNAS.ITCH-{day}.dbn.zst"
        write_day(p, records=RECORDS, date=day.isoformat(), seed=i + 1)
        out.append(p)
    extra = d / f"XNAS.ITCH-{weekdays(1)[0]}-more.dbn.zst"
    write_day(extra, records=RECORDS, symbols=["AMD", "INTC"], date=weekdays(1)[0].isoformat(), seed=99)
    return [*out, extra]


@pytest.fixture(scope="module")
def reference(days: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process lake of every day."""
    lake = tmp_path_factory.mktemp("ref")
    s = ingest_parquet(days, lake, jobs=2)
    assert s.ok, s.failed
    return lake


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path, Path]]:
    """(client, armed, fired): a LocalCluster of 2 worker processes whose workers carry the kill hook."""
    hooks = tmp_path_factory.mktemp("hooks")
    armed, fired = hooks / "armed", hooks / "fired"
    env = patched_env(hooks, KILL_WORKER_ONCE.format(armed=str(armed), fired=str(fired)))
    with pytest.MonkeyPatch.context() as mp:
        # the hook imports engine before a spawned worker takes the client's sys.path: name this checkout
        mp.setenv("PYTHONPATH", os.pathsep.join([env["PYTHONPATH"], str(ROOT)]))
        lc = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
    client = distributed.Client(lc)
    try:
        yield client, armed, fired
    finally:
        client.close()
        lc.close()


def source_rows(path: Path) -> dict[str, pa.Table]:
    """Each source's rows of a lake file (a day of several sources holds them in commit order)."""
    pf = pq.ParquetFile(path)
    info = read_lake_info(path)
    assert info.complete
    out = {}
    for s in info.sources:
        first, count = s.row_groups
        t = pf.read_row_groups(list(range(first, first + count)))
        price = t["price"].to_numpy().view("int64")  # NaN (no price) compares by its bits
        t = t.set_column(t.schema.get_field_index("price"), "price", pa.array(price))
        out[s.name] = t.cast(
            pa.schema(
                [
                    pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                    for f in t.schema
                ]
            )
        )
    return out


def assert_same_file(got: Path, want: Path) -> None:
    a, b = source_rows(got), source_rows(want)
    assert sorted(a) == sorted(b), got.name
    for name in a:
        assert a[name].equals(b[name]), f"{got.name}: rows of {name} differ"  # row for row, every column


def assert_same_lake(got: Path, want: Path) -> None:
    names = [Path(f.path).name for f in list_lake(got, by_symbol=None)]
    assert names == [Path(f.path).name for f in list_lake(want, by_symbol=None)]
    assert names
    for n in names:
        assert_same_file(got / n, want / n)
    assert not [p.name for p in got.iterdir() if p.name.endswith(".tmp")]  # no temporary left


def test_parse_cluster() -> None:
    assert parse_cluster("local:3") == 3
    assert parse_cluster("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert isinstance(parse_cluster("local"), int)
    for bad in ("local:0", "tcp://host", "bogus"):
        with pytest.raises(ConfigError):
            parse_cluster(bad)


def test_files_of_one_day_are_one_task(days: list[Path]) -> None:
    groups = day_groups(days)
    assert len(groups) == 60
    assert sorted(groups[0]) == sorted([days[0], days[-1]])  # the symbol-split file joins its day


def test_sixty_days_on_two_workers_equal_the_single_process_lake(
    cluster: tuple[object, Path, Path], days: list[Path], reference: Path, tmp_path: Path
) -> None:
    client, _, _ = cluster
    lake = tmp_path / "lake"
    s = ingest_cluster(days, 2, IngestJob(lake=str(lake)), client=client)
    assert s.ok, s.failed
    assert (s.files, s.units, s.skipped) == (61, 60, 0)
    assert s.rows == sum(read_lake_info(f.path).rows for f in list_lake(reference))
    assert {r.path for r in s.reports} == {str(p) for p in days}
    assert all(r.ok and r.seconds > 0 and r.rows > 0 for r in s.reports)
    assert len({r.worker for r in s.reports}) == 2  # both workers took tasks
    assert_same_lake(lake, reference)
    again = ingest_cluster(days, 2, IngestJob(lake=str(lake)), client=client)  # footers say complete
    assert again.ok and (again.skipped, again.units, again.rows) == (61, 0, 0)


def test_a_worker_killed_mid_task_still_ends_with_an_exact_lake(
    cluster: tuple[object, Path, Path], days: list[Path], reference: Path, tmp_path: Path
) -> None:
    client, armed, fired = cluster
    lake = tmp_path / "lake"
    some = days[1:7]
    armed.touch()
    try:
        s = ingest_cluster(some, 2, IngestJob(lake=str(lake)), client=client, retries=2)
    finally:
        armed.unlink()
    assert fired.exists(), "no worker was killed: the hook did not run"
    killed = int(fired.read_text())
    assert s.ok, s.failed
    assert killed not in {os.getpid()}
    assert s.files == 6 and s.rows == sum(r.rows for r in s.reports)
    names = [Path(f.path).name for f in list_lake(lake)]
    assert len(names) == 6
    for n in names:
        assert_same_file(lake / n, reference / n)
    assert not [p.name for p in lake.iterdir() if p.name.endswith(".tmp")]


def test_a_bad_file_fails_alone_and_the_exit_status_says_so(
    cluster: tuple[object, Path, Path], days: list[Path], tmp_path: Path
) -> None:
    client, _, _ = cluster
    bad = tmp_path / "XNAS.ITCH-bad.dbn.zst"
    bad.write_bytes(days[2].read_bytes()[:5000])  # cut short: the zstd frame ends early
    lake = tmp_path / "lake"
    s = ingest_cluster([days[1], bad], 2, IngestJob(lake=str(lake)), client=client)
    assert [p for p, _ in s.failed] == [str(bad)]
    assert [r.ok for r in s.reports if r.path == str(days[1])] == [True]
    assert [Path(f.path).name for f in list_lake(lake)] == [f"mbo_{weekdays(2)[1]}.parquet"]
    # the command line, in its own process (it starts and stops its own LocalCluster)
    cmd = [sys.executable, "-m", "engine.ingest", str(days[3]), str(bad), "--parquet", str(lake)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [*cmd, "--cluster", "local:1", "--quiet"], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 1, run.stderr
    failed = [line for line in run.stderr.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "bad.dbn.zst" in failed[0]
    assert "cluster ingest (2 tasks on 1 workers): 2 files" in run.stdout
