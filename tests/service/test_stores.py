"""Lake and QuestDB stores: the same rows as a plain NumPy reference over the source DBN files.

The reference filters the engine's columns of the DBN files (no lake, no store involved) and
sorts them by the feed key (ts_recv, instrument_id, publisher_id), stable: a symbol's rows in the
files' order. The QuestDB store runs against the real
server (marker ``questdb``): the same DBN files loaded by the QuestDB sink, and the ties lake
loaded row for row; a plain :class:`~tests.support.faultproxy.FaultProxy` in front shows the SQL.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import urllib.parse
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.book.rows import day_source
from engine.dbn.columns import MBO_SCHEMA, iter_column_blocks
from engine.errors import ConfigError, QueryError, StoreUnavailableError
from engine.lake.ingest import ingest_parquet
from engine.lake.options import ParquetOptions
from engine.questdb.conf import parse_questdb_url as parse_address
from engine.questdb.ingest import ingest_questdb
from service.bars import bars_from_trades
from service.resources.data import page_end
from service.stores.base import KEY_COLUMNS, Cursor, RangeQuery, check_symbol, limit_batches
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore, parse_questdb_url, sql_symbol
from service.timeparse import parse_datetime
from tests.support.dbn_bytes import write_midnight_file
from tests.support.faultproxy import FaultProxy, status
from tests.support.qdb import load_arrow, options
from tests.support.samples import sample_path
from tests.support.service import make_lake
from tests.support.tables import plain

NS = 1_000_000_000
DATES = ("2025-10-22", "2025-10-23")
SYMBOLS = ("NVDA", "AAPL", "MSFT")
TIE = 600 * NS


def source_table(paths) -> pa.Table:
    return pa.Table.from_batches(
        [b.to_arrow() for p in paths for b in iter_column_blocks(p)]
    ).combine_chunks()


def reference(src: pa.Table, symbol: str, start: int, end: int, actions=None) -> pa.Table:
    ts = src.column("ts_event").cast(pa.int64()).to_numpy()
    sym = np.asarray(src.column("symbol").cast(pa.string()).to_pylist(), dtype=object)
    mask = (sym == symbol) & (ts >= start) & (ts <= end)
    if actions:
        mask &= np.isin(np.asarray(src.column("action").cast(pa.string()).to_pylist(), dtype=object), actions)
    t = src.filter(pa.array(mask))
    key = [t.column(c).cast(pa.int64()).to_numpy() for c in KEY_COLUMNS]
    return t.take(np.lexsort(key[::-1]))


def scanned(store, query, columns=None, batch_rows=4_096) -> pa.Table:
    batches = list(store.scan(query, columns=columns, batch_rows=batch_rows))
    assert all(b.num_rows <= batch_rows for b in batches)
    schema = MBO_SCHEMA if columns is None else pa.schema([f for f in MBO_SCHEMA if f.name in columns])
    for b in batches:
        assert b.schema == schema
    return pa.Table.from_batches(batches, schema=schema)


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    lake, files = make_lake(tmp_path_factory.mktemp("stores"), 40_000, SYMBOLS, DATES, seed=3, by_symbol=True)
    return lake, files, source_table(files)


@pytest.fixture(scope="module")
def ties_lake(tmp_path_factory, two_days):
    """A lake in arrival order with ts_event cut to 10 minutes: long runs of equal ts_event,
    every row group overlapping the others (the merge's worst case)."""
    _, _, src = two_days
    ts = src.column("ts_event").cast(pa.int64()).to_numpy() // TIE * TIE
    t = src.set_column(0, "ts_event", pa.array(ts).cast(MBO_SCHEMA.field("ts_event").type))
    d = tmp_path_factory.mktemp("ties")
    pq.write_table(t, d / "mbo_2025-10-22.parquet", row_group_size=3_000)
    return d, t


@pytest.fixture(scope="module")
def qdb_url(questdb_url: str) -> Iterator[FaultProxy]:
    """The server behind a forwarding proxy, whose request log shows the SQL the store sends."""
    a = parse_address(questdb_url)
    with FaultProxy((a.host, a.port)) as p:
        yield p


@pytest.fixture(scope="module")
def qdb_table(questdb_url: str, questdb_module_tables, two_days) -> str:
    """The two days' DBN files loaded by the QuestDB sink."""
    names = questdb_module_tables("t_stores"), questdb_module_tables("t_stores_log")
    _, files, src = two_days
    loaded = ingest_questdb(files, options=options(questdb_url, names, "auto"))
    assert loaded.ok and loaded.rows == src.num_rows, loaded.failed
    return names[0]


@pytest.fixture(scope="module")
def ties_table(questdb_url: str, questdb_module_tables, ties_lake) -> str:
    names = questdb_module_tables("t_ties"), questdb_module_tables("t_ties_log")
    load_arrow(questdb_url, names, ties_lake[1])
    return names[0]


def sql_seen(proxy: FaultProxy, since: int = 0) -> list[str]:
    """The SQL of the ``/exec`` requests the proxy saw (from request ``since`` on)."""
    out = []
    for r in proxy.requests[since:]:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(r.split(" ", 1)[1]).query).get("query")
        if query:
            out.append(query[0])
    return out


def windows(src: pa.Table, symbol: str) -> list[tuple[int, int]]:
    ts = np.sort(
        src.filter(pa.compute.equal(src.column("symbol").cast(pa.string()), symbol))
        .column("ts_event")
        .cast(pa.int64())
        .to_numpy()
    )
    lo, hi = int(ts[0]), int(ts[-1])
    mid = int(ts[len(ts) // 2])
    return [
        (lo, hi),  # everything, both days
        (0, 2**63 - 1),
        (mid, mid + 60 * NS),  # one minute
        (mid - 1800 * NS, mid + 1800 * NS),  # one hour
        (parse_datetime("2025-10-22 23:30"), parse_datetime("2025-10-23 08:30")),  # across the two days
        (int(ts[10]), int(ts[10])),  # a single timestamp
        (hi + 1, hi + 10 * NS),  # after the end: empty
    ]


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_lake_scan_equals_reference(two_days, symbol):
    lake, _, src = two_days
    store = LakeStore(lake)
    for start, end in windows(src, symbol):
        q = RangeQuery(symbol, start, end)
        ref = reference(src, symbol, start, end)
        got = scanned(store, q)
        assert plain(got) == plain(ref), (symbol, start, end)
        assert store.count(q) == ref.num_rows


def test_lake_symbols_and_ranges(two_days):
    lake, _, src = two_days
    store = LakeStore(lake)
    assert store.symbols() == sorted(SYMBOLS)
    for s in SYMBOLS:
        ref = reference(src, s, 0, 2**63 - 1)
        r = store.time_range(s)
        ts = ref.column("ts_event").cast(pa.int64()).to_numpy()
        assert (r.start, r.end, r.rows) == (int(ts.min()), int(ts.max()), ref.num_rows)
    assert store.time_range("ZZZZ") is None
    assert not store.has_symbol("ZZZZ")


def test_day_files_and_per_symbol_files_agree(two_days, tmp_path):
    lake, files, src = two_days
    day_only = tmp_path / "day_only"
    ingest_parquet(files, day_only, quiet=True, jobs=1)
    a, b = LakeStore(lake), LakeStore(day_only)
    for start, end in windows(src, "NVDA")[:5]:
        q = RangeQuery("NVDA", start, end)
        assert plain(scanned(a, q)) == plain(scanned(b, q))


def test_columns_subset_and_actions(two_days):
    lake, _, src = two_days
    store = LakeStore(lake)
    q = RangeQuery("NVDA", 0, 2**63 - 1, actions=("T",))
    got = scanned(store, q, columns=("ts_event", "price_raw", "size"))
    ref = reference(src, "NVDA", 0, 2**63 - 1, actions=["T"])
    assert got.column_names == ["ts_event", "price_raw", "size"]
    assert plain(got) == plain(ref.select(["ts_event", "price_raw", "size"]))
    assert ref.num_rows > 0
    assert store.count(q) == ref.num_rows


def test_snapshot_rows_found_by_ts_event_not_file_day(tmp_path):
    """GLBX day files open with a book snapshot stamped (ts_event) the day before."""
    sample = str(sample_path("databento-python/GLBX.MDP3/test_data.mbo.dbn.zst"))
    ingest_parquet([sample], tmp_path, quiet=True, jobs=1)
    src = source_table([sample])
    store = LakeStore(tmp_path)
    (symbol,) = store.symbols()
    ts = src.column("ts_event").cast(pa.int64()).to_numpy()
    recv = src.column("ts_recv").cast(pa.int64()).to_numpy()
    assert (ts // (86_400 * NS) < recv // (86_400 * NS)).any()  # the premise: earlier days
    day0 = int(ts.min()) // (86_400 * NS) * 86_400 * NS
    q = RangeQuery(symbol, day0, day0 + 86_400 * NS - 1)
    ref = reference(src, symbol, q.start, q.end)
    assert ref.num_rows > 0
    got = scanned(store, q)
    assert plain(got) == plain(ref)
    # feed order: the file's own order, unsorted, even where ts_event goes back (the snapshot)
    ev = src.column("ts_event").cast(pa.int64()).to_numpy()
    in_file = src.filter(pa.array((ev >= q.start) & (ev <= q.end)))
    assert plain(got) == plain(in_file)
    whole = scanned(store, RangeQuery(symbol, 0, 2**63 - 1))
    assert plain(whole) == plain(src)  # rows of one key (ts_recv) in the file's order


@pytest.fixture(scope="module")
def midnight(tmp_path_factory):
    """A file over UTC midnight whose second day opens with a snapshot stamped 3 days earlier."""
    d = tmp_path_factory.mktemp("midnight")
    path = write_midnight_file(d, SYMBOLS, n=3_000)
    assert ingest_parquet([path], d / "lake", quiet=True, jobs=1).ok
    return d / "lake", path, source_table([path])


def in_file_order(src: pa.Table, symbol: str) -> pa.Table:
    return src.filter(pa.compute.equal(src.column("symbol").cast(pa.string()), symbol))


@pytest.mark.parametrize("limit", [13, 100_000])
def test_lake_pages_come_in_feed_order(midnight, limit):
    """A symbol's rows come back in the file's order, page after page, though ts_event goes back."""
    lake, _, src = midnight
    store = LakeStore(lake)
    for symbol in SYMBOLS:
        got = pa.concat_tables(pages(store, RangeQuery(symbol, 0, 2**63 - 1), limit))
        assert plain(got) == plain(in_file_order(src, symbol))
        assert (np.diff(got.column("ts_event").cast(pa.int64()).to_numpy()) < 0).any()


def busy_start(t: pa.Table, symbol: str) -> int:
    ts = reference(t, symbol, 0, 2**63 - 1).column("ts_event").cast(pa.int64()).to_numpy()
    return int(ts[len(ts) // 2])


def pages(store, query: RangeQuery, limit: int) -> list[pa.Table]:
    out, q = [], query
    for _ in range(10_000):
        end = page_end(store, q, limit, batch_rows=97)
        t = pa.Table.from_batches(list(limit_batches(store.scan(q, batch_rows=97), limit)), schema=MBO_SCHEMA)
        assert t.num_rows == end.rows <= limit
        out.append(t)
        if end.next_cursor is None:
            return out
        q = RangeQuery(query.symbol, query.start, query.end, after=end.next_cursor)
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("limit", [1, 7, 250, 5_000])
def test_cursor_pages_join_to_the_whole_answer_with_long_ties(ties_lake, limit):
    d, t = ties_lake
    store = LakeStore(d)
    start = busy_start(t, "NVDA")
    q = RangeQuery("NVDA", start, start + 3 * TIE) if limit < 250 else RangeQuery("NVDA", 0, 2**63 - 1)
    ref = reference(t, "NVDA", q.start, q.end)
    assert ref.num_rows > 2 * limit or limit == 5_000
    runs = np.unique(ref.column("ts_event").cast(pa.int64()).to_numpy(), return_counts=True)[1]
    assert runs.max() > min(limit, 20)  # pages end inside runs of equal ts_event
    parts = pages(store, q, limit)
    assert plain(pa.concat_tables(parts)) == plain(ref)
    assert all(p.num_rows == limit for p in parts[:-1])


def test_cursor_token_round_trip_and_rejects():
    c = Cursor(1761130860010235508, 17912, 2, 3)
    assert Cursor.decode(c.encode()) == c
    old = "MToxNzYxMTMwODYwMDEwMjM1NTA4OjE3NjExMzA4NjAwMTAyNDU1MDg6NDAwMDAwMDAwMDoz"  # a cursor of the old key
    for bad in ("", "x", "!!!!", Cursor(1, 2, 3, 1).encode()[:-3] + "AAA", "MTox", 5, None, "A" * 500, old):
        with pytest.raises(QueryError, match="cursor"):
            Cursor.decode(bad)


# -- QuestDB ---------------------------------------------------------------------------------------


@pytest.mark.questdb
@pytest.mark.parametrize("page_rows", [2, 1_000, 100_000])
def test_questdb_store_equals_lake(two_days, qdb_url, qdb_table, page_rows):
    lake, _, src = two_days
    qdb, lk = QuestDBStore(qdb_url.url, qdb_table, page_rows=page_rows), LakeStore(lake)
    assert qdb.symbols() == lk.symbols()
    for s in SYMBOLS:
        assert qdb.time_range(s) == lk.time_range(s)
    w = windows(src, "AAPL")
    for start, end in [w[2], w[5], w[6]] if page_rows == 2 else w:  # tiny pages: short windows only
        q = RangeQuery("AAPL", start, end)
        assert plain(scanned(qdb, q)) == plain(scanned(lk, q)) == plain(reference(src, "AAPL", start, end))
        assert qdb.count(q) == lk.count(q)
    if page_rows == 2:
        return
    q = RangeQuery("NVDA", 0, 2**63 - 1, actions=("T",))
    cols = ("ts_event", "price_raw", "size")
    assert plain(scanned(qdb, q, cols)) == plain(scanned(lk, q, cols))
    assert qdb.time_range("ZZZZ") is None


@pytest.mark.questdb
@pytest.mark.parametrize("limit", [3, 400])
def test_questdb_pages_with_long_ties(ties_lake, qdb_url, ties_table, limit):
    d, t = ties_lake
    qdb, lk = QuestDBStore(qdb_url.url, ties_table, page_rows=5), LakeStore(d)
    start = busy_start(t, "MSFT")
    q = RangeQuery("MSFT", start, start + 5 * TIE)
    before = len(qdb_url.requests)
    whole = scanned(qdb, q)
    assert plain(whole) == plain(scanned(lk, q)) == plain(reference(t, "MSFT", q.start, q.end))
    assert plain(pa.concat_tables(pages(qdb, q, limit))) == plain(whole)
    # pages of 5 rows, each found by keyset right after the last row of the one before (day_seq breaks
    # the ties of one record's T, F and C, which share ts_recv)
    assert any("day_seq > " in sql and "ORDER BY ts_recv, instrument_id, publisher_id, day_seq" in sql
               for sql in sql_seen(qdb_url, before))  # fmt: skip


@pytest.mark.questdb
def test_questdb_pages_come_in_feed_order(midnight, questdb_url, questdb_module_tables):
    _, path, src = midnight
    names = questdb_module_tables("t_midnight"), questdb_module_tables("t_midnight_log")
    assert ingest_questdb([path], options=options(questdb_url, names, "auto")).ok
    store = QuestDBStore(questdb_url, names[0], page_rows=50)
    for symbol in SYMBOLS:
        got = pa.concat_tables(pages(store, RangeQuery(symbol, 0, 2**63 - 1), 37))
        assert plain(got) == plain(in_file_order(src, symbol))


@pytest.mark.questdb
def test_questdb_sql_never_carries_request_text(qdb_url, qdb_table):
    store = QuestDBStore(qdb_url.url, qdb_table)
    before = len(qdb_url.requests)
    for bad in ("", "A" * 71, "NV\nDA", " NVDA", "NVDA ", "\x00"):
        with pytest.raises(QueryError):
            store.scan(RangeQuery(bad, 0, 1)).__next__()
        with pytest.raises(QueryError):
            store.count(RangeQuery(bad, 0, 1))
    assert len(qdb_url.requests) == before
    assert sql_symbol("BRK.B") == "'BRK.B'"
    assert sql_symbol("BRN FMJ0024!") == "'BRN FMJ0024!'"
    assert sql_symbol("NVDA'; DROP TABLE mbo_ticks; --") == "'NVDA''; DROP TABLE mbo_ticks; --'"
    assert check_symbol("x'y") == "x'y"  # printable: looked up, quoted with '' (QuestDB's only escape)


@pytest.mark.questdb
def test_questdb_errors_are_store_unavailable(questdb_url):
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        QuestDBStore(questdb_url, table="no_such_table").ping()
    a = parse_address(questdb_url)
    with (
        FaultProxy((a.host, a.port), default=status(500, "<html>internal error</html>")) as p,
        pytest.raises(StoreUnavailableError, match="HTTP 500"),
    ):
        QuestDBStore(p.url).symbols()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreUnavailableError, match="does not answer"):
        QuestDBStore(f"http://127.0.0.1:{port}").ping()


def test_questdb_config_checks():
    assert parse_questdb_url("http://localhost:9000") == ("http", "localhost", 9000)
    assert parse_questdb_url("http::addr=10.0.0.5:9001;") == ("http", "10.0.0.5", 9001)
    assert parse_questdb_url("qdb.local") == ("http", "qdb.local", 9000)
    for bad in ("ftp://x:1", "http://:9000", "http://h:notaport"):
        with pytest.raises(ConfigError):
            parse_questdb_url(bad)
    with pytest.raises(ConfigError, match="table"):
        QuestDBStore("http://127.0.0.1:9000", table="mbo; DROP")


def test_lake_missing_is_unavailable(tmp_path):
    store = LakeStore(tmp_path / "nope")
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        store.ping()
    with pytest.raises(StoreUnavailableError):
        store.symbols()
    empty = LakeStore(tmp_path)
    assert empty.symbols() == []
    assert empty.ping()["files"] == 0


# -- consistency while an ingest replaces files ---------------------------------------------------


def test_an_answer_comes_from_one_version_of_each_file(tmp_path, make_day):
    """A day file replaced (renamed into place, as the ingest does) mid-answer does not change the answer."""
    one = make_day(records=30_000, symbols=SYMBOLS, date=DATES[0], seed=21)
    two = make_day(records=30_000, symbols=SYMBOLS, date=DATES[0], seed=22)
    lake, other = tmp_path / "lake", tmp_path / "other"
    small = ParquetOptions(row_group_rows=1_024, max_row_group_rows=2_048, stripe_rows=4_096)
    for src, out in ((one, lake), (two, other)):
        assert ingest_parquet([src], out, quiet=True, jobs=1, options=small).ok
    store = LakeStore(lake, cache_bytes=0)  # every row group read from the file
    q = RangeQuery("NVDA", 0, 2**63 - 1)
    before = scanned(store, q)
    name = f"mbo_{DATES[0]}.parquet"
    assert pq.read_metadata(lake / name).num_row_groups > 10
    it = store.scan(q, batch_rows=500)
    parts = [next(it)]
    os.replace(other / name, lake / name)  # a new version of the day lands mid-answer
    parts += list(it)
    assert plain(pa.Table.from_batches(parts)) == plain(before)  # all of the old version
    after = scanned(store, q)  # the next answer reads the new version
    assert plain(after) == plain(reference(source_table([two]), "NVDA", 0, 2**63 - 1))
    assert store.count(q) == after.num_rows


def test_a_symbol_file_is_read_only_when_it_holds_all_the_day_file_holds(tmp_path, make_day):
    """Per-symbol files written from one source, then the day re-ingested with a second source:
    the day file now holds rows the symbol file lacks, so it answers, whatever the names say."""
    first = make_day(records=8_000, symbols=SYMBOLS, date=DATES[0], seed=31)
    second = make_day(records=8_000, symbols=SYMBOLS, date=DATES[0], seed=32)
    lake = tmp_path / "lake"
    assert ingest_parquet([first], lake, quiet=True, jobs=1, by_symbol=True).ok
    store = LakeStore(lake)
    q = RangeQuery("NVDA", 0, 2**63 - 1)
    assert plain(scanned(store, q)) == plain(reference(source_table([first]), "NVDA", 0, 2**63 - 1))
    assert ingest_parquet([second], lake, quiet=True, jobs=1).ok  # day files only: both sources merged
    assert (lake / f"mbo_NVDA_{DATES[0]}.parquet").exists()  # the older, narrower symbol file stays
    both = reference(source_table([first, second]), "NVDA", 0, 2**63 - 1)
    assert plain(scanned(store, q)) == plain(both)
    assert store.count(q) == both.num_rows and store.time_range("NVDA").rows == both.num_rows
    day = dt.date.fromisoformat(DATES[0])
    assert not day_source(lake, "NVDA", day).symbol_file  # the book reads by the same rule
    assert ingest_parquet([first, second], lake, quiet=True, jobs=1, by_symbol=True, force=True).ok
    assert plain(scanned(store, q)) == plain(both)  # the symbol file again, now as wide as the day
    assert day_source(lake, "NVDA", day).symbol_file


@pytest.mark.parametrize("lake_name", ["two_days", "ties_lake", "midnight"])
def test_lake_bars_from_the_trade_cache_equal_the_scan(lake_name, request):
    """The lake store's bars (cached trades per row group) are the generic path's: the trades of
    the event-ordered scan aggregated; cold and warm, over windows inside and across row groups,
    over runs of equal ts_event (the ties lake), where open and close depend on the order, and
    over a day whose ts_event goes back (midnight: trades of a later file come first)."""
    lake = request.getfixturevalue(lake_name)[0]
    src = request.getfixturevalue(lake_name)[-1]
    if lake_name == "midnight":
        ts = src.column("ts_event").cast(pa.int64()).to_numpy()
        acts = np.asarray(src.column("action").cast(pa.string()).to_pylist())
        assert (np.diff(ts[acts == "T"]) < 0).any()  # the premise: trades out of ts_event order in the files
    store, plain_store = LakeStore(lake), LakeStore(lake, cache_bytes=0)
    for symbol in ("NVDA", "MSFT"):
        for start, end in windows(src, symbol)[:6]:
            q = RangeQuery(symbol, start, end, actions=("T",), order="event")
            for step in (NS, 60 * NS, 3_600 * NS):
                want = bars_from_trades(plain_store.scan(q, columns=("ts_event", "price_raw", "size")), step)
                for _ in range(2):  # cold, then from the cache
                    assert store.bars(q, step).to_rows() == want.to_rows()
    assert store.bars(RangeQuery("NVDA", 0, 2**63 - 1), NS) is None  # not a trades query: the generic path
