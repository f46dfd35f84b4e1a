"""Fixtures of the order-book tests: the real MBO samples and a generated day, as project columns."""

from __future__ import annotations

import numpy as np
import pytest

from engine.book import columns_from_records
from engine.synth.day import write_day
from tests.book.samples import SAMPLES, sample_columns
from tests.support.oracle import dbn_store

SYNTH_RECORDS = 200_000
SYNTH_SEED = 7


@pytest.fixture(params=SAMPLES, ids=lambda s: s.split("/", 1)[1])
def sample(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    return sample_columns(request.param)


@pytest.fixture(scope="session")
def synth_day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """A generated XNAS.ITCH day (the project's generator, fixed seed), as project columns."""
    path = tmp_path_factory.mktemp("book") / "day.dbn.zst"
    write_day(path, SYNTH_RECORDS, date="2025-10-22", seed=SYNTH_SEED)
    return columns_from_records(dbn_store(path).to_ndarray())


@pytest.fixture(scope="session")
def book_lake(tmp_path_factory: pytest.TempPathFactory):
    """A generated day (3 symbols) ingested into a lake, with its book checkpoints written."""
    from engine.book.index import index_lake
    from tests.support.service import make_lake

    lake, _ = make_lake(tmp_path_factory.mktemp("book-lake"), 60_000, ("NVDA", "AAPL", "MSFT"), seed=11)
    index_lake(lake)
    return lake
