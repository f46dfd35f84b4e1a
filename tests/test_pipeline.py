"""The pieces under the ingest: lake kernels (vs NumPy), Parquet part assembly, the process pool,
lake naming and the progress helpers."""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.pipeline as pipeline
from engine.columns import MBO_SCHEMA, ColumnBlock
from engine.errors import SinkError
from engine.kernels_lake import cut_row_groups, gather_rows, sort_by_symbol_time
from engine.lake import (
    SourceEntry,
    lake_file_name,
    list_lake,
    parse_lake_name,
    read_lake_info,
    remove_stale_temps,
    temp_path,
)
from engine.parquet_footer import PartAssembler, _Reader, _write_struct, read_footer
from engine.pipeline import FileOutcome, ProgressEvent, run_pipeline, slot_views
from engine.progress import ProgressBoard, format_count, show_progress, summary_line
from engine.sinks.base import FileSink, SinkResult
from engine.sinks.parquet import ParquetOptions, ParquetSink, ThreadEncoder
from tests.conftest import sample_path

SMALL = ParquetOptions(stripe_rows=4_096, row_group_rows=512, max_row_group_rows=1_024)


# -- kernels against NumPy references ----------------------------------------------------------------


def ref_sort(codes: np.ndarray, rank: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Stable order by (rank of code, ts_event): ties keep arrival order."""
    return np.lexsort((np.arange(len(codes)), ts, rank[codes]))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 3000),
    m=st.integers(1, 12),
    disorder=st.sampled_from([0, 3, 50, 10**12]),
    seed=st.integers(0, 2**32 - 1),
)
def test_sort_by_symbol_time_matches_lexsort(n: int, m: int, disorder: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, m, n).astype(np.int32)
    rank = rng.permutation(m).astype(np.int32)
    # arrival order with jitter: 0 = sorted, small = nearly sorted (insertion sort), huge = random (merge sort)
    ts = (np.arange(n, dtype=np.int64) * 10 + rng.integers(0, disorder + 1, n)).astype(np.int64)
    ts[rng.random(n) < 0.05] = 7  # ties
    perm = np.empty(n, np.int64)
    run_ranks = np.empty(m + 1, np.int64)
    run_starts = np.empty(m + 1, np.int64)
    runs = sort_by_symbol_time(codes, rank, ts, perm, run_ranks, run_starts)
    np.testing.assert_array_equal(perm, ref_sort(codes, rank, ts))
    present = np.unique(rank[codes])
    assert runs == len(present)
    np.testing.assert_array_equal(run_ranks[:runs], present)
    counts = np.bincount(rank[codes], minlength=m)[present]
    np.testing.assert_array_equal(run_starts[: runs + 1], np.concatenate([[0], np.cumsum(counts)]))


def ref_cut(starts: list[int], target: int, max_rows: int) -> list[int]:
    """Plain-Python statement of the row-group rule."""
    bounds, start = [0], 0
    for s, e in itertools.pairwise(starts):
        if e - s >= target:
            if s > start:
                bounds.append(s)
            parts = -(-(e - s) // max_rows)
            bounds += [s + (e - s) * p // parts for p in range(1, parts)] + [e]
            start = e
        elif e - start >= target:
            bounds.append(e)
            start = e
    if start < starts[-1]:
        bounds.append(starts[-1])
    return bounds


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), max_size=40), target=st.integers(1, 2000), extra=st.integers(0, 3000)
)
def test_cut_row_groups_matches_reference(sizes: list[int], target: int, extra: int) -> None:
    max_rows = target + extra
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(starts[-1])
    bounds = np.empty(len(sizes) + n // max_rows + 2, np.int64)
    k = cut_row_groups(starts, len(sizes), target, max_rows, bounds)
    got = bounds[:k].tolist()
    assert got == ref_cut(starts.tolist(), target, max_rows)
    sizes_out = np.diff(got)
    assert (sizes_out > 0).all() and (sizes_out <= max(max_rows, target - 1 + max(sizes, default=0))).all()
    for lo, hi in itertools.pairwise(got):  # a group is whole runs or part of one big run
        inner = starts[(starts > lo) & (starts < hi)]
        assert len(inner) == 0 or (lo in starts and hi in starts)


@given(n=st.integers(0, 2000), seed=st.integers(0, 2**32 - 1))
def test_gather_rows_matches_take(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.integers(-(2**62), 2**62, n)
    perm = rng.permutation(n)
    out = np.empty(n, src.dtype)
    assert gather_rows(src, perm, out) == n
    np.testing.assert_array_equal(out, np.take(src, perm))


# -- Parquet footers and part assembly ---------------------------------------------------------------


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


def test_part_assembler_rejects_non_parquet(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 but not really a parquet file")
    asm = PartAssembler(tmp_path / "out.parquet")
    with pytest.raises(SinkError, match=r"bad\.parquet"):
        asm.append(bad)
    asm.abort()
    assert not (tmp_path / "out.parquet").exists()


# -- the sink on its own (thread encoder) ------------------------------------------------------------


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
    job = pipeline.StripeJob(
        0, "2025-10-22", 10, np.array([0, 10]), ["A"], str(tmp_path / "no" / "dir" / "p")
    )
    enc.submit(slot, job)
    ((seq, _part, error),) = enc.completed(block=True)
    assert seq == 0 and error is not None and enc.free_slots() == SMALL.slots
    enc.close()


# -- the process pool ---------------------------------------------------------------------------------


class CountSink(FileSink):
    """Counts rows; dies (the whole worker process) or fails on request."""

    def __init__(self, path: Path, die_on: str | None, fail_on: str | None) -> None:
        self.path = path
        self.rows = 0
        if fail_on is not None and fail_on in str(path):
            msg = f"{path.name}: refused by the test sink"
            raise SinkError(msg)
        self.die = die_on is not None and die_on in str(path)

    def write(self, block: ColumnBlock) -> None:
        if self.die:
            os._exit(7)
        self.rows += len(block)

    def close(self) -> SinkResult:
        return SinkResult(rows=self.rows, outputs=[f"{self.path.name}:{self.rows}"])

    def abort(self) -> None:
        pass


class CountFactory:
    def __init__(self, die_on: str | None = None, fail_on: str | None = None) -> None:
        self.die_on = die_on
        self.fail_on = fail_on

    def __call__(self, path: Path) -> FileSink:
        return CountSink(path, self.die_on, self.fail_on)


SAMPLES = [
    "databento-dbn/test_data.mbo.v1.dbn.zst",
    "databento-python/GLBX.MDP3/test_data.mbo.dbn.zst",
    "databento-python/IFEU.IMPACT/test_data.mbo.dbn.zst",
    "databento-python/XNAS.ITCH/test_data.mbo.dbn.zst",
]


@pytest.mark.parametrize("jobs", [1, 3])
def test_pool_runs_every_file_in_order(jobs: int) -> None:
    paths = [sample_path(s) for s in SAMPLES]
    events: list[ProgressEvent] = []
    outs = run_pipeline(paths, [CountFactory()], jobs=jobs, report=events.append)
    assert [o.path for o in outs] == [str(p) for p in paths] and all(o.ok for o in outs)
    assert [o.rows for o in outs] == [2, 4, 4, 4]
    assert {e.index for e in events if e.done} == {0, 1, 2, 3}
    assert run_pipeline(paths, [CountFactory()], inline=True)[3].outputs == outs[3].outputs


def test_worker_death_fails_only_its_file() -> None:
    paths = [sample_path(s) for s in SAMPLES]
    outs = run_pipeline(paths, [CountFactory(die_on="GLBX")], jobs=2)
    failed = [o for o in outs if not o.ok]
    assert [Path(o.path).parent.name for o in failed] == ["GLBX.MDP3"]
    assert "worker process died (exit code 7)" in failed[0].message
    assert sum(o.ok for o in outs) == 3


def test_sink_error_is_reported_with_the_file() -> None:
    paths = [sample_path(s) for s in SAMPLES]
    outs = run_pipeline(paths, [CountFactory(fail_on="IFEU")], jobs=1)
    assert [o.ok for o in outs] == [True, True, False, True]
    assert outs[2].message == "test_data.mbo.dbn.zst: refused by the test sink"


_REAL_ENCODE = pipeline.encode_stripe


def _dying_encode(arrays: dict, job: pipeline.StripeJob, options: ParquetOptions) -> int:
    """Runs in the encoder process: dies on the stripes of 2020-12-28."""
    if job.day == "2020-12-28":
        os._exit(9)
    return _REAL_ENCODE(arrays, job, options)


def test_encoder_death_fails_its_file_and_a_new_encoder_takes_over(tmp_path: Path, monkeypatch) -> None:
    from engine.ingest import ParquetSinkFactory

    monkeypatch.setattr(pipeline, "encode_stripe", _dying_encode)
    paths = [sample_path(SAMPLES[3]), sample_path(SAMPLES[2])]  # 2020-12-28, then 2024-01-18
    outs = run_pipeline(paths, [ParquetSinkFactory(str(tmp_path))], jobs=1)
    assert not outs[0].ok and "encoder process died" in outs[0].message
    assert outs[1].ok and [Path(o).name for o in outs[1].outputs] == ["mbo_2024-01-18.parquet"]
    assert [f.path.name for f in list_lake(tmp_path)] == ["mbo_2024-01-18.parquet"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_slot_views_do_not_overlap() -> None:
    buf = bytearray(10 << 20)
    opts = ParquetOptions(stripe_rows=1000, slots=3)
    slots = slot_views(buf, opts)
    for i, s in enumerate(slots):
        for j, a in enumerate(s.values()):
            a[:] = i * 20 + j
    for i, s in enumerate(slots):
        for j, a in enumerate(s.values()):
            assert len(a) == 1000 and (a == i * 20 + j).all()


# -- lake naming --------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", [None, "NVDA", "ES_F", "BRN FMJ0024!", "A/B", "x%y", "BRK.B"])
def test_lake_names_round_trip(symbol: str | None) -> None:
    name = lake_file_name("2025-10-22", symbol)
    assert "/" not in name and name.endswith("_2025-10-22.parquet")
    f = parse_lake_name(name)
    assert f is not None and f.symbol == symbol and f.day.isoformat() == "2025-10-22"


def test_list_lake_and_stale_temps(tmp_path: Path) -> None:
    for name in (
        "mbo_2025-10-22.parquet",
        "mbo_NVDA_2025-10-22.parquet",
        "mbo_2025-10-21.parquet",
        "x.parquet",
    ):
        (tmp_path / name).write_bytes(b"")
    assert [f.path.name for f in list_lake(tmp_path)] == ["mbo_2025-10-21.parquet", "mbo_2025-10-22.parquet"]
    assert [f.symbol for f in list_lake(tmp_path, by_symbol=True)] == ["NVDA"]
    assert len(list_lake(tmp_path, by_symbol=None)) == 3
    mine = temp_path(tmp_path / "mbo_2025-10-22.parquet")
    mine.write_bytes(b"")
    dead = tmp_path / ".mbo_2025-10-23.parquet.999999999.abcd0123.tmp"
    dead.write_bytes(b"")
    assert remove_stale_temps(tmp_path) == [dead] and mine.exists()
    assert parse_lake_name(mine.name) is None
    with pytest.raises(SinkError, match="datapair"):
        pq.write_table(pa.table({"a": [1]}), tmp_path / "plain.parquet")
        read_lake_info(tmp_path / "plain.parquet")


# -- progress -----------------------------------------------------------------------------------------


def test_summary_line_and_counts() -> None:
    line = summary_line(20_000_000, 4.0, nbytes=400_000_000, files=3, skipped=1, failed=0, label="ingest")
    assert (
        line == "ingest: 3 files, 20,000,000 rows in 4.00 s (5.00M rows/s, 100.0 MB/s), 1 skipped, 0 failed"
    )
    assert summary_line(1, 1.0) == "1 rows in 1.00 s (1 rows/s)"
    assert format_count(1234) == "1.23k" and format_count(12) == "12"


def test_progress_board_quiet_without_tty() -> None:
    stream = io.StringIO()
    assert not show_progress(False, stream) and not show_progress(True, stream)
    board = ProgressBoard(False, stream=stream)
    board.start(1, "f", 100)
    board.update(1, 50, 10)
    board.finish(1)
    assert stream.getvalue() == ""
    live = ProgressBoard(True, stream=stream)
    live.start(1, "day.dbn.zst", 1000)
    live.update(1, 500, 1_000_000)
    live.finish(1)
    assert "day.dbn.zst" in stream.getvalue()


def test_outcome_defaults() -> None:
    o = FileOutcome("p")
    assert not o.ok and o.rows == 0 and o.message == ""
