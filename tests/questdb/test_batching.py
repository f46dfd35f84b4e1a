"""Batching by rows and bytes, and the frames each protocol gets (columns from the arrays, no row loop).

The batching arithmetic and the frames' construction are pure; what the real server makes of
the frames and how big the requests on the wire are is checked against it (marker ``questdb``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import questdb
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dbn.columns import ACTIONS, SIDES
from engine.questdb.conf import QuestDBOptions, parse_questdb_url
from engine.questdb.ddl import MBO_COLUMNS, ensure_tables
from engine.questdb.ilp import Batcher, IlpSender
from engine.questdb.protocols import QWP_SCHEMA, QwpSender, concat_blocks, ilp_frame, qwp_table
from tests.support.blocks import block_of
from tests.support.faultproxy import FaultProxy, drop_request, wait_for
from tests.support.qdb import CANONICAL, assert_same_rows, read_rows, require_protocol, server, wait_count


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
        assert hi > lo
        rows += hi - lo
    assert rows == 20_000


def test_ilp_frame_is_a_view() -> None:
    block = block_of(1000, seed=5)
    df = ilp_frame(block)
    for name in ("order_id", "price_raw", "sequence", "instrument_id", "day_seq"):
        assert np.shares_memory(df[name].to_numpy(), block.arrays[name]), name
    assert df["ts_recv"].to_numpy().view(np.int64).tolist() == block.arrays["ts_recv"].tolist()


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


def _block_frame(block) -> pd.DataFrame:
    """The block as the table must hold it (canonical columns, symbols as text, NaN prices)."""
    a = block.arrays
    cols = {c: a[c].astype(np.int64) for c in CANONICAL if c not in ("symbol", "action", "side", "price")}
    cols["symbol"] = np.array(block.symbols, dtype=object)[a["symbol"]]
    cols["action"] = np.array(ACTIONS, dtype=object)[a["action"]]
    cols["side"] = np.array(SIDES, dtype=object)[a["side"]]
    cols["price"] = a["price"]
    return pd.DataFrame(cols)[list(CANONICAL)]


@pytest.mark.questdb
@pytest.mark.parametrize("protocol", ["ilp-http", "qwp"])
def test_frames_round_trip_exactly(questdb_url: str, questdb_tables: Callable[[str], str], protocol: str) -> None:
    """What each sender puts on the wire lands in the table exactly: ns timestamps, u64 bits, NaN prices."""
    from tests.support.qdb import assert_same_rows

    if protocol == "qwp":
        require_protocol(questdb_url, "qwp")
    t, log = questdb_tables("t_frame"), questdb_tables("t_framelog")
    http = server(questdb_url)
    ensure_tables(http, t, "day", log)
    opts = QuestDBOptions.from_env({}, url=questdb_url, flush_rows=300)
    block = block_of(1000, seed=5)
    sender = QwpSender(opts.address, opts, t) if protocol == "qwp" else IlpSender(opts.address, opts, t, "http")
    try:
        sender.send(block, final=True)
        sender.finish()
    finally:
        sender.close()
    assert wait_count(http, t, 1000) == 1000
    assert_same_rows(read_rows(http, t), _block_frame(block))


@pytest.mark.questdb
@pytest.mark.parametrize(("flush_rows", "batch_bytes"), [(1_000, 3_000_000), (50_000, 100_000)])
def test_ilp_http_requests_are_bounded(
    questdb_url: str, questdb_tables: Callable[[str], str], flush_rows: int, batch_bytes: int
) -> None:
    t, log = questdb_tables("t_batch"), questdb_tables("t_batchlog")
    a = parse_questdb_url(questdb_url)
    ensure_tables(server(questdb_url), t, "day", log)
    with FaultProxy((a.host, a.port)) as p:  # no faults: it measures the requests
        opts = QuestDBOptions.from_env({}, url=p.url, flush_rows=flush_rows, batch_bytes=batch_bytes)
        sender = IlpSender(opts.address, opts, t, "http")
        for i in range(4):  # blocks of 2500 rows: tails are carried into the next request
            blk = block_of(2500, seed=i)
            blk.arrays["day_seq"] = np.arange(2500 * i, 2500 * (i + 1), dtype=np.int64)
            sender.send(blk)
        sender.finish()
        sender.close()
        writes = [n for r, n in zip(p.requests, p.bodies, strict=True) if r.startswith("POST /write")]
    assert len(writes) == sender.stats.requests and sum(writes) == sender.stats.bytes
    assert wait_count(server(questdb_url), t, 10_000) == 10_000 == sender.stats.rows
    assert all(nbytes <= batch_bytes for nbytes in writes)
    if flush_rows == 1_000:  # rows bind: every request full
        assert len(writes) == 10
    else:  # bytes bind: every request but the last nearly full (two connections: any arrival order)
        assert all(nbytes > 0.85 * batch_bytes for nbytes in sorted(writes)[1:])


@pytest.mark.questdb
def test_ilp_http_keeps_requests_in_flight_on_two_connections(
    questdb_url: str, questdb_tables: Callable[[str], str]
) -> None:
    """The proxy holds the first request until a second one arrives: only a sender with two requests
    in flight at once (QDB_ILP_CONNECTIONS=2) gets past it. A request dropped on the way is sent
    again on a new connection, and the table holds every row exactly once. (A sender with one
    request in flight gets past the hold only when the client times the held request out and
    sends it again: one request more than the 10 batches and the one re-sent drop.)"""
    t, log = questdb_tables("t_conns"), questdb_tables("t_connslog")
    a = parse_questdb_url(questdb_url)
    http = server(questdb_url)
    ensure_tables(http, t, "day", log)
    block = block_of(5000, seed=11)
    with FaultProxy(
        (a.host, a.port), match="/write", faults=[wait_for(2), None, None, drop_request(after=200)]
    ) as p:
        opts = QuestDBOptions.from_env({"QDB_ILP_CONNECTIONS": "2"}, url=p.url, flush_rows=500)
        sender = IlpSender(opts.address, opts, t, "http")
        try:
            sender.send(block, final=True)
        finally:
            sender.close()
    assert p.released == [True]
    assert sum(r.startswith("POST /write") for r in p.requests) == 11
    assert (sender.stats.requests, sender.stats.rows, sender.stats.retries) == (10, 5000, 1)
    assert wait_count(http, t, 5000) == 5000
    assert_same_rows(read_rows(http, t), _block_frame(block))
