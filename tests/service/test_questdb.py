"""The QuestDB store against a real QuestDB (marker ``questdb``; skipped unless ``QUESTDB_URL`` answers).

Two generated days go into a lake (the Parquet ingest) and, from the same DBN files, into a table
of their own through the QuestDB sink (protocol ``auto``: QWP where the server offers it); the
table and its ingest log are dropped at the end, pass or fail. Both stores must then give identical
answers, through the stores and through the HTTP app (``/data`` with its paging, ``/api/mbo/*``).

The last test (no server needed) checks that the store accepts every ``QUESTDB_URL`` form the
engine does and sends its credentials.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.ipc
import pytest
from falcon.testing import TestClient

from engine.errors import DatapairError
from engine.questdb.conf import QuestDBOptions
from engine.questdb.conf import parse_questdb_url as parse_address
from engine.questdb.http import Backoff, QuestDBHttp
from engine.questdb.ingest import ingest_questdb
from service import create_app
from service.stores.base import RangeQuery, Store, output_schema
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore, parse_questdb_url
from tests.support.service import lake_table, make_lake
from tests.support.tables import plain

NS = 1_000_000_000
SYMBOLS = ("NVDA", "AAPL", "MSFT")


@pytest.fixture(scope="module")
def stores(
    questdb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LakeStore, QuestDBStore]]:
    lake, files = make_lake(
        tmp_path_factory.mktemp("qdb"), 30_000, SYMBOLS, ("2025-10-22", "2025-10-23"), seed=9
    )
    tag = uuid.uuid4().hex[:12]
    name, log = f"t_service_{tag}", f"t_service_log_{tag}"
    http = QuestDBHttp(parse_address(questdb_url), backoff=Backoff(timeout=10.0), timeout=60.0)
    try:
        opts = QuestDBOptions.from_env(url=questdb_url, table=name, log_table=log, protocol="auto")
        loaded = ingest_questdb(files, options=opts)
        assert loaded.ok, loaded.failed
        assert loaded.rows == lake_table(lake).num_rows  # confirmed by count() after the WAL apply
        yield LakeStore(lake), QuestDBStore(questdb_url, table=name, page_rows=7_000)
    finally:
        failed = []
        for t in (name, log):
            try:
                http.exec(f"DROP TABLE IF EXISTS {t}")
            except DatapairError as exc:
                failed.append(f"{t}: {exc}")
        assert not failed, failed


def _scan(store: Store, q: RangeQuery, cols: tuple[str, ...] | None = None) -> pa.Table:
    return pa.Table.from_batches(list(store.scan(q, cols)), schema=output_schema(cols))


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
    assert health["status"] == "ok", health


# -- no server needed --------------------------------------------------------------------------------
def test_store_url_forms_and_credentials() -> None:
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"query": "", "columns": [{"name": "count", "type": "LONG"}], "dataset": [[7]],
                               "timestamp": -1, "count": 1}).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        conf = f"http::addr=127.0.0.1:{port};username=admin;password=quest;"
        assert parse_questdb_url(conf) == ("http", "127.0.0.1", port)
        assert QuestDBStore(conf, table="t1").ping() == {"table": "t1", "rows": 7}
        assert seen[-1] == ("/exec?count=false&query=SELECT%20count%28%29%20FROM%20t1",
                            "Basic " + base64.b64encode(b"admin:quest").decode())  # fmt: skip
        assert QuestDBStore(f"http://127.0.0.1:{port}", table="t1").ping()["rows"] == 7
        assert seen[-1][1] is None
        assert QuestDBStore(f"127.0.0.1:{port}").url == f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
