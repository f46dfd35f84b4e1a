"""The book at any instant from the lake (issue 13 §2): equal to the reference book and to a full
replay at random instants, checkpoints ignored when stale, written atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.book.index import INTERVAL_NS, checkpoint_path, index_lake, load_checkpoint
from engine.book.rows import day_of, day_source
from engine.book.snapshot import ReplayStats, book_snapshot
from engine.errors import QueryError
from engine.tempfiles import TEMP_PATTERN
from tests.book.lakebook import ReferenceReplay, levels, symbol_columns
from tests.support.samples import sample_path

DAY_FILE = "mbo_2025-10-22.parquet"


def instants(recv: np.ndarray, n: int, seed: int) -> list[int]:
    """Random instants: record times, one ns around them, checkpoint boundaries and their neighbours."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(recv, n).tolist()
    picks += [t + d for t in rng.choice(recv, n // 4).tolist() for d in (-1, 1)]
    bounds = (rng.choice(recv, n // 4) // INTERVAL_NS + 1) * INTERVAL_NS
    picks += [int(b) + d for b in bounds for d in (-1, 0, 1)]
    picks += [int(recv[0]) - 1, int(recv[-1]) + 10]
    return sorted(int(t) for t in picks)


@pytest.mark.parametrize("symbol", ["NVDA", "MSFT"])
def test_snapshot_equals_the_reference_book_at_random_instants(book_lake: Path, symbol: str) -> None:
    cols = symbol_columns(book_lake / DAY_FILE, symbol)
    ref = ReferenceReplay(cols)
    used = 0
    for t in instants(cols["ts_recv"], 60, seed=1):
        stats = ReplayStats()
        got = book_snapshot(book_lake, symbol, t, depth=10, stats=stats)
        bids, asks, last = ref.at(t, 10)
        assert (levels(got, "bids"), levels(got, "asks"), got["ts_recv"]) == (bids, asks, last), t
        assert got["symbol"] == symbol and got["at"] == t
        used += stats.checkpoint is not None
    assert used > 40  # most instants started from a checkpoint


def test_checkpoints_give_exactly_the_full_replay(book_lake: Path) -> None:
    recv = symbol_columns(book_lake / DAY_FILE, "AAPL")["ts_recv"]
    for t in instants(recv, 40, seed=2):
        fast, slow = ReplayStats(), ReplayStats()
        a = book_snapshot(book_lake, "AAPL", t, depth=1000, orders=True, stats=fast)
        b = book_snapshot(book_lake, "AAPL", t, depth=1000, orders=True, checkpoints=False, stats=slow)
        assert a == b, t
        assert slow.checkpoint is None and fast.rows <= slow.rows


def test_snapshot_of_the_cme_sample_through_the_lake(tmp_path: Path) -> None:
    """The CME file opens with a book snapshot (ts_event days earlier): via ingest, index, snapshot."""
    from engine.lake.ingest import ingest_parquet

    src = sample_path("databento-python/GLBX.MDP3/test_data.mbo.dbn.zst")
    if not src.exists():
        pytest.skip(f"{src} not found")
    lake = tmp_path / "lake"
    assert not ingest_parquet([src], lake, quiet=True, jobs=1).failed
    index_lake(lake, interval_ns=1_000_000)  # the sample spans little time: a checkpoint per ms
    day_files = sorted(lake.glob("mbo_????-??-??.parquet"))
    import pyarrow.parquet as pq

    symbols = sorted(
        set(pq.read_table(day_files[0], columns=["symbol"]).column("symbol").cast("string").to_pylist())
    )
    checked = 0
    for symbol in symbols:
        cols = symbol_columns(day_files[0], symbol)
        ref = ReferenceReplay(cols)
        for t in instants(cols["ts_recv"], 12, seed=3):
            if day_of(t) != day_of(int(cols["ts_recv"][0])):
                continue
            got = book_snapshot(lake, symbol, t, depth=50)
            bids, asks, last = ref.at(t, 50)
            assert (levels(got, "bids"), levels(got, "asks"), got["ts_recv"]) == (bids, asks, last)
            checked += 1
    assert checked > 10


def test_publisher_keeps_one_venue(book_lake: Path) -> None:
    recv = symbol_columns(book_lake / DAY_FILE, "NVDA")["ts_recv"]
    t = int(recv[len(recv) // 2])
    everything = book_snapshot(book_lake, "NVDA", t)
    pub = book_snapshot(book_lake, "NVDA", t, publisher=2)  # the generator's one venue (XNAS)
    assert pub == everything and everything["bids"]
    assert book_snapshot(book_lake, "NVDA", t, publisher=99)["bids"] == []


def test_orders_come_in_queue_order_and_sum_to_the_level(book_lake: Path) -> None:
    recv = symbol_columns(book_lake / DAY_FILE, "NVDA")["ts_recv"]
    book = book_snapshot(book_lake, "NVDA", int(recv[-1]), depth=5, orders=True)
    for side in ("bids", "asks"):
        for lv in book[side]:
            assert sum(o["size"] for o in lv["orders"]) == lv["size"] and len(lv["orders"]) == lv["count"]


def test_bad_arguments_and_unknown_symbol_name_the_field(book_lake: Path) -> None:
    with pytest.raises(QueryError, match="`depth`"):
        book_snapshot(book_lake, "NVDA", 1, depth=0)
    with pytest.raises(QueryError, match="`at`"):
        book_snapshot(book_lake, "NVDA", -5)
    with pytest.raises(QueryError, match="`publisher`"):
        book_snapshot(book_lake, "NVDA", 1, publisher=70_000)
    with pytest.raises(QueryError, match=r"no rows for symbol 'NVDX'.*nearest: NVDA"):
        book_snapshot(book_lake, "NVDX", 1_761_140_000_000_000_000)
    empty = book_snapshot(book_lake, "NVDA", 1_000)  # a known symbol on a day without rows: an empty book
    assert empty["bids"] == empty["asks"] == [] and empty["ts_recv"] is None


def _copy(lake: Path, to: Path) -> Path:
    shutil.copytree(lake, to)
    return to


def test_a_stale_checkpoint_is_never_used(book_lake: Path, tmp_path: Path) -> None:
    lake = _copy(book_lake, tmp_path / "lake")
    recv = symbol_columns(lake / DAY_FILE, "NVDA")["ts_recv"]
    t = int(recv[len(recv) // 2])
    src = day_source(lake, "NVDA", day_of(t))
    assert src is not None and load_checkpoint(lake, src, "NVDA", t) is not None
    # the day is rewritten with other rows (another generated day of the same date)
    from tests.support.service import make_lake

    other, _ = make_lake(tmp_path / "other", 30_000, ("NVDA", "AAPL"), seed=5)
    os.replace(other / DAY_FILE, lake / DAY_FILE)
    stats = ReplayStats()
    got = book_snapshot(lake, "NVDA", t, stats=stats)
    assert stats.checkpoint is None
    assert got == book_snapshot(lake, "NVDA", t, checkpoints=False)
    # touching the file is enough to make it stale too; indexing again makes it usable
    index_lake(lake)
    src = day_source(lake, "NVDA", day_of(t))
    assert src is not None and load_checkpoint(lake, src, "NVDA", t) is not None
    os.utime(lake / DAY_FILE, ns=(src.mtime_ns + 1, src.mtime_ns + 1))
    src = day_source(lake, "NVDA", day_of(t))
    assert src is not None and load_checkpoint(lake, src, "NVDA", t) is None


def test_index_writes_atomically(book_lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _copy(book_lake, tmp_path / "lake")
    final = checkpoint_path(lake, "NVDA", day_of(1_761_140_000_000_000_000))
    before = final.read_bytes()
    seen = []

    def fail(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.append(Path(src).name)
        raise KeyboardInterrupt

    monkeypatch.setattr("engine.book.index.os.replace", fail)
    with pytest.raises(KeyboardInterrupt):
        index_lake(lake, symbols=["NVDA"])
    assert seen and TEMP_PATTERN.match(seen[0])  # written under a temporary name first
    assert final.read_bytes() == before  # the final file was never touched
    assert [p.name for p in final.parent.iterdir() if TEMP_PATTERN.match(p.name)] == []


def test_index_refuses_unknown_days_and_symbols(book_lake: Path) -> None:
    import datetime as dt

    with pytest.raises(QueryError, match="2025-10-23"):
        index_lake(book_lake, days=[dt.date(2025, 10, 23)])
    with pytest.raises(QueryError, match="NVDX"):
        index_lake(book_lake, symbols=["NVDX"])
