"""Batching by rows and bytes, and the frames each protocol gets (columns from the arrays, no row loop)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
import questdb
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dbn.columns import ACTIONS, SIDES
from engine.questdb.conf import QuestDBOptions
from engine.questdb.ddl import MBO_COLUMNS, ensure_tables
from engine.questdb.http import Backoff, QuestDBHttp
from engine.questdb.protocols import QWP_SCHEMA, Batcher, IlpSender, concat_blocks, ilp_frame, qwp_table
from tests.support.blocks import block_of
from tests.support.questdb_fake import FakeQuestDB, parse_ilp


def _run(batcher: Batcher, sizes: np.ndarray, final: bool = True) -> list[tuple[int, int, int]]:
    cum = np.concatenate([[0], np.cumsum(sizes)])
    pending: list[tuple[int, int]] = []

    def serialize(lo: int, hi: int) -> int:
        pending.append((lo, hi))
        return int(cum[hi] - cum[lo])

    out = []
    for lo, hi, size in batcher.batches(len(sizes), serialize, final=final):
        assert pending[-1] == (lo, hi)  # the buffer holds exactly the yielded rows
        out.append((lo, hi, size))
    return out


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 3000),
    flush_rows=st.integers(1, 700),
    batch_bytes=st.integers(1, 60_000),
    lo=st.integers(1, 400),
    spread=st.integers(0, 800),
    seed=st.integers(0, 2**31),
)
def test_batches_respect_rows_and_bytes(
    n: int, flush_rows: int, batch_bytes: int, lo: int, spread: int, seed: int
) -> None:
    sizes = np.random.default_rng(seed).integers(lo, lo + spread + 1, n)
    batches = _run(Batcher(flush_rows, batch_bytes), sizes)
    assert [b[0] for b in batches] == (
        [0] + [b[1] for b in batches[:-1]] if batches else []
    )  # contiguous, in order
    assert (batches[-1][1] if batches else 0) == n  # every row once
    for a, b, size in batches:
        assert 0 < b - a <= flush_rows
        assert size <= batch_bytes or b - a == 1  # a lone row bigger than the cap goes alone
        assert size == int(sizes[a:b].sum())


def test_batches_fill_up_to_the_binding_limit() -> None:
    sizes = np.full(100_000, 250)
    by_bytes = _run(Batcher(50_000, 3_000_000), sizes)
    assert max(b - a for a, b, _ in by_bytes) > 11_000  # ~3 MB / 250 B per row, minus a 3 % margin
    assert all(s <= 3_000_000 for *_, s in by_bytes)
    by_rows = _run(Batcher(5_000, 3_000_000), sizes)
    assert [b - a for a, b, _ in by_rows] == [5_000] * 20


def test_non_final_leaves_the_tail() -> None:
    b = Batcher(100, 10**9)
    out = _run(b, np.full(250, 10), final=False)
    assert [(lo, hi) for lo, hi, _ in out] == [(0, 100), (100, 200)] and b.consumed == 200


def test_real_ilp_buffers_stay_under_the_byte_cap() -> None:
    block = block_of(20_000, seed=3)
    df = ilp_frame(block)
    buf = questdb._client.Buffer(protocol_version=2)
    batcher = Batcher(flush_rows=50_000, batch_bytes=150_000)

    def serialize(lo: int, hi: int) -> int:
        buf.clear()
        buf.dataframe(df.iloc[lo:hi], table_name="t", symbols=["symbol", "action", "side"], at="ts_event")
        return len(buf)

    rows = 0
    for lo, hi, size in batcher.batches(len(df), serialize):
        assert size == len(bytes(buf)) <= 150_000
        parsed = parse_ilp(bytes(buf))
        assert len(parsed) == hi - lo
        assert parsed[0][1]["day_seq"] == lo and parsed[-1][2] == block.arrays["ts_event"][hi - 1]
        rows += hi - lo
    assert rows == 20_000


def test_ilp_frame_is_a_view_and_exact() -> None:
    block = block_of(1000, seed=5)
    df = ilp_frame(block)
    for name in ("order_id", "price_raw", "sequence", "instrument_id", "day_seq"):
        assert np.shares_memory(df[name].to_numpy(), block.arrays[name]), name
    assert df["ts_recv"].to_numpy().view(np.int64).tolist() == block.arrays["ts_recv"].tolist()
    buf = questdb._client.Buffer(protocol_version=2)
    buf.dataframe(df, table_name="t", symbols=["symbol", "action", "side"], at="ts_event")
    rows = parse_ilp(bytes(buf))
    a = block.arrays
    for i in (0, 17, 999):
        _, v, ts = rows[i]
        assert ts == a["ts_event"][i] and v["ts_recv"] == a["ts_recv"][i]  # ns, not us
        assert v["symbol"] == block.symbols[a["symbol"][i]] and v["action"] == ACTIONS[a["action"][i]]
        assert v["order_id"] == a["order_id"][i] and v["price_raw"] == a["price_raw"][i]
        assert (np.isnan(v["price"]) and np.isnan(a["price"][i])) or v["price"] == a["price"][i]


def test_qwp_table_types_match_the_table() -> None:
    block = block_of(500, seed=7)
    tbl = qwp_table(block)
    assert tbl.schema == QWP_SCHEMA
    assert tbl.column_names == [c for c, _ in MBO_COLUMNS]
    ts_type = pa.timestamp("ns", tz="UTC")
    qdb_of = {
        pa.int16(): "SHORT",
        pa.int32(): "INT",
        pa.int64(): "LONG",
        pa.float64(): "DOUBLE",
        ts_type: "TIMESTAMP_NS",
    }
    claims = {"SHORT": b"short", "INT": b"int"}  # without them the client widens int16->INT, int32->LONG
    for (name, qtype), f in zip(MBO_COLUMNS, QWP_SCHEMA, strict=True):
        got = "SYMBOL" if pa.types.is_dictionary(f.type) else qdb_of[f.type]
        assert got == qtype, name
        assert (f.metadata or {}).get(b"questdb.column_type") == claims.get(qtype), name
        assert tbl.schema.field(name).metadata == f.metadata, name
    assert tbl.column("ts_recv").cast(pa.int64()).to_numpy().tolist() == block.arrays["ts_recv"].tolist()
    assert tbl.column("symbol").to_pylist() == [block.symbols[c] for c in block.arrays["symbol"]]
    assert tbl.column("side").to_pylist() == [SIDES[c] for c in block.arrays["side"]]
    assert tbl.column("flags").to_pylist() == block.arrays["flags"].tolist()
    buf = tbl.column("order_id").chunk(0).buffers()[1]
    assert buf.address == block.arrays["order_id"].ctypes.data  # zero copy


def test_concat_blocks_keeps_codes_with_the_latest_dictionary() -> None:
    a = block_of(10, seed=1, symbols=("X", "Y"))
    b = block_of(5, seed=2, symbols=("X", "Y", "Z"))
    c = concat_blocks([a, b])
    assert len(c) == 15 and c.symbols == ["X", "Y", "Z"]
    assert [c.symbols[k] for k in c.arrays["symbol"][:10]] == [a.symbols[k] for k in a.arrays["symbol"]]


@pytest.fixture
def fake() -> Iterator[FakeQuestDB]:
    f = FakeQuestDB()
    yield f
    f.close()


@pytest.mark.parametrize(("flush_rows", "batch_bytes"), [(1_000, 3_000_000), (50_000, 100_000)])
def test_ilp_http_requests_are_bounded(fake: FakeQuestDB, flush_rows: int, batch_bytes: int) -> None:
    opts = QuestDBOptions.from_env({}, url=fake.url, flush_rows=flush_rows, batch_bytes=batch_bytes)
    ensure_tables(QuestDBHttp(opts.address, backoff=Backoff(timeout=1)), "t", "day", "log")
    sender = IlpSender(opts.address, opts, "t", "http")
    for i in range(4):  # blocks of 2500 rows: tails are carried into the next request
        blk = block_of(2500, seed=i)
        blk.arrays["day_seq"] = np.arange(2500 * i, 2500 * (i + 1), dtype=np.int64)
        sender.send(blk)
    sender.finish()
    sender.close()
    assert sum(r for _, r in fake.writes) == 10_000 == len(fake.tables["t"].rows)
    assert all(r <= flush_rows and nbytes <= batch_bytes for nbytes, r in fake.writes)
    if flush_rows == 1_000:  # rows bind: every request full
        assert [r for _, r in fake.writes] == [1_000] * 10
    else:  # bytes bind: every request but the last nearly full
        assert all(nbytes > 0.85 * batch_bytes for nbytes, _ in fake.writes[:-1])
