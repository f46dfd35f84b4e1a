"""Property tests: random MBO streams (every action, unknown ids, underflows, TOB, bad codes) replayed
by the kernels and by the reference book, compared after every record."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.book import OrderBooks
from tests.book.reference import UNDEF_PRICE, ReferenceBooks, assert_books_equal, replay

BOOKS = ((1, 1), (2, 1), (1, 2), (0xFFFFFFFF, 0xFFFF))
ACTIONS = (0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 4, 5, 6, 9, -1)
PRICES = st.one_of(
    st.integers(95, 105).map(lambda p: p * 10_000_000),
    st.integers(-3, 3),
    st.just(UNDEF_PRICE),
)
RECORD = st.tuples(
    st.integers(0, len(BOOKS) - 1),
    st.sampled_from(ACTIONS),
    st.sampled_from((0, 0, 0, 1, 1, 1, 2)),
    PRICES,
    st.one_of(st.integers(0, 6), st.just(2**32 - 1)),
    st.one_of(st.integers(1, 12), st.just(2**64 - 1)),
    st.sampled_from((0, 128, 128, 128, 32 | 128, 64, 64 | 128, 2)),
)
STREAM = st.lists(RECORD, min_size=1, max_size=150)


def to_columns(records: list[tuple]) -> dict[str, np.ndarray]:
    book, action, side, price, size, oid, flags = (list(c) for c in zip(*records, strict=True))
    return {
        "instrument_id": np.array([BOOKS[b][0] for b in book], dtype=np.uint32).view(np.int32),
        "publisher_id": np.array([BOOKS[b][1] for b in book], dtype=np.uint16).view(np.int16),
        "action": np.array(action, dtype=np.int8),
        "side": np.array(side, dtype=np.int8),
        "price_raw": np.array(price, dtype=np.int64),
        "size": np.array(size, dtype=np.uint32).view(np.int32),
        "order_id": np.array(oid, dtype=np.uint64).view(np.int64),
        "flags": np.array(flags, dtype=np.int16),
    }


@settings(max_examples=300, deadline=None, derandomize=True)
@given(STREAM, st.booleans())
def test_random_streams_equal_reference_after_every_record(records: list[tuple], mixing: bool) -> None:
    cols = to_columns(records)
    # tiny first capacities: every growth path (rehash, pool compaction, more books) runs
    books = OrderBooks(order_capacity=16, book_capacity=1, pool_capacity=16, mixing_hash=mixing)
    ref = ReferenceBooks()
    for i in range(len(records)):
        books.apply(cols, start=i, upto=i + 1)
        replay(ref, cols, i, i + 1)
        assert_books_equal(books, ref, f"after record {i}: {records[i]}", queues=3)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(STREAM, st.data())
def test_checkpoint_anywhere_then_continue(records: list[tuple], data: st.DataObject) -> None:
    cols = to_columns(records)
    cut = data.draw(st.integers(0, len(records)))
    whole = OrderBooks(order_capacity=16, book_capacity=1, pool_capacity=16)
    whole.apply(cols)
    first = OrderBooks(order_capacity=16, book_capacity=1, pool_capacity=16)
    first.apply(cols, upto=cut)
    resumed = OrderBooks.from_state_arrays(first.state_arrays())
    resumed.apply(cols, start=cut)
    a, b = whole.state_arrays(), resumed.state_arrays()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    ref = ReferenceBooks()
    replay(ref, cols, 0, len(records))
    assert_books_equal(resumed, ref, "resumed", queues=5)


def test_strided_order_ids_switch_to_the_mixing_hash() -> None:
    """Ids 2**20 apart all land on one slot run with the sequential hash; the table notices."""
    n = 6000
    cols = {
        "instrument_id": np.ones(2 * n, np.int32),
        "publisher_id": np.ones(2 * n, np.int16),
        "action": np.r_[np.zeros(n, np.int8), np.ones(n, np.int8)],
        "side": np.r_[np.arange(n) % 2, np.arange(n) % 2].astype(np.int8),
        "price_raw": np.r_[np.arange(n) % 50, np.arange(n) % 50].astype(np.int64) * 10_000_000 + 10**11,
        "size": np.full(2 * n, 3, np.int32),
        "order_id": np.r_[np.arange(n), np.arange(n)[::-1]].astype(np.int64) << 20,
        "flags": np.full(2 * n, 128, np.int16),
    }
    books, ref = OrderBooks(), ReferenceBooks()
    books.apply(cols, upto=n)
    assert books.mixing_hash
    replay(ref, cols, 0, n)
    assert_books_equal(books, ref, "after the adds", queues=50)
    books.apply(cols, start=n)
    replay(ref, cols, n, 2 * n)
    assert_books_equal(books, ref, "after the cancels")
    assert books.live_orders == 0
