"""``day_seq`` (the dedup key's record ordinal) and per-file counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.dbn.columns import ColumnBlock, iter_column_blocks
from engine.dbn.kernels import NS_PER_DAY
from engine.questdb.keys import (
    DaySequencer,
    FileStats,
    number_by_key,
    number_by_key_reference,
    number_in_groups,
    number_in_groups_reference,
)
from tests.support.qdb import KEY


@settings(max_examples=200, deadline=None)
@given(
    codes=hnp.arrays(np.int32, st.integers(0, 500), elements=st.integers(0, 9)), start=st.integers(0, 1000)
)
def test_kernel_matches_numpy_reference(codes: np.ndarray, start: int) -> None:
    c1 = np.full(16, start, np.int64)
    c2 = c1.copy()
    out = np.empty(len(codes), np.int64)
    assert number_in_groups(codes, c1, out) == len(codes)
    np.testing.assert_array_equal(out, number_in_groups_reference(codes, c2))
    np.testing.assert_array_equal(c1, c2)


@settings(max_examples=200, deadline=None)
@given(
    keys=hnp.arrays(np.int64, st.integers(0, 400), elements=st.sampled_from([0, 1, 7, 2**31, 2**32 - 1, 6155])),
    extra=st.lists(st.integers(0, 2**32 - 1), max_size=60),
    cut=st.integers(0, 400),
)
def test_hash_numbering_matches_reference(keys: np.ndarray, extra: list[int], cut: int) -> None:
    """Any key mix (many distinct ones force the table to grow), numbered in two calls."""
    keys = np.concatenate([keys, np.array(extra, np.int64)])
    rng = np.random.default_rng(len(keys))
    keys = keys[rng.permutation(len(keys))]
    from engine.questdb.keys import _KeyCounter

    ctr = _KeyCounter(size=4)
    out = np.empty(len(keys), np.int64)
    cut = min(cut, len(keys))
    ctr.number(keys[:cut], out[:cut])
    ctr.number(keys[cut:], out[cut:])
    np.testing.assert_array_equal(out, number_by_key_reference(keys, {}))


def test_hash_kernel_stops_when_half_full() -> None:
    slots, counts, used = np.full(8, -1, np.int64), np.zeros(8, np.int64), np.zeros(1, np.int64)
    out = np.empty(10, np.int64)
    assert number_by_key(np.arange(10, dtype=np.int64), 0, slots, counts, used, out) == 4
    assert used[0] == 4 and out[:4].tolist() == [0, 0, 0, 0]


def _numbered(path: Path, block_bytes: int, symbols: set[str] | None = None) -> pd.DataFrame:
    seq = DaySequencer()
    parts = []
    for b in iter_column_blocks(path, block_bytes, symbols):
        a = b.arrays
        parts.append(pd.DataFrame({
            "ts_event": a["ts_event"], "ts_recv": a["ts_recv"], "publisher_id": a["publisher_id"],
            "instrument_id": a["instrument_id"],
            "symbol": np.array(b.symbols, dtype=object)[a["symbol"]], "sequence": a["sequence"],
            "day_seq": seq.number(b),
        }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_day_seq_is_a_key_and_block_size_free(mbo_sample: Path) -> None:
    small = _numbered(mbo_sample, 1024)
    big = _numbered(mbo_sample, 1 << 22)
    pd.testing.assert_frame_equal(small, big)
    assert not small.duplicated(KEY).any()
    want = small.groupby([small["instrument_id"], small["ts_recv"] // NS_PER_DAY], sort=False).cumcount()
    np.testing.assert_array_equal(small["day_seq"].to_numpy(), want.to_numpy())


def test_day_seq_does_not_depend_on_the_symbol_filter(make_day) -> None:
    path = make_day(records=20_000)
    full = _numbered(path, 1 << 16)
    only = _numbered(path, 1 << 14, {"NVDA", "MSFT"})
    pd.testing.assert_frame_equal(only, full[full["symbol"].isin({"NVDA", "MSFT"})].reset_index(drop=True))


def test_identical_records_get_distinct_keys() -> None:
    n = 6
    a = {k: np.zeros(n, np.int64) for k in ("ts_event", "ts_recv", "order_id", "price_raw", "sequence")}
    a.update(symbol=np.zeros(n, np.int32), publisher_id=np.ones(n, np.int16), instrument_id=np.full(n, 7, np.int32))
    a["ts_recv"][:] = a["ts_event"][:] = 5 * NS_PER_DAY + 7  # six records equal in every field
    seq = DaySequencer()
    assert seq.number(ColumnBlock(a, ["X"])).tolist() == [0, 1, 2, 3, 4, 5]
    assert seq.number(ColumnBlock(a, ["X"])).tolist() == [6, 7, 8, 9, 10, 11]  # continues across blocks
    a2 = dict(a, ts_recv=a["ts_recv"] + NS_PER_DAY)
    assert DaySequencer().number(ColumnBlock(a2, ["X"])).tolist() == [0, 1, 2, 3, 4, 5]
    mixed = dict(
        a,
        ts_recv=np.array([0, 0, 1, 1, 0, 1]) * NS_PER_DAY + 3,
        instrument_id=np.array([7, -5, 7, 7, 7, -5], np.int32),  # -5: a u32 id above 2**31
    )
    assert DaySequencer().number(ColumnBlock(mixed, ["X", "Y"])).tolist() == [0, 0, 0, 1, 1, 0]


def test_day_seq_follows_instruments_not_symbols() -> None:
    """Issue 15.9: the numbers come from instrument ids, so a file whose symbology changed (other
    symbols, two ids on one symbol) numbers its records exactly as before; publishers count together."""
    n = 8
    a = {k: np.zeros(n, np.int64) for k in ("ts_event", "ts_recv", "order_id", "price_raw", "sequence")}
    a["ts_recv"][:] = 3 * NS_PER_DAY + np.arange(n)
    a["instrument_id"] = np.array([1, 2, 1, 1, 2, 1, 2, 2], np.int32)
    a["publisher_id"] = np.array([1, 1, 2, 1, 2, 2, 1, 1], np.int16)
    first = DaySequencer().number(ColumnBlock({**a, "symbol": np.array([0, 1, 0, 0, 1, 0, 1, 1], np.int32)}, ["A", "B"]))
    renamed = DaySequencer().number(ColumnBlock({**a, "symbol": np.zeros(n, np.int32)}, ["C"]))
    assert first.tolist() == renamed.tolist() == [0, 0, 1, 2, 1, 3, 2, 3]


def test_file_stats(make_day) -> None:
    path = make_day(records=20_000)
    stats = FileStats()
    frames = []
    for b in iter_column_blocks(path, 1 << 15):
        stats.add(b)
        frames.append(pd.DataFrame({"symbol": np.array(b.symbols, dtype=object)[b.arrays["symbol"]],
                                    "pub": b.arrays["publisher_id"], "te": b.arrays["ts_event"], "tr": b.arrays["ts_recv"]}))  # fmt: skip
    df = pd.concat(frames)
    assert stats.rows == len(df) == sum(stats.counts.values()) == sum(stats.rows_by_day.values())
    want = {(s, int(p)): int(n) for (s, p), n in df.groupby(["symbol", "pub"]).size().items()}
    assert stats.counts == want
    assert (stats.ts_event_min, stats.ts_event_max) == (df["te"].min(), df["te"].max())
    assert (stats.ts_recv_min, stats.ts_recv_max) == (df["tr"].min(), df["tr"].max())
    assert list(stats.rows_by_day) == ["2025-10-22"]
