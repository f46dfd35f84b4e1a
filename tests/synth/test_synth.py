"""The synthetic day generator: databento reads what it writes, and the records are a consistent day."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dbn.metadata import MBO_DTYPE, UNDEF_PRICE
from engine.errors import ConfigError
from engine.synth.__main__ import main
from engine.synth.day import DEFAULT_SYMBOLS, generate_blocks, instrument_ids, session_bounds, write_day
from engine.synth.kernels import MAX_EVENT_RECORDS
from tests.support.oracle import dbn_store

DATE = dt.date(2025, 10, 22)
N = 120_000
SEED = 7
F_LAST = 128
TICK = 10_000_000


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "day.dbn.zst"
    summary = write_day(path, N, DEFAULT_SYMBOLS, DATE, SEED)
    assert summary.records == N
    assert summary.bytes_written == path.stat().st_size
    return path


@pytest.fixture(scope="module")
def records(day: Path) -> np.ndarray:
    return dbn_store(day).to_ndarray()


def check_day(rec: np.ndarray, symbols: list[str], date: dt.date) -> None:
    """Every invariant of a generated day, on decoded records."""
    ids = instrument_ids(symbols)
    assert (rec["rtype"] == 0xA0).all() and (rec["length"] == 14).all()
    assert (rec["publisher_id"] == 2).all()
    assert set(np.unique(rec["instrument_id"]).tolist()) <= set(ids.values())

    # time: non-decreasing ts_recv inside the session and the UTC day, ts_event before it
    ts_recv = rec["ts_recv"].astype(np.int64)
    start, end = session_bounds(date)
    assert (np.diff(ts_recv) >= 0).all()
    assert ts_recv[0] >= start and ts_recv[-1] < end
    assert (rec["ts_event"] <= rec["ts_recv"]).all()
    assert (rec["ts_in_delta"] > 0).all()
    lag = ts_recv - rec["ts_event"].astype(np.int64)
    assert ((lag >= 0) & (lag <= rec["ts_in_delta"])).all()
    for iid in np.unique(rec["instrument_id"]):  # the matching engine's clock never goes back per symbol
        assert (np.diff(rec["ts_event"][rec["instrument_id"] == iid].astype(np.int64)) >= 0).all()

    # sequence strictly increasing per channel
    for ch in np.unique(rec["channel_id"]):
        seq = rec["sequence"][rec["channel_id"] == ch].astype(np.int64)
        assert (np.diff(seq) > 0).all()

    # one R per instrument, its first record, with no price / side / size
    action = rec["action"]
    resets = rec[action == b"R"]
    assert sorted(resets["instrument_id"].tolist()) == sorted(ids.values())
    for iid in ids.values():
        assert rec[rec["instrument_id"] == iid][0]["action"] == b"R"
    assert (resets["price"] == UNDEF_PRICE).all() and (resets["side"] == b"N").all()
    assert (resets["size"] == 0).all() and (resets["order_id"] == 0).all()

    # prices on the $0.01 grid, positive sizes
    priced = rec[action != b"R"]
    assert (priced["price"] > 0).all() and (priced["price"] % TICK == 0).all()
    assert (priced["size"] > 0).all()

    # F_LAST on the last record of every ts_recv group, only F_LAST ever set
    last_of_group = np.append(ts_recv[1:] != ts_recv[:-1], True)
    assert (rec["flags"][last_of_group] & F_LAST == F_LAST).all()
    assert set(np.unique(rec["flags"]).tolist()) <= {0, F_LAST}

    check_lifecycles(rec)


def check_lifecycles(rec: np.ndarray) -> None:
    """C/M/F act on live orders of the same instrument and side and never remove more than was added.

    An execution is T (aggressor), F (the resting order, at the best price of its side: price-time
    priority) and C of the filled size (which takes it off the book, as Databento normalizes
    fills). After every event (F_LAST) the book is not crossed.
    """
    live: dict[tuple[int, int], list] = {}  # (iid, oid) -> [side, remaining, added, removed]
    book: dict[tuple[int, bytes], dict[int, int]] = {}  # (iid, side) -> {oid: price}
    rows = list(zip(*(rec[f].tolist() for f in
                      ("instrument_id", "order_id", "action", "side", "size", "price", "ts_recv", "flags")), strict=True))  # fmt: skip
    for i, (iid, oid, action, side, size, price, ts_recv, flags) in enumerate(rows):
        key = (iid, oid)
        if action == b"A":
            assert side in (b"A", b"B") and key not in live
            live[key] = [side, size, size, 0]
            book.setdefault((iid, side), {})[oid] = price
        elif action in (b"C", b"F", b"M"):
            assert key in live, f"record {i}: {action} of unknown order {key}"
            order = live[key]
            assert order[0] == side, f"record {i}: side changed"
            assert 0 < size <= order[1], f"record {i}: {action} size {size} > remaining {order[1]}"
            prices = book[(iid, side)]
            if action == b"F":
                best = max(prices.values()) if side == b"B" else min(prices.values())
                assert price == best == prices[oid], f"record {i}: fill away from the best price"
                nxt = rows[i + 1]  # the fill's cancel takes the filled size off the book
                assert nxt[2] == b"C" and nxt[:2] == (iid, oid) and nxt[4] == size and nxt[5] == price
            elif action == b"M":
                order[1] = size
                prices[oid] = price
            else:
                order[1] -= size
                order[3] += size
                assert order[3] <= order[2]
                if order[1] == 0:
                    del live[key]
                    del prices[oid]
        elif action == b"T":
            assert oid == 0
            if side != b"N":  # a displayed trade: the resting order's fill follows in the same event
                nxt = rows[i + 1]
                assert nxt[2] == b"F" and nxt[0] == iid and nxt[6] == ts_recv
                assert nxt[4] == size and nxt[5] == price and nxt[3] == (b"A" if side == b"B" else b"B")
            else:  # hidden liquidity prints at the touch
                bids, asks = book.get((iid, b"B"), {}), book.get((iid, b"A"), {})
                touch = {max(bids.values())} if bids else set()
                touch |= {min(asks.values())} if asks else set()
                assert not touch or price in touch, f"record {i}: hidden trade away from the touch"
        else:
            assert action == b"R", f"record {i}: unexpected action {action}"
        if flags & F_LAST:
            bids, asks = book.get((iid, b"B"), {}), book.get((iid, b"A"), {})
            if bids and asks:
                assert max(bids.values()) < min(asks.values()), f"record {i}: crossed book after the event"


def test_metadata(day: Path) -> None:
    meta = dbn_store(day).metadata
    ids = instrument_ids(DEFAULT_SYMBOLS)
    assert meta.version == 3
    assert meta.dataset == "XNAS.ITCH"
    assert str(meta.schema) == "mbo"
    assert str(meta.stype_in) == "raw_symbol" and str(meta.stype_out) == "instrument_id"
    assert meta.start == int(dt.datetime(2025, 10, 22, tzinfo=dt.UTC).timestamp()) * 10**9
    assert meta.end == meta.start + 86_400 * 10**9
    assert list(meta.symbols) == list(DEFAULT_SYMBOLS)
    assert set(meta.mappings) == set(DEFAULT_SYMBOLS)
    for sym, intervals in meta.mappings.items():
        assert len(intervals) == 1
        (iv,) = intervals
        assert iv["start_date"] == DATE and iv["end_date"] == DATE + dt.timedelta(days=1)
        assert iv["symbol"] == str(ids[sym])


def test_count_and_symbols(day: Path, records: np.ndarray) -> None:
    assert len(records) == N
    df = dbn_store(day).to_df(map_symbols=True)
    assert len(df) == N
    assert df["symbol"].notna().all()
    ids = instrument_ids(DEFAULT_SYMBOLS)
    assert all(ids[s] == i for s, i in zip(df["symbol"], df["instrument_id"], strict=True))


def test_invariants(records: np.ndarray) -> None:
    check_day(records, list(DEFAULT_SYMBOLS), DATE)


def test_realistic_mix(records: np.ndarray) -> None:
    counts = Counter(records["instrument_id"].tolist())
    ids = instrument_ids(DEFAULT_SYMBOLS)
    assert counts.most_common(1)[0][0] == ids["NVDA"]
    assert 0.25 < counts[ids["NVDA"]] / len(records) < 0.36
    actions = Counter(records["action"].tolist())
    assert {b"A", b"C", b"M", b"F", b"T", b"R"} == set(actions)
    assert (records["side"][records["action"] == b"T"] == b"N").any()  # hidden liquidity trades
    nvda = records[(records["instrument_id"] == ids["NVDA"]) & (records["action"] == b"T")]
    assert 150 < nvda["price"].mean() / 1e9 < 210  # NVDA ~$180
    ts = records["ts_recv"].astype("datetime64[ns]")
    hours = (ts - np.datetime64("2025-10-22T00:00")).astype("timedelta64[h]").astype(int) - 4  # EDT
    regular = ((hours >= 9) & (hours < 16)).mean()
    assert regular > 0.8  # most activity in regular hours


def test_same_seed_same_bytes(tmp_path: Path, day: Path) -> None:
    again = tmp_path / "again.dbn.zst"
    write_day(again, N, DEFAULT_SYMBOLS, DATE, SEED)
    assert again.read_bytes() == day.read_bytes()
    other = tmp_path / "other.dbn.zst"
    write_day(other, N, DEFAULT_SYMBOLS, DATE, SEED + 1)
    assert other.read_bytes() != day.read_bytes()


def test_block_size_and_threads_do_not_change_bytes(tmp_path: Path) -> None:
    outs = []
    for i, (block, threads) in enumerate([(1 << 18, 1), (MAX_EVENT_RECORDS, 1), (1000, 2), (37, 1)]):
        path = tmp_path / f"d{i}.dbn.zst"
        write_day(path, 20_000, ["NVDA", "AAPL", "SPY"], DATE, 3, block_records=block, threads=threads)
        outs.append(path.read_bytes())
    assert all(o == outs[0] for o in outs[1:])


def test_plain_equals_decompressed(tmp_path: Path) -> None:
    plain, packed = tmp_path / "d.dbn", tmp_path / "d.dbn.zst"
    write_day(plain, 5_000, ["NVDA"], DATE, 1)
    write_day(packed, 5_000, ["NVDA"], DATE, 1)
    raw = plain.read_bytes()
    assert raw[:4] == b"DBN\x03"
    assert zstandard.ZstdDecompressor().decompress(packed.read_bytes()) == raw
    blocks = b"".join(b.tobytes() for b in generate_blocks(5_000, ["NVDA"], DATE, 1, block_records=999))
    assert raw.endswith(blocks) and len(blocks) == 5_000 * MBO_DTYPE.itemsize


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**40),
    symbols=st.lists(st.sampled_from(["NVDA", "AAPL", "QQQ", "XYZW", "BRK.B", "A"]), min_size=1,
                     max_size=4, unique=True),
    extra=st.integers(0, 3_000),
    block=st.integers(MAX_EVENT_RECORDS, 600),
)  # fmt: skip
def test_any_day_is_consistent(seed: int, symbols: list[str], extra: int, block: int) -> None:
    n = len(symbols) + extra
    rec = np.concatenate([b.copy() for b in generate_blocks(n, symbols, DATE, seed, block_records=block)])
    assert len(rec) == n
    check_day(rec, symbols, DATE)
    if "NVDA" in symbols and n > 2_000:
        counts = Counter(rec["instrument_id"].tolist())
        assert counts.most_common(1)[0][0] == instrument_ids(symbols)["NVDA"]


def test_winter_day_stays_on_its_utc_date(tmp_path: Path) -> None:
    # 20:00 EST is 01:00 UTC the next day: the session is cut at UTC midnight
    date = dt.date(2025, 1, 15)
    path = tmp_path / "winter.dbn.zst"
    write_day(path, 20_000, ["NVDA", "AMD"], date, 5)
    store = dbn_store(path)
    rec = store.to_ndarray()
    check_day(rec, ["NVDA", "AMD"], date)
    assert int(rec["ts_recv"][0]) == int(dt.datetime(2025, 1, 15, 9, tzinfo=dt.UTC).timestamp()) * 10**9
    assert store.to_df(map_symbols=True)["symbol"].notna().all()


def test_instrument_ids_stable_and_distinct() -> None:
    ids = instrument_ids(DEFAULT_SYMBOLS)
    assert len(set(ids.values())) == len(ids)
    assert instrument_ids(["AMD", "NVDA"]) == {"AMD": ids["AMD"], "NVDA": ids["NVDA"]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"records": 0}, "records"),
        ({"records": 1}, "records"),  # fewer than one R per symbol
        ({"symbols": []}, "symbols"),
        ({"symbols": ["NVDA", "NVDA"]}, "duplicates"),
        ({"date": "2025-13-01"}, "date"),
        ({"seed": -1}, "seed"),
        ({"block_records": 4}, "block_records"),
    ],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"records": 100, "symbols": ["NVDA", "AAPL"], "date": DATE, "seed": 0} | kwargs
    block = args.pop("block_records", 1 << 16)
    with pytest.raises(ConfigError, match=match):
        write_day(tmp_path / "x.dbn.zst", block_records=block, **args)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_a_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.dbn.zst"
    argv = [str(out), "--records", "5000", "--symbols", "NVDA,AAPL", "--date", "2025-10-22", "--seed", "3"]
    assert main(argv) == 0
    assert "5,000 records" in capsys.readouterr().out
    rec = dbn_store(out).to_ndarray()
    assert len(rec) == 5_000
    check_day(rec, ["NVDA", "AAPL"], DATE)
    assert main([*argv, "--quiet"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "extra",
    [
        ["--records", "0"],
        ["--records", "-5"],
        ["--records", "ten"],
        ["--symbols", ""],
        ["--symbols", " , "],
        ["--date", "2025-02-30"],
        ["--records", "1", "--symbols", "NVDA,AAPL"],
        ["--seed", "-3"],
        ["--bogus"],
    ],
)
def test_cli_bad_arguments_exit_2(
    tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bad.dbn.zst"
    assert main([str(out), *extra]) == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()


def test_cli_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing-dir" / "x.dbn.zst"), "--records", "100", "--quiet"]) == 1
    assert "failed" in capsys.readouterr().err


def test_generate_blocks_checks_arguments_eagerly() -> None:
    with pytest.raises(ConfigError, match="records"):
        generate_blocks(0, ["NVDA"])


def test_splitmix64_matches_reference() -> None:
    from engine.synth.kernels import splitmix64

    def reference(state: int) -> tuple[int, int]:
        mask = 2**64 - 1
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return state, z ^ (z >> 31)

    rng = np.array([0], dtype=np.uint64)
    state = 0
    for _ in range(5):
        state, expected = reference(state)
        assert int(splitmix64(rng)) == expected
    assert reference(0)[1] == 0xE220A8397B1DCDAF  # the published first output for seed 0
