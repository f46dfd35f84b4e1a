"""Where the real Databento samples are (../shared/data/dbn), and which of them hold MBO records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["MBO_SAMPLES", "ROOT", "SHARED_DBN", "sample_path"]

ROOT = Path(__file__).resolve().parents[2]


def _shared_dbn() -> Path | None:
    candidates = [
        os.environ.get("DATAPAIR_SHARED_DATA", ""),
        ROOT.parent / "shared/data/dbn",
        "/work/shared/data/dbn",
    ]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


SHARED_DBN = _shared_dbn()

MBO_SAMPLES = (
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
"""Every sample holding MBO records (the LIVE one mixes them with other record types)."""


def sample_path(name: str) -> Path:
    """A sample file from ../shared/data/dbn (tests skip when the shared folder is absent)."""
    if SHARED_DBN is None:
        pytest.skip("../shared/data/dbn not found (set DATAPAIR_SHARED_DATA)")
    return SHARED_DBN / name
