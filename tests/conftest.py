"""Shared fixtures: the real Databento samples in ../shared and generated days."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.samples import MBO_SAMPLES, sample_path


@pytest.fixture(params=MBO_SAMPLES, ids=lambda s: s.split("/", 1)[1])
def mbo_sample(request: pytest.FixtureRequest) -> Path:
    return sample_path(request.param)


@pytest.fixture(scope="session")
def make_day(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: a generated DBN v3 XNAS.ITCH MBO day (cached per arguments for the session)."""
    from engine.synth.day import write_day

    cache: dict[tuple, Path] = {}

    def make(
        records: int = 20_000,
        symbols: tuple[str, ...] = ("NVDA", "AAPL", "MSFT", "TSLA"),
        date: str = "2025-10-22",
        seed: int = 1,
        zstd: bool = True,
    ) -> Path:
        key = (records, tuple(symbols), date, seed, zstd)
        if key not in cache:
            d = tmp_path_factory.mktemp("day")
            path = d / f"XNAS.ITCH-{date}-{records}-{seed}.dbn{'.zst' if zstd else ''}"
            write_day(path, records=records, symbols=list(symbols), date=date, seed=seed)
            cache[key] = path
        return cache[key]

    return make


# -- a real QuestDB (marker ``questdb``) ------------------------------------------------------------
QUESTDB_DEFAULT_URL = "http://localhost:9000"


@pytest.fixture(scope="session")
def questdb_url() -> str:
    """``QUESTDB_URL`` (default http://localhost:9000) once it answers ``/exec?query=SELECT 1``.

    Probed once per session with a 3 s timeout and no retries; skips every test that uses it, with
    the reason, when nothing answers. A malformed URL or refused credentials fail instead.
    """
    from engine.errors import StoreUnavailableError
    from engine.questdb.conf import parse_questdb_url
    from engine.questdb.http import Backoff, QuestDBHttp

    url = os.environ.get("QUESTDB_URL", "").strip() or QUESTDB_DEFAULT_URL
    http = QuestDBHttp(parse_questdb_url(url), backoff=Backoff(timeout=0.0), timeout=3.0)
    try:
        http.exec("SELECT 1")
    except StoreUnavailableError as exc:
        pytest.skip(f"no QuestDB answering SQL at {url} (set QUESTDB_URL to run the questdb tests): {exc}")
    return url


def _table_factory(url: str) -> Iterator[Callable[[str], str]]:
    import uuid

    from engine.errors import DatapairError
    from engine.questdb.conf import parse_questdb_url
    from engine.questdb.http import Backoff, QuestDBHttp

    made: list[str] = []

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        made.append(name)
        return name

    yield make
    http = QuestDBHttp(parse_questdb_url(url), backoff=Backoff(timeout=10.0), timeout=60.0)
    failed = []
    for name in made:
        try:
            http.exec(f"DROP TABLE IF EXISTS {name}")
        except DatapairError as exc:
            failed.append(f"{name}: {exc}")
    if failed:
        pytest.fail("could not drop test tables: " + "; ".join(failed))


@pytest.fixture
def questdb_tables(questdb_url: str) -> Iterator[Callable[[str], str]]:
    """Factory of unique table names (``prefix_<12 hex>``); each is dropped after the test, pass or fail."""
    yield from _table_factory(questdb_url)


@pytest.fixture(scope="module")
def questdb_module_tables(questdb_url: str) -> Iterator[Callable[[str], str]]:
    """As :func:`questdb_tables`, for tables a whole test module shares (dropped after the module)."""
    yield from _table_factory(questdb_url)
