"""service.dbjson and service.encoders: databento's JSON byte for byte, every format parses back."""

from __future__ import annotations

import io
import json
import os
import tempfile

import databento as db
import databento_dbn as dbn
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dbn.columns import ANSWER_SCHEMA, MBO_SCHEMA, iter_column_blocks, unsigned_batch
from engine.dbn.kernels import ACTIONS, SIDES
from engine.dbn.metadata import MBO_DTYPE
from engine.errors import QueryError
from engine.synth.day import write_day
from service.dbjson import write_mbo_json
from service.encoders import FORMATS, encode, negotiate
from service.errors import NotAcceptableError
from tests.support.samples import MBO_SAMPLES, SHARED_DBN
from tests.support.tables import plain

# ../shared/data/dbn beside the repository (the work tree and CI's clone alike)
SAMPLES = [str(SHARED_DBN / name) for name in MBO_SAMPLES if "LIVE" not in name] if SHARED_DBN else []


def databento_json(path) -> bytes:
    """The oracle: databento's own JSON encoder over the whole file."""
    with open(path, "rb") as f:
        store = db.DBNStore.from_bytes(f.read())
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.json")
        store.to_json(out, pretty_px=False, pretty_ts=False, map_symbols=False)
        with open(out, "rb") as f:
            return f.read()


def ours_json(path) -> bytes:
    return b"".join(bytes(write_mbo_json(b.to_arrow())) for b in iter_column_blocks(path))


@pytest.fixture(scope="module")
def day_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("enc") / "day.dbn.zst"
    write_day(p, 30_000, ("NVDA", "AAPL", "MSFT"), "2025-10-22", seed=11)
    return p


@pytest.mark.skipif(not SAMPLES, reason="no Databento samples in ../shared/data/dbn")
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.split("/dbn/")[-1])
def test_json_equals_databento_on_samples(path):
    assert ours_json(path) == databento_json(path)


def test_json_equals_databento_on_generated_day(day_file):
    theirs = databento_json(day_file)
    ours = ours_json(day_file)
    assert ours.count(b"\n") == 30_000
    assert ours == theirs


def _records(values: list[tuple]) -> np.ndarray:
    rec = np.zeros(len(values), dtype=MBO_DTYPE)
    rec["length"] = 14
    rec["rtype"] = 0xA0
    for i, (pub, iid, ts_e, oid, px, size, flags, ch, act, side, ts_r, delta, seq) in enumerate(values):
        rec[i] = (
            14,
            0xA0,
            pub,
            iid,
            ts_e,
            oid,
            px,
            size,
            flags,
            ch,
            act.encode(),
            side.encode(),
            ts_r,
            delta,
            seq,
        )
    return rec


def _batch(rec: np.ndarray) -> pa.RecordBatch:
    """The canonical columns of raw records, built directly (no engine code under test)."""
    ts = pa.timestamp("ns", tz="UTC")
    cols = {
        "ts_event": pa.array(rec["ts_event"].view(np.int64)).view(pa.int64()).cast(ts),
        "symbol": pa.array(["X"] * len(rec)).dictionary_encode(),
        "instrument_id": pa.array(rec["instrument_id"].view(np.int32)),
        "publisher_id": pa.array(rec["publisher_id"].view(np.int16)),
        "order_id": pa.array(rec["order_id"].view(np.int64)),
        "price_raw": pa.array(rec["price"]),
        "price": pa.array(np.where(rec["price"] == 2**63 - 1, np.nan, rec["price"] / 1e9)),
        "size": pa.array(rec["size"].view(np.int32)),
        "flags": pa.array(rec["flags"].astype(np.int16)),
        "channel_id": pa.array(rec["channel_id"].astype(np.int16)),
        "action": pa.array([a.decode() for a in rec["action"]]).dictionary_encode(),
        "side": pa.array([s.decode() for s in rec["side"]]).dictionary_encode(),
        "ts_recv": pa.array(rec["ts_recv"].view(np.int64)).view(pa.int64()).cast(ts),
        "ts_in_delta": pa.array(rec["ts_in_delta"]),
        "sequence": pa.array(rec["sequence"].astype(np.int64)),
    }
    return pa.RecordBatch.from_arrays([cols[n] for n in MBO_SCHEMA.names], schema=MBO_SCHEMA)


def _transcode(rec: np.ndarray) -> bytes:
    out = io.BytesIO()
    t = dbn.Transcoder(out, dbn.Encoding.JSON, dbn.Compression.NONE, pretty_px=False, pretty_ts=False,
                       map_symbols=False, has_metadata=False, input_version=3, schema=dbn.Schema.MBO)  # fmt: skip
    t.write(rec.tobytes())
    t.flush()
    return out.getvalue()


_u = st.integers
_record = st.tuples(
    _u(0, 2**16 - 1), _u(0, 2**32 - 1), _u(0, 2**64 - 1), _u(0, 2**64 - 1), _u(-(2**63), 2**63 - 1),
    _u(0, 2**32 - 1), _u(0, 255), _u(0, 255), st.sampled_from(ACTIONS), st.sampled_from(SIDES),
    _u(0, 2**64 - 1), _u(-(2**31), 2**31 - 1), _u(0, 2**32 - 1),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(_record, min_size=1, max_size=20))
def test_json_kernel_matches_transcoder_on_extreme_values(values):
    rec = _records(values)
    assert bytes(write_mbo_json(_batch(rec))) == _transcode(rec)


def test_json_edges_undef_price_and_max_unsigned():
    rec = _records([(65535, 2**32 - 1, 2**64 - 1, 2**64 - 1, 2**63 - 1, 2**32 - 1, 255, 255, "R", "N", 2**64 - 1, -(2**31), 2**32 - 1),
                    (0, 0, 0, 0, -(2**63), 0, 0, 0, "T", "A", 0, 0, 0)])  # fmt: skip
    text = bytes(write_mbo_json(_batch(rec))).decode()
    assert '"price":"9223372036854775807"' in text
    assert '"order_id":"18446744073709551615"' in text
    assert '"price":"-9223372036854775808"' in text
    assert text.encode() == _transcode(rec)


@pytest.fixture(scope="module")
def table(day_file) -> pa.Table:
    return pa.Table.from_batches([b.to_arrow() for b in iter_column_blocks(day_file)]).slice(0, 5_000)


def _body(fmt: str, table: pa.Table, rows_per_batch: int = 777) -> bytes:
    return b"".join(encode(fmt, table.to_batches(max_chunksize=rows_per_batch)))


def test_json_array_and_ndjson_parse_back(table):
    rows = json.loads(_body("json", table))
    lines = _body("ndjson", table).decode().splitlines()
    assert len(rows) == len(lines) == table.num_rows
    assert [json.loads(x) for x in lines] == rows
    ref = plain(table)
    assert [int(r["hd"]["ts_event"]) for r in rows] == ref["ts_event"]
    assert [int(r["ts_recv"]) for r in rows] == ref["ts_recv"]
    assert [int(r["price"]) for r in rows] == ref["price_raw"]
    assert [r["action"] for r in rows] == ref["action"]
    assert [r["sequence"] for r in rows] == ref["sequence"]


def test_json_array_bytes_are_databento_records_joined(table):
    lines = b"".join(bytes(write_mbo_json(b)) for b in table.to_batches()).splitlines()
    assert _body("json", table, 333) == b"[" + b",".join(lines) + b"]"
    assert _body("json", table.slice(0, 0)) == b"[]"
    assert _body("ndjson", table.slice(0, 0)) == b""


@pytest.mark.parametrize("fmt", ["csv", "arrow", "parquet"])
def test_tabular_formats_parse_back(table, fmt):
    body = _body(fmt, table)
    if fmt == "csv":
        back = pacsv.read_csv(io.BytesIO(body))
    elif fmt == "arrow":
        back = ipc.open_stream(body).read_all()
        assert back.schema == ANSWER_SCHEMA
    else:
        back = pq.read_table(pa.BufferReader(body))
        assert back.schema.names == MBO_SCHEMA.names
    assert back.num_rows == table.num_rows
    answered = pa.Table.from_batches([unsigned_batch(b) for b in table.to_batches()])  # the stored bits, unsigned
    assert plain(back) == plain(answered)


@pytest.mark.parametrize("fmt", ["csv", "arrow", "parquet"])
def test_tabular_formats_empty(fmt):
    body = _body(fmt, MBO_SCHEMA.empty_table())
    if fmt == "csv":
        assert body.decode().strip().split(",") == [f'"{n}"' for n in MBO_SCHEMA.names]
    elif fmt == "arrow":
        assert ipc.open_stream(body).read_all().num_rows == 0
    else:
        assert pq.read_table(pa.BufferReader(body)).num_rows == 0


def test_negotiate():
    assert negotiate(None, None) == "json"
    assert negotiate("CSV", "application/json") == "csv"
    assert negotiate(None, "application/vnd.apache.arrow.stream") == "arrow"
    assert negotiate(None, "text/html;q=0.9, application/x-ndjson") == "ndjson"
    assert negotiate(None, "application/vnd.apache.parquet;q=0, */*") == "json"
    assert negotiate(None, "*/*") == "json"
    assert set(FORMATS) == {"json", "ndjson", "csv", "arrow", "parquet"}
    with pytest.raises(QueryError, match="format"):
        negotiate("xml", None)
    with pytest.raises(QueryError, match="format"):
        negotiate(7, None)
    with pytest.raises(NotAcceptableError):
        negotiate(None, "image/png")
