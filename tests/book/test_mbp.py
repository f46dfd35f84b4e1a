"""MBP-N rows derived by the kernels, checked record by record against the reference book.

No Databento MBP-10 file is among the samples in ../shared/data/dbn (only MBO and definition
files), so the rows are checked against the reference book and the emission rule of
:mod:`engine.book.mbp`, not against Databento's own MBP output.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.book import OrderBooks
from engine.book.mbp import derive_mbp, iter_mbp, level_columns, price_to_float
from tests.book.reference import (
    ACTIONS,
    ASK,
    BID,
    CLEAR,
    TRADE,
    UNDEF_PRICE,
    ReferenceBooks,
    mbp_levels,
    replay,
    top,
)
from tests.book.samples import SAMPLES, sample_columns


def check_mbp(cols: dict[str, np.ndarray], rows: dict[str, np.ndarray], depth: int) -> int:
    """Replay the reference record by record; every emitted row, and every silence, must fit."""
    ref = ReferenceBooks()
    at = {int(r): k for k, r in enumerate(rows["row"])}
    assert len(at) == len(rows["row"]), "at most one MBP row per record"
    assert np.all(np.diff(rows["row"]) > 0), "MBP rows keep feed order"
    for i in range(len(cols["action"])):
        key = (int(cols["instrument_id"][i]) & 0xFFFFFFFF, int(cols["publisher_id"][i]) & 0xFFFF)
        before = top(ref, key, depth)
        dup = ref.counters["duplicate_add"]
        tob = ref.counters["tob_updates"]
        replay(ref, cols, i, i + 1)
        after = top(ref, key, depth)
        action = ACTIONS[cols["action"][i]] if 0 <= cols["action"][i] < 7 else "?"
        k = at.get(i)
        if action == TRADE:
            assert k is not None, f"trade at row {i} emits a row"
        elif k is None:
            assert after == before, f"row {i} ({action}) changed the top {depth} without an MBP row"
            continue
        else:
            silent_ok = (
                action == CLEAR or ref.counters["duplicate_add"] > dup or ref.counters["tob_updates"] > tob
            )
            assert after != before or silent_ok, f"row {i} ({action}) emitted without a change"
        assert mbp_levels(rows, depth, k) == after, f"levels of the MBP row of record {i}"
        for name in ("ts_recv", "ts_event", "action", "side", "price_raw", "size", "flags", "sequence"):
            assert rows[name][k] == cols[name][i], name
        d = int(rows["depth"][k])
        side = int(cols["side"][i])
        price = int(cols["price_raw"][i])
        if action == TRADE:
            resting = ref.levels(*key, BID if side != BID else ASK)
            if side == 2 and price not in [p for p, _, _ in resting]:
                resting = ref.levels(*key, ASK)
            prices = [p for p, _, _ in resting]
            assert d == (prices.index(price) if price in prices else 0), f"trade depth, row {i}"
        elif action in "ACM" and side in (ASK, BID) and not silent_ok:
            now = [p for p, _, _ in after[1 - side]]
            was = [p for p, _, _ in before[1 - side]]
            if price in now:
                assert d == now.index(price), f"depth of row {i}"
            elif price in was and action == "C":
                assert d == was.index(price), f"depth before removal, row {i}"
            assert 0 <= d < depth or action == "M"
    return len(rows["row"])


@pytest.mark.parametrize("depth", [10, 1, 3])
def test_mbp_on_generated_day(synth_day: dict[str, np.ndarray], depth: int) -> None:
    cols = {k: v[:25_000] for k, v in synth_day.items()}
    rows = derive_mbp(OrderBooks(), cols, depth=depth)
    assert set(level_columns(depth)) <= rows.keys()
    emitted = check_mbp(cols, rows, depth)
    trades = int(np.sum(cols["action"] == ACTIONS.index(TRADE)))
    assert emitted > trades


def test_mbp_on_every_sample() -> None:
    parts = [sample_columns(name) for name in SAMPLES]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    rows = derive_mbp(OrderBooks(), cols, depth=10)
    assert check_mbp(cols, rows, 10) > 0


def test_mbp_chunks_and_blocks_do_not_change_rows(synth_day: dict[str, np.ndarray]) -> None:
    """Tiny output chunks and two input blocks give the rows of one pass, and the same books."""
    cols = {k: v[:20_000] for k, v in synth_day.items()}
    whole_books = OrderBooks()
    whole = derive_mbp(whole_books, cols, depth=5)
    books = OrderBooks(order_capacity=16, book_capacity=1, pool_capacity=16)
    chunks = list(iter_mbp(books, cols, depth=5, upto=7_000, chunk_rows=97))
    chunks += list(iter_mbp(books, cols, depth=5, start=7_000, chunk_rows=1000))
    assert all(len(c["row"]) <= 1000 for c in chunks)
    for name, arr in whole.items():
        assert np.array_equal(np.concatenate([c[name] for c in chunks]), arr), name
    a, b = whole_books.state_arrays(), books.state_arrays()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_price_to_float() -> None:
    got = price_to_float(np.array([1_500_000_000, UNDEF_PRICE, -2], np.int64))
    assert got[0] == 1.5 and np.isnan(got[1]) and got[2] == -2e-9


def test_mbp_rejects_a_bad_depth(synth_day: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="depth"):
        derive_mbp(OrderBooks(), synth_day, depth=0)
