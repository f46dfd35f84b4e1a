"""Generated days are causal: replayed through the book engine they need no repair (issue 13, part 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.book import OrderBooks
from engine.dbn.columns import iter_column_blocks
from engine.synth.day import write_day

CLEAN = ("unknown_cancel", "unknown_modify", "size_underflow", "side_mismatch", "price_mismatch",
         "duplicate_add", "zero_size", "undef_price", "bad_side", "bad_action", "crossed_at_last",
         "locked_at_last")  # fmt: skip


@pytest.mark.parametrize(("records", "seed", "symbols"), [(300_000, 7, None), (60_000, 3, ("NVDA",))])
def test_generated_days_replay_without_a_single_repair(tmp_path: Path, records: int, seed: int, symbols) -> None:
    path = tmp_path / "day.dbn.zst"
    kwargs = {"symbols": symbols} if symbols else {}
    write_day(path, records, date="2025-10-22", seed=seed, **kwargs)
    books = OrderBooks()
    n = 0
    for block in iter_column_blocks(path):  # the project's own decoding, in feed order
        books.apply(block.arrays)
        n += len(block)
    counters = books.counters
    assert counters["records"] == n == records
    assert {k: counters[k] for k in CLEAN} == dict.fromkeys(CLEAN, 0)
    assert counters["clears"] == len(books.books())  # one R per book, at the session start
    assert books.live_orders < records // 4  # fills are followed by their cancels: the book drains
