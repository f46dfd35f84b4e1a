"""Each Numba kernel against a plain-NumPy reference on random input."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.dbn.kernels import (
    ACTION_CODES,
    ACTIONS,
    NS_PER_DAY,
    SIDE_CODES,
    SIDES,
    check_fixed_records,
    decode_records,
    keep_codes,
    map_symbols,
    map_symbols_dense,
    scale_prices,
    split_days,
    walk_records,
)
from engine.dbn.metadata import MBO_DTYPE, UNDEF_PRICE

FAST = settings(max_examples=60, deadline=None)


def random_records(rng: np.random.Generator, n: int) -> np.ndarray:
    rec = np.zeros(n, dtype=MBO_DTYPE)
    raw = rng.integers(0, 256, size=n * 56, dtype=np.uint8)
    rec = raw.view(MBO_DTYPE).copy()
    rec["length"] = 14
    rec["rtype"] = 0xA0
    rec["action"] = rng.choice([a.encode() for a in ACTIONS], size=n)
    rec["side"] = rng.choice([s.encode() for s in SIDES], size=n)
    return rec


@FAST
@given(n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_decode_records_matches_numpy(n: int, seed: int) -> None:
    rec = random_records(np.random.default_rng(seed), n)
    cols = {
        "instrument_id": np.empty(n, np.int32), "publisher_id": np.empty(n, np.int16),
        "ts_event": np.empty(n, np.int64), "order_id": np.empty(n, np.int64),
        "price_raw": np.empty(n, np.int64), "size": np.empty(n, np.int32), "flags": np.empty(n, np.int16),
        "channel_id": np.empty(n, np.int16), "action": np.empty(n, np.int8), "side": np.empty(n, np.int8),
        "ts_recv": np.empty(n, np.int64), "ts_in_delta": np.empty(n, np.int32), "sequence": np.empty(n, np.int64),
    }  # fmt: skip
    words = rec.view(np.uint64).reshape(n, 7)
    bad = decode_records(
        words, ACTION_CODES, SIDE_CODES,
        cols["instrument_id"], cols["publisher_id"], cols["ts_event"], cols["order_id"], cols["price_raw"],
        cols["size"], cols["flags"], cols["channel_id"], cols["action"], cols["side"], cols["ts_recv"],
        cols["ts_in_delta"], cols["sequence"],
    )  # fmt: skip
    assert bad == -1
    np.testing.assert_array_equal(
        cols["instrument_id"], rec["instrument_id"].astype(np.int64).astype(np.uint32).view(np.int32)
    )
    np.testing.assert_array_equal(cols["publisher_id"], rec["publisher_id"].view(np.int16))
    np.testing.assert_array_equal(cols["ts_event"], rec["ts_event"].view(np.int64))
    np.testing.assert_array_equal(cols["order_id"], rec["order_id"].view(np.int64))
    np.testing.assert_array_equal(cols["price_raw"], rec["price"])
    np.testing.assert_array_equal(cols["size"], rec["size"].view(np.int32))
    np.testing.assert_array_equal(cols["flags"], rec["flags"].astype(np.int16))
    np.testing.assert_array_equal(cols["channel_id"], rec["channel_id"].astype(np.int16))
    np.testing.assert_array_equal(np.array(ACTIONS)[cols["action"]], rec["action"].astype("U1"))
    np.testing.assert_array_equal(np.array(SIDES)[cols["side"]], rec["side"].astype("U1"))
    np.testing.assert_array_equal(cols["ts_recv"], rec["ts_recv"].view(np.int64))
    np.testing.assert_array_equal(cols["ts_in_delta"], rec["ts_in_delta"])
    np.testing.assert_array_equal(cols["sequence"], rec["sequence"].astype(np.int64))


def test_decode_records_flags_unknown_action() -> None:
    rec = random_records(np.random.default_rng(0), 10)
    rec["action"][7] = b"Z"
    outs = [np.empty(10, t) for t in (np.int32, np.int16, np.int64, np.int64, np.int64, np.int32, np.int16,
                                       np.int16, np.int8, np.int8, np.int64, np.int32, np.int64)]  # fmt: skip
    assert decode_records(rec.view(np.uint64).reshape(10, 7), ACTION_CODES, SIDE_CODES, *outs) == 7


@FAST
@given(
    hnp.arrays(
        np.int64,
        st.integers(0, 200),
        elements=st.one_of(st.just(int(UNDEF_PRICE)), st.integers(-(2**62), 2**62)),
    )
)
def test_scale_prices_matches_numpy(raw: np.ndarray) -> None:
    out = np.empty(len(raw), np.float64)
    scale_prices(raw, out)
    want = np.where(raw == UNDEF_PRICE, np.nan, raw / 1e9)
    np.testing.assert_array_equal(out, want)


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), m=st.integers(0, 30))
def test_map_symbols_matches_reference(seed: int, n: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.integers(0, 20, m)).astype(np.int64)
    starts = rng.integers(19_000, 19_010, m).astype(np.int64)
    ends = starts + rng.integers(0, 5, m)
    codes = rng.integers(0, 50, m).astype(np.int32)
    iid = rng.integers(0, 22, n).astype(np.uint32).view(np.int32)
    ts = (rng.integers(18_998, 19_016, n) * NS_PER_DAY + rng.integers(0, NS_PER_DAY, n)).astype(np.int64)
    out = np.empty(n, np.int32)
    missing = map_symbols(iid, ts, ids, starts, ends, codes, out)
    want = np.full(n, -1, np.int32)
    for i in range(n):
        day = ts[i] // NS_PER_DAY
        hits = np.nonzero((ids == iid[i]) & (starts <= day) & (day < ends))[0]
        if len(hits):
            want[i] = codes[hits[0]]
    np.testing.assert_array_equal(out, want)
    assert missing == int((want < 0).sum())
    # the dense variant: a table for one day (some ids beyond it) gives the same answers
    day = 19_004
    lut = np.full(15, -1, np.int32)
    for j in range(m - 1, -1, -1):  # the first interval holding the day wins
        if ids[j] < 15 and starts[j] <= day < ends[j]:
            lut[ids[j]] = codes[j]
    dense = np.empty(n, np.int32)
    assert map_symbols_dense(iid, ts, day, lut, ids, starts, ends, codes, dense) == missing
    np.testing.assert_array_equal(dense, want)


@FAST
@given(hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(0, 5 * NS_PER_DAY)))
def test_split_days_matches_numpy(ts: np.ndarray) -> None:
    bounds = np.empty(len(ts) + 2, np.int64)
    k = split_days(ts, bounds)
    days = ts // NS_PER_DAY
    cuts = np.nonzero(np.diff(days))[0] + 1
    want = np.concatenate([[0], cuts, [len(ts)]])
    np.testing.assert_array_equal(bounds[:k], want)


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), k=st.integers(1, 20))
def test_keep_codes_matches_numpy(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, n).astype(np.int32)
    wanted = rng.random(k) < 0.4
    out = np.empty(n, np.bool_)
    kept = keep_codes(codes, wanted, out)
    np.testing.assert_array_equal(out, wanted[codes])
    assert kept == int(wanted[codes].sum())


@FAST
@given(lengths=st.lists(st.sampled_from([14, 20, 44, 80]), max_size=60), cut=st.integers(0, 100))
def test_walk_records_matches_python(lengths: list[int], cut: int) -> None:
    buf = bytearray()
    for w in lengths:
        rec = bytearray(w * 4)
        rec[0], rec[1] = w, 0xA0 if w == 14 else 0x16
        buf += rec
    data = np.frombuffer(bytes(buf[: max(0, len(buf) - cut)]), np.uint8)
    mbo = np.empty(len(data) // 16 + 1, np.int64)
    other = np.empty(len(data) // 16 + 1, np.int64)
    n_mbo, n_other, consumed, err = walk_records(data, 0xA0, 14, mbo, other)
    pos, want_mbo, want_other = 0, [], []
    for w in lengths:
        if pos + w * 4 > len(data):
            break
        (want_mbo if w == 14 else want_other).append(pos)
        pos += w * 4
    assert err == -1
    assert consumed == pos
    assert mbo[:n_mbo].tolist() == want_mbo
    assert other[:n_other].tolist() == want_other


def test_walk_records_rejects_zero_length() -> None:
    data = np.zeros(112, np.uint8)
    data[0], data[1] = 14, 0xA0
    n_mbo, _, consumed, err = walk_records(data, 0xA0, 14, np.empty(10, np.int64), np.empty(10, np.int64))
    assert (n_mbo, consumed, err) == (1, 56, 56)


def test_check_fixed_records() -> None:
    rec = random_records(np.random.default_rng(1), 5)
    data = rec.view(np.uint8)
    assert check_fixed_records(data, 56, 0xA0, 14) == -1
    data = data.copy()
    data[3 * 56 + 1] = 0x16
    assert check_fixed_records(data, 56, 0xA0, 14) == 3 * 56


_BOUNDS_SCRIPT = """
import numpy as np
from engine.dbn.kernels import walk_records

rng = np.random.default_rng(7)
errors = 0
for trial in range(3000):
    n = int(rng.integers(1, 2048))
    data = rng.integers(0, 256, n, dtype=np.uint8)
    if trial % 3 == 0:  # mostly tiny lengths: the records that used to write past the outputs
        data[::4] = rng.integers(0, 5, len(data[::4]), dtype=np.uint8)
    starts = np.empty(n // 16 + 1, dtype=np.int64)
    others = np.empty(n // 16 + 1, dtype=np.int64)
    n_mbo, n_other, consumed, err = walk_records(data, 0xA0, 14, starts, others)
    assert 0 <= consumed <= n and n_mbo + n_other <= len(starts)
    assert err == -1 or (0 <= err < n and data[err] * 4 < 16 or data[err + 1] == 0xA0)
    errors += err >= 0
print("ok", errors)
"""


def test_walk_records_stays_in_bounds_on_corrupt_buffers(tmp_path) -> None:
    """Random corrupt buffers through the record walker with Numba's bounds checks on (issue 15)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    out = subprocess.run([sys.executable, "-c", _BOUNDS_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok ") and int(out.stdout.split()[1]) > 0


def test_walk_records_rejects_records_shorter_than_a_header() -> None:
    from engine.dbn.kernels import walk_records

    for words in (1, 2, 3):
        data = np.zeros(64, dtype=np.uint8)
        data[0], data[1] = words, 0x15
        starts = np.empty(64 // 16 + 1, dtype=np.int64)
        others = np.empty(64 // 16 + 1, dtype=np.int64)
        assert walk_records(data, 0xA0, 14, starts, others)[3] == 0
