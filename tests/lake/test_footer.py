"""The Parquet footer codec and the part assembler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import SinkError
from engine.lake.footer import PartAssembler, _Reader, _write_struct, read_footer


def _table(n: int, offset: int, symbols: list[str]) -> pa.Table:
    rng = np.random.default_rng(offset)
    return pa.table(
        {
            "a": np.arange(offset, offset + n, dtype=np.int64),
            "s": pa.array([symbols[i % len(symbols)] for i in range(n)]).dictionary_encode(),
            "f": rng.random(n),
            "t": pa.array(np.arange(n, dtype=np.int64) + 10**18, pa.timestamp("ns", tz="UTC")),
        }
    )


def test_footer_codec_round_trips_bytes(tmp_path: Path) -> None:
    p = tmp_path / "x.parquet"
    pq.write_table(_table(5000, 0, ["A", "B"]), p, row_group_size=700, compression="zstd")
    footer, _ = read_footer(p)
    out = bytearray()
    _write_struct(out, _Reader(footer).struct())
    assert bytes(out) == footer


@pytest.mark.parametrize("dictionary", [True, False])
def test_part_assembler_equals_concatenation(tmp_path: Path, dictionary: bool) -> None:
    tables = [
        _table(3000, 0, ["NVDA", "AAPL"]),
        _table(1, 3000, ["MSFT"]),
        _table(4500, 3001, ["ZZ", "A B/C"]),
    ]
    parts = []
    for i, t in enumerate(tables):
        p = tmp_path / f"part{i}.parquet"
        pq.write_table(t, p, row_group_size=1000, compression="zstd", use_dictionary=dictionary)
        parts.append(p)
    out = tmp_path / "all.parquet"
    asm = PartAssembler(out)
    for p in parts:
        asm.append(p)
    assert not any(p.exists() for p in parts)  # moved, not copied
    asm.finish({"datapair.rows": "7501", "k": "v"})
    md = pq.read_metadata(out)
    assert md.num_rows == asm.rows == 7501 and md.num_row_groups == asm.row_groups == 3 + 1 + 5
    assert md.metadata[b"datapair.rows"] == b"7501" and md.metadata[b"k"] == b"v"
    expected = pa.concat_tables(tables).combine_chunks()
    got = pq.read_table(out)
    assert got.schema.remove_metadata() == tables[0].schema
    assert got.combine_chunks().cast(expected.schema).equals(expected.cast(expected.schema))
    assert pl.read_parquet(out)["a"].to_list() == expected.column("a").to_pylist()
    g = md.row_group(4)  # the third part's first group: statistics survive
    assert g.column(0).statistics.min == 3001 and g.column(1).statistics.min == "A B/C"


def test_statistics_given_to_the_assembler_are_what_pyarrow_would_write(tmp_path: Path) -> None:
    """A part written without a column's statistics gets them from the assembler: the same footer
    fields pyarrow writes (exact min and max, no nulls), read back by pyarrow and used by Polars."""
    names = sorted(["NVDA", "AAPL", "MSFT", "A B/C"] * 750)  # row groups of 1000 in symbol order, as parts are
    t = _table(3000, 0, ["x"]).set_column(1, "s", pa.array(names).dictionary_encode())
    with_stats, without = tmp_path / "with.parquet", tmp_path / "without.parquet"
    pq.write_table(t, with_stats, row_group_size=1000, write_statistics=["a", "s"])
    pq.write_table(t, without, row_group_size=1000, write_statistics=["a"])
    groups = [t.slice(i, 1000).column("s").cast(pa.string()).to_pylist() for i in range(0, 3000, 1000)]
    bounds = [(min(g).encode(), max(g).encode()) for g in groups]
    out = tmp_path / "out.parquet"
    asm = PartAssembler(out)
    asm.append(without, statistics={1: bounds})
    asm.finish({})
    ref, got = pq.read_metadata(with_stats), pq.read_metadata(out)
    for g in range(3):
        a, b = ref.row_group(g).column(1).statistics, got.row_group(g).column(1).statistics
        assert (b.min, b.max, b.null_count) == (a.min, a.max, a.null_count) == (min(groups[g]), max(groups[g]), 0)
    def stats_fields(path: Path) -> list:  # the raw Thrift Statistics of column 1, row group by row group
        rgs = next(f for f in _Reader(read_footer(path)[0]).struct() if f[0] == 4)[2][1]
        metas = [next(f for f in next(f for f in rg if f[0] == 1)[2][1][1] if f[0] == 3)[2] for rg in rgs]
        return [next(f for f in m if f[0] == 12) for m in metas]

    assert stats_fields(out) == stats_fields(with_stats)  # byte for byte the fields pyarrow writes
    assert pl.scan_parquet(out).filter(pl.col("s") == "NVDA").collect().height == groups_count(groups, "NVDA")
    bad = PartAssembler(tmp_path / "bad.parquet")
    with pytest.raises(SinkError, match="3 row groups, 2 statistics"):
        bad.append(with_stats, delete=False, statistics={1: bounds[:2]})
    bad.abort()


def groups_count(groups: list[list[str]], symbol: str) -> int:
    return sum(g.count(symbol) for g in groups)


def test_part_assembler_rejects_non_parquet(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 but not really a parquet file")
    asm = PartAssembler(tmp_path / "out.parquet")
    with pytest.raises(SinkError, match=r"bad\.parquet"):
        asm.append(bad)
    asm.abort()
    assert not (tmp_path / "out.parquet").exists()


def test_parts_with_a_page_index_are_refused(tmp_path: Path) -> None:
    """The assembler moves column chunks only: an offset index (absolute page offsets) would break."""
    p = tmp_path / "indexed.parquet"
    pq.write_table(_table(3000, 0, ["NVDA"]), p, row_group_size=1000, write_page_index=True)
    asm = PartAssembler(tmp_path / "out.parquet")
    with pytest.raises(SinkError, match=r"offset index|column index"):
        asm.append(p, delete=False)
    asm.abort()
    plain = tmp_path / "plain.parquet"
    pq.write_table(_table(3000, 0, ["NVDA"]), plain, row_group_size=1000)
    assert pq.ParquetFile(plain).metadata.row_group(0).column(0).has_offset_index is False


def test_lake_parts_carry_no_page_index_or_bloom_filter(tmp_path: Path) -> None:
    from engine.dbn.columns import iter_column_blocks
    from engine.lake.options import ParquetOptions
    from engine.synth.day import write_day

    day = write_day(tmp_path / "d.dbn", 5_000, date="2025-10-22", seed=1).path
    kwargs = ParquetOptions().writer_kwargs()
    assert kwargs["write_page_index"] is False
    p = tmp_path / "part.parquet"
    blocks = [b.to_arrow() for b in iter_column_blocks(day)]
    with pq.ParquetWriter(p, blocks[0].schema, **kwargs) as w:
        for b in blocks:
            w.write_batch(b)
    md = pq.ParquetFile(p).metadata
    for g in range(md.num_row_groups):
        for c in range(md.num_columns):
            col = md.row_group(g).column(c)
            assert not col.has_offset_index and not col.has_column_index
