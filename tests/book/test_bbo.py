"""BBO-1s / BBO-1m rows derived by the kernels equal those computed from the reference book."""

from __future__ import annotations

import numpy as np
import pytest

from engine.book import OrderBooks
from engine.book.bbo import BBO_COLUMNS, BboSampler, derive_bbo
from engine.book.codes import ACT_TRADE
from tests.book.reference import reference_bbo
from tests.book.samples import SAMPLES, sample_columns


def assert_rows_equal(got: dict[str, np.ndarray], want: dict[str, list[int]]) -> None:
    assert set(got) == set(BBO_COLUMNS)
    for name in BBO_COLUMNS:
        assert got[name].tolist() == want[name], name


@pytest.mark.parametrize("interval", ["1s", "1m", 250_000_000])
def test_bbo_on_generated_day(synth_day: dict[str, np.ndarray], interval: str | int) -> None:
    cols = {k: v[:40_000] for k, v in synth_day.items()}
    ns = {"1s": 10**9, "1m": 60 * 10**9}.get(interval, interval)  # type: ignore[call-overload]
    got = derive_bbo(OrderBooks(), cols, interval)
    want = reference_bbo(cols, ns)
    assert len(got["ts_recv"]) > 10
    assert_rows_equal(got, want)
    assert np.all(got["ts_recv"] % ns == 0) and np.all(np.diff(got["ts_recv"]) >= 0)


def test_bbo_on_every_sample() -> None:
    parts = [sample_columns(name) for name in SAMPLES]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["ts_recv"], kind="stable")  # the samples are days apart: feed order by ts_recv
    cols = {k: v[order] for k, v in cols.items()}
    assert_rows_equal(derive_bbo(OrderBooks(), cols, "1s"), reference_bbo(cols, 10**9))


def test_bbo_blocks_and_checkpoint_resume(synth_day: dict[str, np.ndarray]) -> None:
    """Blocks, a checkpoint of books and sampler in between, then the rest: the rows of one pass."""
    trades = np.flatnonzero(synth_day["action"][:30_000] == ACT_TRADE)
    end = int(trades[-1]) + 1  # the last interval holds a trade, so the final flush has a row
    cols = {k: v[:end] for k, v in synth_day.items()}
    whole = derive_bbo(OrderBooks(), cols, "1s")
    sampler = BboSampler(OrderBooks(order_capacity=16, book_capacity=1, pool_capacity=16), "1s")
    first = sampler.apply(cols, upto=12_345)
    assert end > 12_345
    books = OrderBooks.from_state_arrays(sampler.books.state_arrays())
    resumed = BboSampler.from_state_arrays(books, sampler.state_arrays())
    second = resumed.apply(cols, start=12_345)
    last = resumed.flush()
    for name in BBO_COLUMNS:
        assert np.concatenate([first[name], second[name], last[name]]).tolist() == whole[name].tolist(), name
    assert len(last["ts_recv"]) > 0


def test_bbo_rejects_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        BboSampler(OrderBooks(), "5s")
    with pytest.raises(ValueError, match="interval"):
        BboSampler(OrderBooks(), 0)
