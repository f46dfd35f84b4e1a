"""Fixtures of the order-book tests: the real MBO samples and a generated day, as project columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import databento as db
import numpy as np
import pytest

from engine.book import columns_from_records

ROOT = Path(__file__).resolve().parents[2]
SHARED = next(
    (
        Path(c)
        for c in (
            os.environ.get("DATAPAIR_SHARED_DATA", ""),
            ROOT.parent / "shared/data/dbn",
            "/work/shared/data/dbn",
        )
        if c and Path(c).is_dir()
    ),
    Path("/work/shared/data/dbn"),
)

SAMPLES = (
    "databento-dbn/test_data.mbo.dbn",
    "databento-dbn/test_data.mbo.v1.dbn.zst",
    "databento-dbn/test_data.mbo.v2.dbn.zst",
    "databento-dbn/test_data.mbo.v3.dbn",
    "databento-dbn/test_data.mbo.v3.dbn.zst",
    "databento-python/GLBX.MDP3/test_data.mbo.dbn.zst",
    "databento-python/IFEU.IMPACT/test_data.mbo.dbn.zst",
    "databento-python/NDEX.IMPACT/test_data.mbo.dbn.zst",
    "databento-python/XNAS.ITCH/test_data.mbo.dbn.zst",
    "databento-python/LIVE/test_data.live.dbn.zst",
)
"""Every sample with MBO records (the LIVE one mixes them with other record types)."""

SYNTH_RECORDS = 200_000
SYNTH_SEED = 7


def sample_columns(name: str) -> dict[str, np.ndarray]:
    """A sample's MBO records decoded by databento (the oracle decoder), as project columns."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    store = db.DBNStore.from_file(path)
    records = store.to_ndarray(schema="mbo") if "LIVE" in name else store.to_ndarray()
    return columns_from_records(records)


@pytest.fixture(params=SAMPLES, ids=lambda s: s.split("/", 1)[1])
def sample(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    return sample_columns(request.param)


@pytest.fixture(scope="session")
def synth_day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """A generated XNAS.ITCH day (``python -m engine.synth``, fixed seed), as project columns."""
    path = tmp_path_factory.mktemp("book") / "day.dbn.zst"
    cmd = [
        sys.executable, "-m", "engine.synth", str(path), "--records", str(SYNTH_RECORDS),
        "--date", "2025-10-22", "--seed", str(SYNTH_SEED),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return columns_from_records(db.DBNStore.from_file(path).to_ndarray())
