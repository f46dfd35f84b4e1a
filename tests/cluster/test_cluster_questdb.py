"""Issue 16: QuestDB loads through a LocalCluster land exact counts in the real server (marker ``questdb``).

Four days on 2 workers with the senders capped cluster-wide at one (``QDB_CONCURRENCY``-style
:class:`distributed.Semaphore`): QuestDB alone (one task per file) and lake + QuestDB (one task per
day group); a rerun skips every file from ``ingest_log`` and the lake footers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.cluster import IngestJob, ingest_cluster
from engine.lake.layout import list_lake, read_lake_info
from engine.questdb.conf import parse_questdb_url
from engine.questdb.http import Backoff, QuestDBHttp
from engine.synth.day import write_day
from tests.support.qdb import options, wait_count
from tests.support.samples import ROOT

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.questdb

DAYS = ("2025-10-20", "2025-10-21", "2025-10-22", "2025-10-23")


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(ROOT))  # the workers import this checkout
        lc = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
    c = distributed.Client(lc)
    try:
        yield c
    finally:
        c.close()
        lc.close()


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("dbn")
    out = []
    for i, day in enumerate(DAYS):
        p = d / f"XNAS.ITCH-{day}.dbn.zst"
        write_day(p, records=5_000, date=day, seed=i + 3)
        out.append(p)
    return out


@pytest.mark.parametrize("with_lake", [False, True], ids=["questdb-alone", "lake-and-questdb"])
def test_cluster_load_lands_exact_counts(
    questdb_url: str, questdb_tables: Callable[[str], str], client: object, days: list[Path], tmp_path: Path,
    with_lake: bool,
) -> None:  # fmt: skip
    names = questdb_tables("t_cluster"), questdb_tables("t_cluster_log")
    lake = str(tmp_path / "lake") if with_lake else None
    job = IngestJob(lake=lake, questdb=options(questdb_url, names), qdb_concurrency=1)
    s = ingest_cluster(days, 2, job, client=client)
    assert s.ok, s.failed
    assert s.units == 4 and s.rows == 4 * 5_000
    http = QuestDBHttp(parse_questdb_url(questdb_url), backoff=Backoff(timeout=10.0), timeout=60.0)
    assert wait_count(http, names[0], 4 * 5_000) == 4 * 5_000
    if lake is not None:
        assert sum(read_lake_info(f.path).rows for f in list_lake(lake)) == 4 * 5_000
    again = ingest_cluster(days, 2, job, client=client)
    assert again.ok and again.skipped == 4 and again.units == 0
    assert wait_count(http, names[0], 4 * 5_000) == 4 * 5_000
