"""The lake sink on its own, with the thread encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import engine.lake.encode as encode
from engine.dbn.columns import MBO_SCHEMA, ColumnBlock
from engine.lake.encode import ParquetOptions, ThreadEncoder
from engine.lake.layout import (
    SourceEntry,
    read_lake_info,
)
from engine.lake.sink import ParquetSink

SMALL = ParquetOptions(stripe_rows=4_096, row_group_rows=512, max_row_group_rows=1_024)


def _blocks(n: int, day: int, symbols: list[str], seed: int) -> list[ColumnBlock]:
    rng = np.random.default_rng(seed)
    ns = 86_400 * 10**9
    ts_recv = np.sort(rng.integers(day * ns, (day + 1) * ns, n)).astype(np.int64)
    arrays = {
        "ts_event": ts_recv - rng.integers(0, 10_000, n),
        "symbol": rng.integers(0, len(symbols), n).astype(np.int32),
        "instrument_id": rng.integers(0, 2**31, n).astype(np.int32),
        "publisher_id": rng.integers(0, 100, n).astype(np.int16),
        "order_id": rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
        "price_raw": np.where(rng.random(n) < 0.1, 2**63 - 1, rng.integers(1, 10**12, n)).astype(np.int64),
        "size": rng.integers(0, 2**31, n).astype(np.int32),
        "flags": rng.integers(0, 256, n).astype(np.int16),
        "channel_id": rng.integers(0, 256, n).astype(np.int16),
        "action": rng.integers(0, 7, n).astype(np.int8),
        "side": rng.integers(0, 3, n).astype(np.int8),
        "ts_recv": ts_recv,
        "ts_in_delta": rng.integers(-(2**31), 2**31, n).astype(np.int32),
        "sequence": rng.integers(0, 2**32, n).astype(np.int64),
    }
    arrays["price"] = np.where(arrays["price_raw"] == 2**63 - 1, np.nan, arrays["price_raw"] / 1e9)
    block = ColumnBlock(arrays, symbols)
    cuts = np.sort(rng.integers(0, n, 5))
    return [block.take(slice(lo, hi)) for lo, hi in zip([0, *cuts], [*cuts, n], strict=True)]


def test_parquet_sink_round_trips_columns(tmp_path: Path) -> None:
    symbols = ["ZED", "AAPL", "NVDA", "B"]
    blocks = _blocks(20_000, 20_000, symbols, 1)
    src = tmp_path / "src.dbn"
    src.write_bytes(b"x")
    sink = ParquetSink(tmp_path / "lake", SourceEntry.of_file(src), options=SMALL)
    for b in blocks:
        sink.write(b)
    res = sink.close()
    assert res.rows == 20_000 and len(res.outputs) == 1
    got = pq.read_table(res.outputs[0])
    assert got.schema.remove_metadata() == MBO_SCHEMA
    exp = pa.Table.from_batches([b.to_arrow() for b in blocks], schema=MBO_SCHEMA)
    key = ["ts_recv", "sequence", "order_id"]
    a = (
        got.to_pandas()
        .astype({"symbol": str, "action": str, "side": str})
        .sort_values(key)
        .reset_index(drop=True)
    )
    b = (
        exp.to_pandas()
        .astype({"symbol": str, "action": str, "side": str})
        .sort_values(key)
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(a, b)
    assert read_lake_info(res.outputs[0]).rows == 20_000


def test_parquet_sink_abort_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src.dbn"
    src.write_bytes(b"x")
    lake = tmp_path / "lake"
    sink = ParquetSink(lake, SourceEntry.of_file(src), by_symbol=True, options=SMALL)
    for b in _blocks(10_000, 20_000, ["A", "B"], 2):
        sink.write(b)
    sink.abort()
    assert list(lake.iterdir()) == []


def test_thread_encoder_reports_errors(tmp_path: Path) -> None:
    enc = ThreadEncoder(SMALL)
    slot, _ = enc.acquire()
    job = encode.StripeJob(
        0, "2025-10-22", 10, np.array([0, 10]), ["A"], str(tmp_path / "no" / "dir" / "p")
    )
    enc.submit(slot, job)
    ((seq, error),) = enc.completed(block=True)
    assert seq == 0 and error is not None and enc.free_slots() == SMALL.slots
    enc.close()
