"""The real MBO samples as the book tests use them: decoded by databento, as project columns."""

from __future__ import annotations

import numpy as np
import pytest

from engine.book import columns_from_records
from tests.support.oracle import dbn_store
from tests.support.samples import MBO_SAMPLES, SHARED_DBN

__all__ = ["SAMPLES", "sample_columns"]

SAMPLES = MBO_SAMPLES
"""Every sample with MBO records (the LIVE one mixes them with other record types)."""


def sample_columns(name: str) -> dict[str, np.ndarray]:
    """A sample's MBO records decoded by databento (the oracle decoder), as project columns."""
    if SHARED_DBN is None or not (SHARED_DBN / name).exists():
        pytest.skip(f"{name} not found (set DATAPAIR_SHARED_DATA)")
    store = dbn_store(SHARED_DBN / name)
    records = store.to_ndarray(schema="mbo") if "LIVE" in name else store.to_ndarray()
    return columns_from_records(records)
