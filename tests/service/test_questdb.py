"""The QuestDB store against a real QuestDB (marker ``questdb``), and when QuestDB misbehaves.

Two generated days go into a lake (the Parquet ingest) and, from the same DBN files, into a table
of their own through the QuestDB sink (protocol ``auto``: QWP where the server offers it); the
tables are dropped at the end, pass or fail. Both stores must then give identical answers, through
the stores and through the HTTP app (``/data`` with its paging, ``/api/mbo/*``): bars computed by
QuestDB with ``SAMPLE BY`` included, and ticks at any offset, found by the server. A forwarding
:class:`~tests.support.faultproxy.FaultProxy` shows the SQL the store sends.

Without a server: a silent listener (accepts, never answers) and a refused port check the
timeouts, the circuit breaker, that ``/time/*`` and start-up never wait on the store, and that
answers say which store is down but not where it lives.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest
from falcon.testing import TestClient

from engine.dbn.columns import MBO_SCHEMA
from engine.errors import StoreUnavailableError
from engine.questdb.conf import parse_questdb_url as parse_address
from engine.questdb.ingest import ingest_questdb
from service import Settings, create_app
from service.bars import RESOLUTIONS, bars_from_trades
from service.stores.base import RangeQuery, Store, output_schema
from service.stores.exec_client import CircuitBreaker
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore, parse_questdb_url
from tests.support.faultproxy import FaultProxy, stall
from tests.support.qdb import load_arrow, options
from tests.support.service import lake_table, make_lake, serve
from tests.support.tables import plain

NS = 1_000_000_000
SYMBOLS = ("NVDA", "AAPL", "MSFT")


@pytest.fixture(scope="module")
def proxy(questdb_url: str) -> Iterator[FaultProxy]:
    a = parse_address(questdb_url)
    with FaultProxy((a.host, a.port)) as p:
        yield p


@pytest.fixture(scope="module")
def stores(
    questdb_url: str, questdb_module_tables, proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LakeStore, QuestDBStore]]:
    lake, files = make_lake(
        tmp_path_factory.mktemp("qdb"), 30_000, SYMBOLS, ("2025-10-22", "2025-10-23"), seed=9
    )
    names = questdb_module_tables("t_service"), questdb_module_tables("t_service_log")
    loaded = ingest_questdb(files, options=options(questdb_url, names, "auto"))
    assert loaded.ok, loaded.failed
    assert loaded.rows == lake_table(lake).num_rows  # confirmed by count() after the WAL apply
    qdb = QuestDBStore(proxy.url, table=names[0], page_rows=7_000)
    yield LakeStore(lake), qdb
    qdb.close()


@pytest.fixture(scope="module")
def ties(
    questdb_url: str,
    questdb_module_tables,
    proxy: FaultProxy,
    stores,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LakeStore, QuestDBStore]]:
    """The same rows with ts_event cut to the second: many trades share a ts_event, so a bar's open
    and close depend on the (ts_recv, sequence) order within it (no two rows share all three)."""
    t = lake_table(stores[0].lake_dir)
    ts = t.column("ts_event").cast(pa.int64()).to_numpy() // NS * NS
    t = t.set_column(0, "ts_event", pa.array(ts).cast(MBO_SCHEMA.field("ts_event").type))
    d = tmp_path_factory.mktemp("ties")
    pq.write_table(t, d / "mbo_2025-10-22.parquet", row_group_size=5_000)
    names = questdb_module_tables("t_sties"), questdb_module_tables("t_sties_log")
    # loaded in reverse: QuestDB keeps rows of equal ts_event in arrival order, so only the store's
    # own ordering (scans, and the ordered subquery under SAMPLE BY) can give the key order back
    load_arrow(questdb_url, names, t, reverse=True)
    qdb = QuestDBStore(proxy.url, table=names[0], page_rows=500)
    yield LakeStore(d), qdb
    qdb.close()


def _scan(store: Store, q: RangeQuery, cols: tuple[str, ...] | None = None) -> pa.Table:
    return pa.Table.from_batches(list(store.scan(q, cols)), schema=output_schema(cols))


def sql_seen(proxy: FaultProxy, since: int) -> list[str]:
    out = []
    for r in proxy.requests[since:]:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(r.split(" ", 1)[1]).query).get("query")
        out.extend(query or [])
    return out


@pytest.mark.questdb
def test_store_answers_are_identical(stores: tuple[LakeStore, QuestDBStore]) -> None:
    lake, qdb = stores
    assert qdb.ping()["rows"] == lake_table(lake.lake_dir).num_rows
    assert qdb.symbols() == lake.symbols() == sorted(SYMBOLS)
    for s in SYMBOLS:
        r = lake.time_range(s)
        assert r is not None and qdb.time_range(s) == r
        mid = (r.start + r.end) // 2
        for start, end in [
            (r.start, r.end),
            (mid, mid + 60 * NS),
            (mid, mid + 3600 * NS),
            (r.end + 1, r.end + 2),
        ]:
            q = RangeQuery(s, start, end)
            a, b = _scan(lake, q), _scan(qdb, q)
            assert a.num_rows == b.num_rows
            assert plain(a) == plain(b), (s, start, end)
            assert qdb.count(q) == lake.count(q) == a.num_rows
        trades = RangeQuery(s, r.start, r.end, actions=("T", "F"))
        cols = ("ts_event", "price_raw", "price", "size", "side")
        a, b = _scan(lake, trades, cols), _scan(qdb, trades, cols)
        assert a.num_rows > 0 and plain(a) == plain(b)
    assert qdb.time_range("ZZZZ") is None and lake.time_range("ZZZZ") is None


def _pages(client: TestClient, doc: dict) -> list[bytes]:
    """Every page of a ``/data`` request, following X-Next-Cursor."""
    out = []
    while True:
        r = client.simulate_post("/data", body=json.dumps(doc))
        assert r.status_code == 200, r.text
        out.append(r.content)
        nxt = r.headers.get("x-next-cursor")
        if nxt is None:
            return out
        doc = {**doc, "cursor": nxt}


@pytest.mark.questdb
def test_http_answers_are_identical(stores: tuple[LakeStore, QuestDBStore]) -> None:
    lake, qdb = stores
    a, b = TestClient(create_app(lake)), TestClient(create_app(qdb))
    r = lake.time_range("NVDA")
    assert r is not None
    mid = (r.start + r.end) // 2
    for doc in (
        {"start_ts": mid, "end_ts": mid + 60 * NS},
        {"start_ts": r.start, "end_ts": r.start + 600 * NS, "format": "ndjson"},
        {"start_ts": r.start, "end_ts": r.end, "limit": 999},
        {"start_ts": mid, "end_ts": mid + 1800 * NS, "symbol": "AAPL", "limit": 250},
    ):
        pa_, pb = _pages(a, doc), _pages(b, doc)
        assert len(pa_) == len(pb) and pa_ == pb, doc
    for path, params in (
        ("/api/mbo/bars", {"symbol": "NVDA", "resolution": "1m"}),
        (
            "/api/mbo/bars",
            {"symbol": "MSFT", "resolution": "1s", "start": str(mid), "end": str(mid + 600 * NS)},
        ),
        ("/api/mbo/bars", {"symbol": "AAPL"}),
        ("/api/mbo/ticks", {"symbol": "NVDA", "offset": "100"}),
        ("/api/mbo/ticks", {"symbol": "AAPL", "limit": "5000", "offset": "2500"}),
        ("/api/mbo/range", {"symbol": "MSFT"}),
        ("/api/mbo/range", None),
        ("/api/mbo/symbols", None),
    ):
        ra, rb = a.simulate_get(path, params=params), b.simulate_get(path, params=params)
        assert ra.status_code == rb.status_code == 200, (path, params, ra.text, rb.text)
        assert ra.json == rb.json, (path, params)
    arrow = {"Accept": "application/vnd.apache.arrow.stream"}
    params = {"symbol": "NVDA", "limit": "3000"}
    ra = a.simulate_get("/api/mbo/ticks", params=params, headers=arrow)
    rb = b.simulate_get("/api/mbo/ticks", params=params, headers=arrow)
    assert ra.status_code == rb.status_code == 200
    ta, tb = (pa.ipc.open_stream(r.content).read_all() for r in (ra, rb))
    assert ta.num_rows == tb.num_rows == 3000 and ta.column_names == tb.column_names
    assert plain(ta) == plain(tb)  # the values (dictionaries may list symbols in another order)
    assert (ra.headers.get("x-has-more"), ra.headers.get("x-next-offset")) == (
        rb.headers.get("x-has-more"), rb.headers.get("x-next-offset"),
    )  # fmt: skip
    health = b.simulate_get("/health").json
    assert health["status"] == "ok" and health["store"]["kind"] == "questdb", health


# -- bars by SAMPLE BY (issue 10.4) -------------------------------------------------------------------
@pytest.mark.questdb
@pytest.mark.parametrize("which", ["days", "ties"])
def test_bars_come_from_sample_by_and_equal_the_lake(request, proxy: FaultProxy, which: str) -> None:
    lake, qdb = request.getfixturevalue("stores" if which == "days" else "ties")
    for symbol in SYMBOLS:
        r = lake.time_range(symbol)
        assert r is not None
        trades = _scan(lake, RangeQuery(symbol, r.start, r.end, actions=("T",)), ("ts_event",))
        ts = np.sort(trades.column("ts_event").cast(pa.int64()).to_numpy())
        mid = int(ts[len(ts) // 3])  # a trade, in a busy hour
        for res, step in RESOLUTIONS.items():
            start, end = (mid, mid + 900 * NS) if step < 60 * NS else (r.start, r.end)
            q = RangeQuery(symbol, start, end, actions=("T",), order="event")  # bars: ts_event order
            before = len(proxy.requests)
            got = qdb.bars(q, step)
            seen = sql_seen(proxy, before)
            assert got is not None and len(seen) == 1 and "SAMPLE BY " + res in seen[0]  # one query, no rows
            want = bars_from_trades(lake.scan(q, columns=("ts_event", "price_raw", "size")), step)
            assert len(want) > 0, (symbol, res)
            for name in ("ts", "open_raw", "high_raw", "low_raw", "close_raw", "volume", "trades"):
                np.testing.assert_array_equal(
                    getattr(got, name), getattr(want, name), err_msg=f"{symbol} {res} {name}"
                )
    a, b = TestClient(create_app(lake)), TestClient(create_app(qdb))
    for params in (
        {"symbol": "NVDA"},
        {"symbol": SYMBOLS[-1], "resolution": "1s", "start": str(mid), "end": str(mid + 300 * NS)},
    ):
        ra, rb = (
            a.simulate_get("/api/mbo/bars", params=params),
            b.simulate_get("/api/mbo/bars", params=params),
        )
        assert ra.status_code == rb.status_code == 200 and ra.json == rb.json, params
        assert ra.json["count"] > 0, (params, ra.json)


# -- ticks at deep offsets (issue 15.2e) -----------------------------------------------------------------
@pytest.mark.questdb
@pytest.mark.parametrize("which", ["days", "ties"])
def test_ticks_offsets_are_found_by_the_server(request, proxy: FaultProxy, which: str) -> None:
    """Any offset costs a few small queries (no row before the offset is read) and gives the lake's answer."""
    lake, qdb = request.getfixturevalue("stores" if which == "days" else "ties")
    a, b = TestClient(create_app(lake)), TestClient(create_app(qdb))
    n = lake.count(RangeQuery("NVDA", 0, 2**63 - 1))
    for offset in (0, 1, 777, n // 2, n - 3, n - 1, n, n + 5, 50_000_000):
        params = {"symbol": "NVDA", "limit": "50", "offset": str(offset)}
        before = len(proxy.requests)
        ra, rb = (
            a.simulate_get("/api/mbo/ticks", params=params),
            b.simulate_get("/api/mbo/ticks", params=params),
        )
        seen = sql_seen(proxy, before)
        assert ra.status_code == rb.status_code == 200 and ra.json == rb.json, offset
        assert rb.json["count"] == max(0, min(50, n - offset)) and rb.json["has_more"] == (offset + 50 < n)
        pages = [
            sql for sql in seen if "day_seq" in sql and "SELECT cast(ts_event AS LONG) AS ts_event_ns" in sql
        ]
        assert len(seen) <= 7 and len(pages) <= 2, (offset, seen)  # a row page or two, whatever the offset
        if offset >= n:
            assert pages == [], seen  # past the end: counted, nothing read


# -- a QuestDB that does not answer (issue 15.2c) ---------------------------------------------------------
@pytest.fixture
def silent() -> Iterator[FaultProxy]:
    """A listener that accepts connections and never answers."""
    with FaultProxy(None, default=stall()) as p:
        yield p


def test_a_silent_questdb_costs_one_timeout_then_503_at_once(silent: FaultProxy) -> None:
    now = [0.0]
    breaker = CircuitBreaker(retry_after=30.0, clock=lambda: now[0])
    store = QuestDBStore(silent.url, connect_timeout=0.5, timeout=0.5, breaker=breaker)
    with pytest.raises(StoreUnavailableError, match=r"no answer within 0\.5 s"):
        store.ping()
    assert silent.connections == 1 and breaker.is_open
    for _ in range(5):  # known down: no connection is even tried
        with pytest.raises(StoreUnavailableError, match="known down"):
            store.symbols()
    assert silent.connections == 1
    now[0] += 31.0  # the breaker half-opens: one call probes (and fails again)
    with pytest.raises(StoreUnavailableError, match="no answer"):
        store.ping()
    assert silent.connections == 2 and breaker.trips == 2
    store.close()


@pytest.mark.questdb
def test_the_breaker_closes_once_questdb_answers_again(questdb_url: str) -> None:
    a = parse_address(questdb_url)
    now = [0.0]
    breaker = CircuitBreaker(retry_after=10.0, clock=lambda: now[0])
    with FaultProxy((a.host, a.port), default=stall()) as p:
        store = QuestDBStore(p.url, table="tables", connect_timeout=0.5, timeout=0.5, breaker=breaker)
        with pytest.raises(StoreUnavailableError):
            store.exec("SELECT 1")
        p.default = None  # QuestDB is back
        with pytest.raises(StoreUnavailableError, match="known down"):
            store.exec("SELECT 1")
        now[0] += 11.0
        assert store.exec("SELECT 1 AS ok")["dataset"] == [[1]]
        assert not breaker.is_open
        store.close()


def test_time_routes_never_wait_on_a_silent_store(silent: FaultProxy) -> None:
    """Four waitress threads, two store calls allowed: with every store request hanging, two hang, the
    others get 503 at once, and /time answers while the two still hang."""
    store = QuestDBStore(silent.url, timeout=600.0, max_calls=2)
    app = create_app(store, Settings())
    with serve(app, threads=4) as base, ThreadPoolExecutor(4) as pool:

        def get(path: str) -> int:
            try:
                with urllib.request.urlopen(base + path, timeout=900) as resp:
                    return resp.status
            except urllib.error.HTTPError as exc:
                return exc.code

        futs = [pool.submit(get, "/api/mbo/symbols") for _ in range(4)]
        deadline = time.monotonic() + 60
        while silent.connections < 2 or sum(f.done() for f in futs) < 2:
            assert time.monotonic() < deadline, (silent.connections, [f.done() for f in futs])
            time.sleep(0.02)
        assert sorted(f.result() for f in futs if f.done()) == [503, 503]  # busy: answered at once
        body = json.dumps({"timestamp_ns": 1761130860010235508}).encode()
        req = urllib.request.Request(base + "/time/to_datetime", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert json.loads(resp.read())["datetime_utc"] == "2025-10-22 11:01:00.010235508 UTC"
        assert sum(not f.done() for f in futs) == 2 and silent.connections == 2  # still hanging
        silent.close()  # resets the hanging calls: they answer 503 too
        assert sorted(f.result() for f in futs) == [503, 503, 503, 503]
    store.close()


def test_start_up_does_not_wait_on_the_store(silent: FaultProxy) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATAPAIR_QDB_TIMEOUT": "600"}
    argv = [
        sys.executable,
        "-m",
        "service",
        "--store",
        "questdb",
        "--questdb-url",
        silent.url,
        "--port",
        str(port),
        "--quiet",
    ]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        body = json.dumps({"datetime": "2025-10-22 11:01:00"}).encode()
        deadline = time.monotonic() + 60  # the store would hold start-up for 600 s
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/time/to_timestamp", data=body, method="POST"
                )
                with urllib.request.urlopen(req, timeout=5) as resp:
                    assert json.loads(resp.read())["timestamp_ns"] == 1761130860000000000
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, (
                    "the service did not answer /time while the store is silent"
                )
                time.sleep(0.1)
        while silent.connections < 1:  # the start-up check is under way, beside the server
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


# -- which store is down, not where it lives (issue 15.2f) ----------------------------------------------
def _refused_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://admin:secret@127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["questdb", "lake"])
def test_answers_say_which_store_is_down_not_where(kind: str, tmp_path, caplog) -> None:
    if kind == "questdb":
        url = _refused_url()
        store: Store = QuestDBStore(url, table="secret_table_name")
        hidden = [url.rsplit(":", 1)[1], "secret_table_name", "127.0.0.1", "admin"]
        name = "QuestDB"
    else:
        store = LakeStore(tmp_path / "secret_lake_dir")
        hidden = ["secret_lake_dir", str(tmp_path)]
        name = "lake"
    client = TestClient(create_app(store))
    answers = [
        client.simulate_get("/health"),
        client.simulate_post("/data", body=json.dumps({"start_ts": 0, "end_ts": 1})),
        client.simulate_get("/api/mbo/symbols"),
    ]
    for r in answers:
        assert r.status_code == 503, r.text
        assert not any(h in r.text for h in hidden), r.text
    assert answers[0].json == {"status": "unavailable", "store": {"kind": kind}}
    assert answers[1].json["description"] == f"the {name} store is unavailable; try again later"
    assert any(hidden[0] in rec.getMessage() for rec in caplog.records)  # the detail is in the log


# -- QUESTDB_URL forms ------------------------------------------------------------------------------------
@pytest.mark.questdb
def test_store_url_forms_and_credentials(questdb_url: str) -> None:
    a = parse_address(questdb_url)
    with FaultProxy((a.host, a.port)) as p:
        conf = f"http::addr=127.0.0.1:{p.port};username=admin;password=quest;"
        assert parse_questdb_url(conf) == ("http", "127.0.0.1", p.port)
        store = QuestDBStore(conf, table="tables")
        assert store.exec("SELECT 7 AS n")["dataset"] == [[7]]
        assert p.headers[-1]["authorization"] == "Basic " + base64.b64encode(b"admin:quest").decode()
        assert p.requests[-1] == "GET /exec?count=false&query=SELECT%207%20AS%20n"
        store.close()
        plain_store = QuestDBStore(f"http://127.0.0.1:{p.port}", table="tables")
        plain_store.exec("SELECT 1")
        assert "authorization" not in p.headers[-1]
        plain_store.close()
        assert QuestDBStore(f"127.0.0.1:{p.port}").url == f"http://127.0.0.1:{p.port}"
