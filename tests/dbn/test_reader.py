"""The streaming DBN reader against databento's own decoder, and its errors on bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dbn.metadata import MBO_DTYPE, MBO_DTYPE_TS_OUT, read_metadata
from engine.dbn.reader import DBNReader
from engine.errors import DecodeError
from tests.support.dbn_bytes import dbn_header, mbo_bytes
from tests.support.oracle import dbn_store
from tests.support.samples import sample_path


def oracle_records(path: Path) -> np.ndarray:
    store = dbn_store(path)
    arr = store.to_ndarray(schema="mbo") if store.schema is None else store.to_ndarray()
    return np.asarray(arr)


def read_all(path: Path, block_bytes: int) -> np.ndarray:
    with DBNReader(path, block_bytes=block_bytes) as reader:
        blocks = list(reader)
    if not blocks:
        return np.empty(0, MBO_DTYPE)
    return np.concatenate(blocks)


def assert_same_records(got: np.ndarray, want: np.ndarray) -> None:
    assert len(got) == len(want)
    for name in MBO_DTYPE.names:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("block_bytes", [1024, 1030, 4096, 1 << 20])
def test_samples_equal_databento(mbo_sample: Path, block_bytes: int) -> None:
    assert_same_records(read_all(mbo_sample, block_bytes), oracle_records(mbo_sample))


def test_metadata_equals_databento(mbo_sample: Path) -> None:
    ours = read_metadata(mbo_sample)
    theirs = dbn_store(mbo_sample).metadata
    assert ours.version == theirs.version
    assert ours.dataset == theirs.dataset
    assert ours.schema == (str(theirs.schema) if theirs.schema is not None else None)
    assert ours.start == theirs.start
    assert ours.end == theirs.end
    assert (ours.limit or 0) == (theirs.limit or 0)
    assert ours.ts_out == theirs.ts_out
    assert list(ours.symbols) == list(theirs.symbols)
    assert list(ours.partial) == list(theirs.partial)
    assert list(ours.not_found) == list(theirs.not_found)
    want = {
        raw: [(i["start_date"], i["end_date"], i["symbol"]) for i in ivs]
        for raw, ivs in theirs.mappings.items()
    }
    got = {m.raw_symbol: [(i.start_date, i.end_date, i.symbol) for i in m.intervals] for m in ours.mappings}
    assert got == want


def test_live_file_keeps_only_mbo_and_counts_others() -> None:
    path = sample_path("databento-python/LIVE/test_data.live.dbn.zst")
    with DBNReader(path) as reader:
        recs = np.concatenate(list(reader))
        assert reader.metadata.schema is None
        assert len(recs) == 5
        assert reader.records_skipped == 41
    import databento_dbn

    want = [
        (
            m.instrument_id,
            m.stype_in_symbol if m.stype_out_symbol.isdigit() else m.stype_out_symbol,
            m.start_ts,
            m.end_ts,
        )
        for m in dbn_store(path)
        if isinstance(m, databento_dbn.SymbolMappingMsg)
    ]
    got = [(m.instrument_id, m.symbol, m.start_ts, m.end_ts) for m in reader.symbol_mappings]
    assert got == want and len(got) == 20


@pytest.mark.parametrize("block_bytes", [1024, 56 * 1000 + 13, 1 << 20])
@pytest.mark.parametrize("zstd", [True, False])
def test_generated_day_equals_databento(make_day, block_bytes: int, zstd: bool) -> None:
    path = make_day(records=30_000, zstd=zstd)
    assert_same_records(read_all(path, block_bytes), oracle_records(path))


def test_blocks_are_views_and_bounded(make_day) -> None:
    path = make_day(records=30_000)
    with DBNReader(path, block_bytes=64 * 1024) as reader:
        sizes = [len(b) for b in reader]
    assert max(sizes) * 56 <= 64 * 1024 + 1024
    assert sum(sizes) == 30_000


def test_ts_out_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ts_out.dbn"
    path.write_bytes(dbn_header(ts_out=1) + mbo_bytes(100, ts_out=True))
    got = read_all(path, 1030)
    assert got.dtype == MBO_DTYPE_TS_OUT
    assert len(got) == 100
    np.testing.assert_array_equal(got["ts_out"] - got["ts_recv"], 5)
    # databento's to_ndarray() ignores ts_out; its record iterator is the oracle here
    msgs = list(dbn_store(path))
    assert [m.ts_out for m in msgs] == got["ts_out"].tolist()
    assert [m.ts_recv for m in msgs] == got["ts_recv"].tolist()
    assert [m.order_id for m in msgs] == got["order_id"].tolist()
    assert [m.price for m in msgs] == got["price"].tolist()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    block_bytes=st.integers(min_value=1024, max_value=20_000),
    pattern=st.lists(st.sampled_from(["mbo", "mapping", "system"]), min_size=0, max_size=120),
)
def test_random_mixes_and_block_sizes(tmp_path: Path, block_bytes: int, pattern: list[str]) -> None:
    """Mixed streams (MBO interleaved with other records) give exactly the MBO records, in order."""
    mbo = np.frombuffer(mbo_bytes(max(len(pattern), 1)), dtype=MBO_DTYPE)
    parts, want = [], []
    for i, kind in enumerate(pattern):
        if kind == "mbo":
            parts.append(mbo[i : i + 1].tobytes())
            want.append(i)
        elif kind == "mapping":  # SymbolMappingMsg v2/v3: 176 bytes
            rec = bytearray(176)
            rec[0], rec[1] = 176 // 4, 0x16
            rec[4:8] = (1000 + i).to_bytes(4, "little")
            rec[17:21] = b"NVDA"
            rec[89:93] = b"1234"
            rec[160:176] = struct.pack("<QQ", 2**64 - 1, 2**64 - 1)
            parts.append(bytes(rec))
        else:  # SystemMsg-like: 320 bytes of text
            rec = bytearray(320)
            rec[0], rec[1] = 320 // 4, 0x17
            parts.append(bytes(rec))
    path = tmp_path / f"mixed-{block_bytes}.dbn"
    path.write_bytes(dbn_header(schema=0xFFFF) + b"".join(parts))
    got = read_all(path, block_bytes)
    assert_same_records(got, mbo[want] if want else np.empty(0, MBO_DTYPE))
    with DBNReader(path, block_bytes) as reader:
        list(reader)
        assert reader.records_skipped == len(pattern) - len(want)
        assert len(reader.symbol_mappings) == pattern.count("mapping")
        assert all(m.symbol == "NVDA" for m in reader.symbol_mappings)


# --- bad input: one error type, naming the file, the offset and what was expected -------------


def _expect(path: Path, *words: str, offset: int | None = -1) -> DecodeError:
    with pytest.raises(DecodeError) as info, DBNReader(path, 1024) as reader:
        list(reader)
    err = info.value
    assert str(path) in str(err)
    if offset != -1:
        assert err.offset == offset
        if offset is not None:
            assert f"at byte {offset}" in str(err)
    for w in words:
        assert w in str(err)
    return err


def test_missing_file(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.dbn.zst", "file not found", offset=None)


def test_not_dbn(tmp_path: Path) -> None:
    p = tmp_path / "x.dbn"
    p.write_bytes(b"PAR1 not dbn at all")
    _expect(p, "not a DBN file", "magic", offset=0)


def test_not_dbn_inside_zstd(tmp_path: Path) -> None:
    p = tmp_path / "x.dbn.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(b"hello world, not dbn"))
    _expect(p, "not a DBN file", offset=0)


def test_old_dbz_format(tmp_path: Path) -> None:
    p = tmp_path / "old.dbz"
    p.write_bytes(struct.pack("<II", 0x184D2A50, 4) + b"\0\0\0\0" + b"rest")
    _expect(p, "DBZ", offset=0)


def test_unsupported_version(tmp_path: Path) -> None:
    p = tmp_path / "v9.dbn"
    p.write_bytes(b"DBN\x09" + dbn_header()[4:])
    _expect(p, "unsupported DBN version 9", offset=3)


def test_schema_other_than_mbo(tmp_path: Path) -> None:
    err = _expect(
        sample_path("databento-python/XNAS.ITCH/test_data.definition.dbn.zst"), "'definition'", "'mbo'"
    )
    assert err.offset is not None
    p = tmp_path / "trades.dbn"
    p.write_bytes(dbn_header(schema=4))
    _expect(p, "schema is 'trades'", "expected 'mbo'")


def test_truncateddbn_header(tmp_path: Path) -> None:
    full = dbn_header()
    p = tmp_path / "short.dbn"
    p.write_bytes(full[:40])
    _expect(p, "truncated header", offset=40)
    p.write_bytes(full[:5])
    _expect(p, "truncated header", offset=5)


def test_truncated_last_record(tmp_path: Path) -> None:
    head = dbn_header()
    p = tmp_path / "cut.dbn.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(head + mbo_bytes(50)[:-20]))
    err = _expect(p, "truncated last record", "36 bytes")
    assert err.offset == len(head) + 49 * 56


@pytest.mark.parametrize("where", ["frame_header", "middle"])
def test_corrupt_zstd(tmp_path: Path, make_day, where: str) -> None:
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(make_day(records=30_000).read_bytes())
    good = zstandard.ZstdCompressor(write_checksum=True).compress(raw)  # as Databento writes them
    pos = 5 if where == "frame_header" else len(good) // 2
    p = tmp_path / "corrupt.dbn.zst"
    p.write_bytes(good[:pos] + bytes(b ^ 0x5A for b in good[pos : pos + 8]) + good[pos + 8 :])
    err = _expect(p, "corrupt zstd")
    assert err.offset is not None and 0 <= err.offset <= len(good)


def test_truncated_zstd_frame(tmp_path: Path, make_day) -> None:
    good = make_day(records=30_000).read_bytes()
    p = tmp_path / "half.dbn.zst"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DecodeError) as info, DBNReader(p, 4096) as reader:
        list(reader)
    assert str(p) in str(info.value)
