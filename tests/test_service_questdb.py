"""Against a real QuestDB at QUESTDB_URL (marker ``questdb``; skipped when it does not answer).

A generated day goes into a lake and, through the questdb client's ``Sender``, into a table of
its own (created by SQL with the DESIGN.md section 3 columns, dropped at the end); both stores must
then give identical answers, through the stores and through the HTTP app.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pyarrow as pa
import pytest
from falcon.testing import TestClient

from engine.errors import StoreUnavailableError
from service import create_app
from service.stores.base import RangeQuery
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore, parse_questdb_url
from service.testing import lake_table, make_lake

pytestmark = pytest.mark.questdb

NS = 1_000_000_000
SYMBOLS = ("NVDA", "AAPL", "MSFT")
DDL = (
    "CREATE TABLE {name} (ts_event TIMESTAMP_NS, symbol SYMBOL, instrument_id INT, publisher_id SHORT, "
    "order_id LONG, price_raw LONG, price DOUBLE, size INT, flags INT, channel_id SHORT, action SYMBOL, "
    "side SYMBOL, ts_recv TIMESTAMP_NS, ts_in_delta INT, sequence LONG) TIMESTAMP(ts_event) PARTITION BY DAY WAL"
)


def _url() -> str:
    url = os.environ.get("QUESTDB_URL")
    if not url:
        pytest.skip("QUESTDB_URL is not set")
    try:
        QuestDBStore(url, timeout=3).exec("SELECT 1")
    except StoreUnavailableError as exc:
        pytest.skip(f"QuestDB at {url} does not answer: {exc}")
    return url


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from questdb import Sender

    url = _url()
    lake, _ = make_lake(tmp_path_factory.mktemp("qdb"), 30_000, SYMBOLS, ("2025-10-22", "2025-10-23"), seed=9)
    table = lake_table(lake)
    name = f"mbo_ticks_test_{uuid.uuid4().hex[:12]}"
    admin = QuestDBStore(url, table=name)
    admin.exec(DDL.format(name=name))
    try:
        scheme, host, port = parse_questdb_url(url)
        with Sender.from_conf(f"{scheme}::addr={host}:{port};") as sender:
            sender.dataframe(
                table.to_pandas(), table_name=name, symbols=["symbol", "action", "side"], at="ts_event"
            )
        deadline = time.monotonic() + 120
        while admin.ping()["rows"] != table.num_rows:  # WAL tables apply asynchronously
            if time.monotonic() > deadline:
                pytest.fail(
                    f"QuestDB table {name} holds {admin.ping()['rows']} rows, expected {table.num_rows}"
                )
            time.sleep(0.5)
        yield LakeStore(lake), QuestDBStore(url, table=name, page_rows=7_000)
    finally:
        admin.exec(f"DROP TABLE IF EXISTS {name}")


def _plain(t: pa.Table) -> dict[str, list]:
    out = {}
    for name in t.column_names:
        col = t.column(name)
        col = (
            col.cast(pa.string())
            if pa.types.is_dictionary(col.type)
            else col.cast(pa.int64())
            if pa.types.is_timestamp(col.type)
            else col
        )
        vals = col.to_pylist()
        out[name] = [None if v != v else v for v in vals] if name == "price" else vals
    return out


def test_store_answers_are_identical(stores):
    lake, qdb = stores
    assert qdb.symbols() == lake.symbols() == sorted(SYMBOLS)
    for s in SYMBOLS:
        r = lake.time_range(s)
        assert qdb.time_range(s) == r
        mid = (r.start + r.end) // 2
        for start, end in [
            (r.start, r.end),
            (mid, mid + 60 * NS),
            (mid, mid + 3600 * NS),
            (r.end + 1, r.end + 2),
        ]:
            q = RangeQuery(s, start, end)
            a = pa.Table.from_batches(list(lake.scan(q)))
            b = pa.Table.from_batches(list(qdb.scan(q)))
            assert _plain(a) == _plain(b), (s, start, end)
            assert qdb.count(q) == lake.count(q) == a.num_rows


def test_http_answers_are_identical(stores):
    lake, qdb = stores
    a, b = TestClient(create_app(lake)), TestClient(create_app(qdb))
    r = lake.time_range("NVDA")
    mid = (r.start + r.end) // 2
    for doc in (
        {"start_ts": mid, "end_ts": mid + 60 * NS},
        {"start_ts": r.start, "end_ts": r.end, "format": "ndjson"},
        {"start_ts": r.start, "end_ts": r.end, "limit": 999},
    ):
        ra = a.simulate_post("/data", body=json.dumps(doc))
        rb = b.simulate_post("/data", body=json.dumps(doc))
        assert ra.status_code == rb.status_code == 200
        assert ra.content == rb.content
        assert ra.headers.get("x-next-cursor") == rb.headers.get("x-next-cursor")
    for path, params in (
        ("/api/mbo/bars", {"resolution": "1m"}),
        ("/api/mbo/ticks", {"offset": "100"}),
        ("/api/mbo/range", None),
        ("/api/mbo/symbols", None),
    ):
        assert a.simulate_get(path, params=params).json == b.simulate_get(path, params=params).json
    assert b.simulate_get("/health").json["status"] == "ok"
