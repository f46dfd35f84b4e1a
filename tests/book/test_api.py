"""The Python face of the books: reads, merged view, order lookup, codes, checkpoints, errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.book import (
    ACTIONS,
    COUNTERS,
    SIDES,
    OrderBooks,
    action_codes,
    book_key,
    columns_from_records,
    side_codes,
)
from engine.book.codes import side_code
from tests.book.reference import ReferenceBooks, assert_books_equal, replay


def columns(rows: list[tuple]) -> dict[str, np.ndarray]:
    """(instrument, publisher, action letter, side letter, price, size, order_id, flags) rows."""
    iid, pid, act, side, px, sz, oid, fl = (list(c) for c in zip(*rows, strict=True))
    return {
        "instrument_id": np.array(iid, np.int32),
        "publisher_id": np.array(pid, np.int16),
        "action": np.array([ACTIONS.index(a) for a in act], np.int8),
        "side": np.array([SIDES.index(s) for s in side], np.int8),
        "price_raw": np.array(px, np.int64),
        "size": np.array(sz, np.int32),
        "order_id": np.array(oid, np.uint64).view(np.int64),
        "flags": np.array(fl, np.int16),
    }


TWO_VENUES = [
    (7, 1, "A", "B", 100, 5, 1, 128),
    (7, 1, "A", "B", 99, 3, 2, 128),
    (7, 1, "A", "A", 101, 4, 3, 128),
    (7, 2, "A", "B", 100, 2, 1, 128),  # same order id, other publisher: another book
    (7, 2, "A", "B", 98, 1, 2, 128),
    (7, 2, "A", "A", 101, 6, 3, 128),
    (7, 2, "A", "A", 102, 1, 4, 128),
    (8, 1, "A", "B", 50, 9, 9, 128),
]


def test_merged_levels_sum_publishers() -> None:
    books = OrderBooks()
    books.apply(columns(TWO_VENUES))
    bids = books.merged_levels(7, "B")
    assert bids.price.tolist() == [100, 99, 98]
    assert bids.size.tolist() == [7, 3, 1] and bids.count.tolist() == [2, 1, 1]
    asks = books.merged_levels(7, "A", depth=1)
    assert (asks.price.tolist(), asks.size.tolist(), asks.count.tolist()) == ([101], [10], [2])
    assert len(books.merged_levels(9, "A")) == 0


def test_orders_in_queue_order_and_order_lookup() -> None:
    rows = [
        (1, 1, "A", "B", 100, 5, 11, 128),
        (1, 1, "A", "B", 100, 3, 12, 128),
        (1, 1, "A", "B", 100, 4, 13, 128),
        (1, 1, "M", "B", 100, 6, 11, 128),  # larger: back of the queue
        (1, 1, "M", "B", 100, 1, 12, 128),  # smaller: keeps its place
        (1, 1, "C", "B", 100, 2, 13, 128),  # partial cancel
        (1, 1, "A", "A", 105, 1, 2**64 - 1, 128),  # a uint64 id above 2**63
    ]
    books = OrderBooks()
    books.apply(columns(rows))
    q = books.orders(1, 1, "B", 100)
    assert q.order_id.tolist() == [12, 13, 11] and q.size.tolist() == [1, 2, 6]
    assert np.all(np.diff(q.priority) > 0)
    assert books.order(1, 1, 11) == {"side": 1, "price": 100, "size": 6, "priority": int(q.priority[2])}
    assert books.order(1, 1, 2**64 - 1)["price"] == 105  # type: ignore[index]
    assert books.order(1, 1, 99) is None and books.order(5, 5, 11) is None
    assert len(books.orders(1, 1, "A", 100).order_id) == 0 and len(books.orders(3, 3, "A", 1).order_id) == 0
    assert books.levels(1, 1, "B").size.tolist() == [9]
    assert books.book_index(1, 1) == 0 and books.book_index(2, 2) is None
    assert books.books() == [(1, 1)] and books.live_orders == 4


def test_checkpoint_of_a_generated_day(synth_day: dict[str, np.ndarray]) -> None:
    cols = synth_day
    cut = len(cols["action"]) // 3
    whole = OrderBooks()
    whole.apply(cols)
    part = OrderBooks()
    part.apply(cols, upto=cut)
    saved = part.state_arrays()
    assert all(isinstance(v, np.ndarray) for v in saved.values())
    resumed = OrderBooks.from_state_arrays({k: v.copy() for k, v in saved.items()})
    assert resumed.state_arrays().keys() == saved.keys()
    assert all(np.array_equal(resumed.state_arrays()[k], v) for k, v in saved.items())
    resumed.apply(cols, start=cut)
    a, b = whole.state_arrays(), resumed.state_arrays()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    ref = ReferenceBooks()
    replay(ref, cols, 0, len(cols["action"]))
    assert_books_equal(resumed, ref, "resumed day", queues=3)


def test_checkpoint_is_validated() -> None:
    saved = OrderBooks().state_arrays()
    with pytest.raises(ValueError, match="lack order_id"):
        OrderBooks.from_state_arrays({k: v for k, v in saved.items() if k != "order_id"})
    with pytest.raises(ValueError, match="format"):
        OrderBooks.from_state_arrays({**saved, "scalars": np.array([99, 0, 0])})
    with pytest.raises(ValueError, match="counters"):
        OrderBooks.from_state_arrays({**saved, "counters": np.zeros(3, np.int64)})


def test_codes_helpers_and_columns_from_records() -> None:
    assert action_codes(np.array([b"A", b"C", b"M", b"R", b"T", b"F", b"N", b"X"], "S1")).tolist() == [
        0, 1, 2, 3, 4, 5, 6, -1,
    ]  # fmt: skip
    assert side_codes(np.array([b"A", b"B", b"N", b"?"], "S1")).tolist() == [0, 1, 2, -1]
    assert side_code("bid") == 1 and side_code("A") == 0 and side_code(2) == 2
    with pytest.raises(ValueError, match="side"):
        side_code("X")
    with pytest.raises(ValueError, match="side"):
        side_code(5)
    recs = np.zeros(2, dtype=[("rtype", "u1"), ("ts_event", "<u8"), ("instrument_id", "<u4"),
                              ("publisher_id", "<u2"), ("order_id", "<u8"), ("price", "<i8"), ("size", "<u4"),
                              ("flags", "u1"), ("action", "S1"), ("side", "S1"), ("ts_recv", "<u8"),
                              ("ts_in_delta", "<i4"), ("sequence", "<u4")])  # fmt: skip
    recs["rtype"] = [0xA0, 0x16]
    recs["order_id"] = [2**64 - 1, 0]
    recs["size"] = [2**32 - 1, 0]
    recs["action"] = [b"A", b"A"]
    recs["side"] = [b"B", b"B"]
    cols = columns_from_records(recs)
    assert len(cols["action"]) == 1 and cols["order_id"][0] == -1 and cols["size"][0] == -1
    assert book_key(0xFFFFFFFF, 0xFFFF) == 2**48 - 1
    assert len(COUNTERS) == len(set(COUNTERS))


def test_apply_checks_rows_and_sides() -> None:
    books = OrderBooks()
    cols = columns(TWO_VENUES)
    with pytest.raises(ValueError, match="outside the block"):
        books.apply(cols, upto=99)
    with pytest.raises(ValueError, match="outside the block"):
        books.apply(cols, start=5, upto=4)
    with pytest.raises(ValueError, match="`price_raw` has 3 rows"):
        books.apply({**cols, "price_raw": cols["price_raw"][:3]})
    with pytest.raises(ValueError, match="lack flags"):
        books.apply({k: v for k, v in cols.items() if k != "flags"})
    with pytest.raises(ValueError, match="`action` must be a 1-d integer array"):
        books.apply({**cols, "action": np.array([b"A"] * len(TWO_VENUES), "S1")})
    assert books.counters["records"] == 0
    books.apply(cols)
    with pytest.raises(ValueError, match="'A' \\(ask\\) or 'B' \\(bid\\)"):
        books.levels(7, 1, "N")
    assert books.counters["records"] == len(TWO_VENUES)


def test_a_source_change_drops_the_numba_cache(tmp_path) -> None:
    """Cached kernels compile in other modules' constants: any source change must drop them all."""
    from engine.book.cache import drop_stale_cache

    (tmp_path / "state.py").write_text("SW = 5\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (cache / "bbo.bbo_block-1.py311.nbi").write_bytes(b"x")
    assert drop_stale_cache(tmp_path)
    assert not list(cache.glob("*.nbi"))
    (cache / "bbo.bbo_block-1.py311.nbi").write_bytes(b"x")
    assert not drop_stale_cache(tmp_path)  # same sources: the cache stays
    assert list(cache.glob("*.nbi"))
    (tmp_path / "state.py").write_text("SW = 6\n")
    assert drop_stale_cache(tmp_path)
    assert not list(cache.glob("*.nbi"))
