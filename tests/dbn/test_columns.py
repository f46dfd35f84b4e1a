"""Records -> canonical columns and symbology, against databento's ``to_df(map_symbols=True)``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engine.dbn.columns import MBO_SCHEMA, iter_column_blocks
from engine.dbn.kernels import NS_PER_DAY
from engine.dbn.metadata import MBO_DTYPE, Metadata
from engine.dbn.symbology import Symbology
from tests.support.dbn_bytes import day_records, write_dbn
from tests.support.oracle import dbn_store


def read_table(path: Path, block_bytes: int = 1 << 20, symbols: set[str] | None = None) -> pa.Table:
    batches = [b.to_arrow() for b in iter_column_blocks(path, block_bytes, symbols)]
    return pa.Table.from_batches(batches, schema=MBO_SCHEMA)


def oracle_frame(path: Path):
    store = dbn_store(path)
    kwargs = {"schema": "mbo"} if store.schema is None else {}
    df = store.to_df(map_symbols=True, price_type="fixed", pretty_ts=False, **kwargs).reset_index()
    rec = np.asarray(store.to_ndarray(**kwargs))
    return df, rec


def assert_table_equals_source(table: pa.Table, path: Path) -> None:
    df, rec = oracle_frame(path)
    assert table.schema == MBO_SCHEMA
    assert table.num_rows == len(rec) == len(df)
    cols = {name: table.column(name) for name in table.column_names}
    ns = lambda c: c.cast(pa.int64()).to_numpy()  # noqa: E731
    np.testing.assert_array_equal(ns(cols["ts_event"]), rec["ts_event"].astype(np.int64))
    np.testing.assert_array_equal(ns(cols["ts_recv"]), rec["ts_recv"].astype(np.int64))
    np.testing.assert_array_equal(cols["instrument_id"].to_numpy(), rec["instrument_id"].view(np.int32))
    np.testing.assert_array_equal(cols["publisher_id"].to_numpy(), rec["publisher_id"].astype(np.int16))
    np.testing.assert_array_equal(cols["order_id"].to_numpy().view(np.uint64), rec["order_id"])
    np.testing.assert_array_equal(cols["price_raw"].to_numpy(), rec["price"])
    undef = rec["price"] == 2**63 - 1
    np.testing.assert_array_equal(np.isnan(cols["price"].to_numpy()), undef)
    np.testing.assert_array_equal(cols["price"].to_numpy()[~undef], rec["price"][~undef] / 1e9)
    np.testing.assert_array_equal(cols["size"].to_numpy().view(np.uint32), rec["size"])
    np.testing.assert_array_equal(cols["flags"].to_numpy(), rec["flags"].astype(np.int16))
    np.testing.assert_array_equal(cols["channel_id"].to_numpy(), rec["channel_id"].astype(np.int16))
    assert cols["action"].to_pylist() == rec["action"].astype("U1").tolist()
    assert cols["side"].to_pylist() == rec["side"].astype("U1").tolist()
    np.testing.assert_array_equal(cols["ts_in_delta"].to_numpy(), rec["ts_in_delta"])
    np.testing.assert_array_equal(cols["sequence"].to_numpy(), rec["sequence"].astype(np.int64))
    assert cols["symbol"].to_pylist() == df["symbol"].tolist()


def test_samples_to_columns(mbo_sample: Path) -> None:
    assert_table_equals_source(read_table(mbo_sample, 1024), mbo_sample)


@pytest.mark.parametrize("block_bytes", [4096, 56 * 777, 1 << 20])
def test_generated_day_to_columns(make_day, block_bytes: int) -> None:
    path = make_day(records=25_000)
    assert_table_equals_source(read_table(path, block_bytes), path)


def test_symbol_filter(make_day) -> None:
    path = make_day(records=25_000)
    full = read_table(path)
    only = read_table(path, 8192, {"NVDA", "TSLA"})
    want = [s for s in full.column("symbol").to_pylist() if s in {"NVDA", "TSLA"}]
    assert only.column("symbol").to_pylist() == want
    assert only.num_rows == len(want) > 0
    assert read_table(path, 8192, {"NOPE"}).num_rows == 0


@pytest.mark.parametrize("block_bytes", [1 << 12, 1 << 16, 1 << 20])
def test_blocks_never_span_two_days(tmp_path: Path, block_bytes: int) -> None:
    """A file that crosses UTC midnight of ts_recv: every block lies within one day, both days come."""
    both = np.concatenate([day_records(3_000, "2025-10-22", 3, ("NVDA",)), day_records(3_000, "2025-10-23", 4, ("NVDA",))])
    path = write_dbn(tmp_path / "two.dbn.zst", both, ("NVDA",), dt.date(2025, 10, 22), 2)
    blocks = list(iter_column_blocks(path, block_bytes))
    seen = []
    for b in blocks:
        days = b.arrays["ts_recv"] // NS_PER_DAY
        assert (days == days[0]).all()
        seen.append(int(days[0]))
    assert len(set(seen)) == 2 and seen == sorted(seen)
    assert sum(len(b) for b in blocks) == len(both)


def _metadata(mappings) -> Metadata:
    return Metadata(
        3, "XNAS.ITCH", "mbo", 0, None, None, "raw_symbol", "instrument_id", False, 71, mappings=mappings
    )


def test_symbology_reused_ids_and_unmapped() -> None:
    from engine.dbn.metadata import MappingInterval, SymbolMapping

    d = dt.date
    md = _metadata(
        (
            SymbolMapping("AAA", (MappingInterval(d(2025, 1, 1), d(2025, 1, 2), "7"),)),
            SymbolMapping(
                "BBB",
                (
                    MappingInterval(d(2025, 1, 2), d(2025, 1, 4), "7"),
                    MappingInterval(d(2025, 1, 1), d(2025, 1, 2), "8"),
                ),
            ),
        )
    )
    sym = Symbology.from_metadata(md)
    day0 = (d(2025, 1, 1) - d(1970, 1, 1)).days
    iid = np.array([7, 7, 7, 8, 8, 9, 7], dtype=np.int32)
    ts = np.array([day0, day0 + 1, day0 + 2, day0, day0 + 1, day0, day0 + 3], dtype=np.int64) * NS_PER_DAY + 5
    codes = sym.resolve(iid, ts)
    got = [sym.symbols[c] for c in codes]
    assert got == ["AAA", "BBB", "BBB", "BBB", "8", "9", "7"]
    assert sym.unmapped_records == 3
    assert sym.unmapped_ids == {7, 8, 9}


def test_mbo_dtype_is_56_bytes() -> None:
    assert MBO_DTYPE.itemsize == 56
