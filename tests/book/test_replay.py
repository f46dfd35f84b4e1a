"""The Numba books equal the plain-Python reference book on real samples and on a generated day."""

from __future__ import annotations

import numpy as np

from engine.book import OrderBooks
from tests.book.reference import ReferenceBooks, assert_books_equal, replay
from tests.book.samples import SAMPLES, sample_columns


def test_samples_equal_reference_after_every_record(sample: dict[str, np.ndarray]) -> None:
    books, ref = OrderBooks(), ReferenceBooks()
    n = len(sample["action"])
    assert n > 0
    for i in range(n):
        books.apply(sample, start=i, upto=i + 1)
        replay(ref, sample, i, i + 1)
        assert_books_equal(books, ref, f"row {i}", queues=3)
    assert books.counters["records"] == n


def test_all_samples_in_one_stream() -> None:
    """Books of every sample (CME snapshot, XNAS, ICE, live) side by side in one replay."""
    parts = [sample_columns(name) for name in SAMPLES]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    books, ref = OrderBooks(book_capacity=1), ReferenceBooks()
    books.apply(cols)
    replay(ref, cols, 0, len(cols["action"]))
    assert_books_equal(books, ref, "all samples", queues=10)
    assert len(books.books()) == len(
        {(i, p) for i, p in zip(cols["instrument_id"], cols["publisher_id"], strict=True)}
    )


def test_glbx_snapshot_builds_the_book() -> None:
    """The CME sample is an opening snapshot (F_SNAPSHOT adds): its bids rest in snapshot order."""
    cols = sample_columns("databento-python/GLBX.MDP3/test_data.mbo.dbn.zst")
    assert np.all(cols["flags"] & 32)
    books = OrderBooks()
    books.apply(cols)
    ((iid, pid),) = books.books()
    bids = books.levels(iid, pid, "B")
    assert bids.count.sum() == 4 and bids.size.sum() == cols["size"].sum()
    assert list(bids.price) == sorted(set(cols["price_raw"].tolist()), reverse=True)
    assert len(books.levels(iid, pid, "A").price) == 0


def test_generated_day_at_random_instants(synth_day: dict[str, np.ndarray]) -> None:
    cols = synth_day
    n = len(cols["action"])
    rng = np.random.default_rng(13)
    instants = np.unique(rng.integers(1, n, size=2500))
    books, ref = OrderBooks(order_capacity=1024, pool_capacity=256), ReferenceBooks()
    done = 0
    for j, k in enumerate(instants.tolist()):
        books.apply(cols, start=done, upto=k)
        replay(ref, cols, done, k)
        done = k
        # every level at one instant in ten, the best 10 of each side at the others
        assert_books_equal(books, ref, f"after row {k - 1}", depth=None if j % 10 == 0 else 10)
    books.apply(cols, start=done)
    replay(ref, cols, done, n)
    assert_books_equal(books, ref, "end of day", queues=5)
    c = books.counters
    assert c["records"] == n and c["clears"] == len(set(cols["instrument_id"].tolist()))
