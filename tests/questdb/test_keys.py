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
from engine.questdb.keys import DaySequencer, FileStats, number_in_groups, number_in_groups_reference
from tests.support.questdb_fake import KEY


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


def _numbered(path: Path, block_bytes: int, symbols: set[str] | None = None) -> pd.DataFrame:
    seq = DaySequencer()
    parts = []
    for b in iter_column_blocks(path, block_bytes, symbols):
        a = b.arrays
        parts.append(pd.DataFrame({
            "ts_event": a["ts_event"], "ts_recv": a["ts_recv"], "publisher_id": a["publisher_id"],
            "symbol": np.array(b.symbols, dtype=object)[a["symbol"]], "sequence": a["sequence"],
            "day_seq": seq.number(b),
        }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_day_seq_is_a_key_and_block_size_free(mbo_sample: Path) -> None:
    small = _numbered(mbo_sample, 1024)
    big = _numbered(mbo_sample, 1 << 22)
    pd.testing.assert_frame_equal(small, big)
    assert not small.duplicated(KEY).any()
    want = small.groupby([small["symbol"], small["ts_recv"] // NS_PER_DAY], sort=False).cumcount()
    np.testing.assert_array_equal(small["day_seq"].to_numpy(), want.to_numpy())


def test_day_seq_does_not_depend_on_the_symbol_filter(make_day) -> None:
    path = make_day(records=20_000)
    full = _numbered(path, 1 << 16)
    only = _numbered(path, 1 << 14, {"NVDA", "MSFT"})
    pd.testing.assert_frame_equal(only, full[full["symbol"].isin({"NVDA", "MSFT"})].reset_index(drop=True))


def test_identical_records_get_distinct_keys() -> None:
    n = 6
    a = {k: np.zeros(n, np.int64) for k in ("ts_event", "ts_recv", "order_id", "price_raw", "sequence")}
    a.update(symbol=np.zeros(n, np.int32), publisher_id=np.ones(n, np.int16))
    a["ts_recv"][:] = a["ts_event"][:] = 5 * NS_PER_DAY + 7  # six records equal in every field
    seq = DaySequencer()
    assert seq.number(ColumnBlock(a, ["X"])).tolist() == [0, 1, 2, 3, 4, 5]
    assert seq.number(ColumnBlock(a, ["X"])).tolist() == [6, 7, 8, 9, 10, 11]  # continues across blocks
    a2 = dict(a, ts_recv=a["ts_recv"] + NS_PER_DAY)
    assert DaySequencer().number(ColumnBlock(a2, ["X"])).tolist() == [0, 1, 2, 3, 4, 5]
    mixed = dict(
        a,
        ts_recv=np.array([0, 0, 1, 1, 0, 1]) * NS_PER_DAY + 3,
        symbol=np.array([0, 1, 0, 0, 0, 1], np.int32),
    )
    assert DaySequencer().number(ColumnBlock(mixed, ["X", "Y"])).tolist() == [0, 0, 0, 1, 1, 0]


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
