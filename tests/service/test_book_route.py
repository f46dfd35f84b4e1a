"""``GET /api/mbo/book`` (issue 13 §2): the CLI's JSON, Arrow with the Arrow Accept, 404 and 400s."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import falcon.testing
import pyarrow as pa
import pytest

from engine.book.index import index_lake
from engine.book.snapshot import book_snapshot
from service.app import create_app
from service.encoders import ARROW_STREAM
from service.stores.base import Store
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore
from tests.support.qdb import load_arrow
from tests.support.service import lake_table, make_lake

AT = 1_761_143_400_000_000_000  # 2025-10-22 14:30 UTC


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake_dir, _ = make_lake(tmp_path_factory.mktemp("book-route"), 40_000, ("NVDA", "AAPL"), seed=3)
    index_lake(lake_dir)
    return lake_dir


@pytest.fixture(scope="module")
def client(lake: Path) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(LakeStore(lake)))


def test_json_is_the_snapshot(client: falcon.testing.TestClient, lake: Path) -> None:
    r = client.simulate_get("/api/mbo/book", params={"symbol": "NVDA", "at": str(AT), "depth": "5"})
    assert r.status_code == 200
    assert r.json == book_snapshot(lake, "NVDA", AT, depth=5)
    assert len(r.json["bids"]) == len(r.json["asks"]) == 5
    text = client.simulate_get(
        "/api/mbo/book",
        params={"symbol": "NVDA", "at": "2025-10-22 10:30", "tz": "America/New_York", "depth": "5"},
    )
    assert text.json == r.json


def test_orders_and_publisher(client: falcon.testing.TestClient, lake: Path) -> None:
    r = client.simulate_get(
        "/api/mbo/book",
        params={"symbol": "NVDA", "at": str(AT), "depth": "2", "orders": "true", "publisher": "2"},
    )
    assert r.json == book_snapshot(lake, "NVDA", AT, depth=2, publisher=2, orders=True)
    assert all("orders" in lv for lv in r.json["bids"])


def test_arrow_with_the_arrow_accept(client: falcon.testing.TestClient) -> None:
    want = client.simulate_get("/api/mbo/book", params={"symbol": "NVDA", "at": str(AT)}).json
    r = client.simulate_get(
        "/api/mbo/book", params={"symbol": "NVDA", "at": str(AT)}, headers={"Accept": ARROW_STREAM}
    )
    assert r.status_code == 200 and r.headers["content-type"] == ARROW_STREAM
    t = pa.ipc.open_stream(r.content).read_all()
    assert t.schema.metadata[b"at"] == str(AT).encode() and r.headers["x-book-ts-recv"] == str(
        want["ts_recv"]
    )
    rows = t.to_pylist()
    assert [(x["price_raw"], x["size"], x["count"]) for x in rows if x["side"] == "B"] == [
        (lv["price_raw"], lv["size"], lv["count"]) for lv in want["bids"]
    ]
    assert [x["level"] for x in rows if x["side"] == "A"] == list(range(len(want["asks"])))


def test_unknown_symbol_is_404(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/api/mbo/book", params={"symbol": "NVDX", "at": str(AT)})
    assert r.status_code == 404 and "NVDA" in r.json["description"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"at": "yesterday"}, "`at`"),
        ({"at": "-1"}, "`at`"),
        ({}, "`at`"),
        ({"at": str(AT), "depth": "0"}, "`depth`"),
        ({"at": str(AT), "depth": "ten"}, "`depth`"),
        ({"at": str(AT), "publisher": "65536"}, "`publisher`"),
        ({"at": str(AT), "orders": "maybe"}, "`orders`"),
        ({"at": str(AT), "when": "now"}, "when"),
    ],
)
def test_bad_parameters_are_400(
    client: falcon.testing.TestClient, params: dict[str, str], field: str
) -> None:
    r = client.simulate_get("/api/mbo/book", params={"symbol": "NVDA", **params})
    assert r.status_code == 400 and set(r.json) == {"title", "description"} and field in r.json["description"]


def test_the_route_is_in_openapi(client: falcon.testing.TestClient) -> None:
    spec = client.simulate_get("/openapi.json").json
    params = {p["name"] for p in spec["paths"]["/api/mbo/book"]["get"]["parameters"]}
    assert {"symbol", "at", "depth", "publisher"} <= params


def test_stores_without_checkpoints_answer_the_same(lake: Path) -> None:
    """The generic answer (any store: the day's rows through scan(), as the QuestDB store answers)
    and the lake store without checkpoints equal the lake store with them."""
    store = LakeStore(lake)
    plain = LakeStore(lake, checkpoints=False)
    for at in (AT, AT + 123_456_789, 1_761_120_000_000_000_000, 1_761_177_000_000_000_000):
        want = store.book("NVDA", at, 10, None, True)
        assert Store.book(store, "NVDA", at, 10, None, True) == want
        assert plain.book("NVDA", at, 10, None, True) == want


@pytest.mark.questdb
def test_questdb_store_answers_the_lakes_book(
    lake: Path, questdb_url: str, questdb_module_tables: Callable[[str], str]
) -> None:
    """The QuestDB store's book (the day's rows in feed order from the real server) is the lake's."""
    names = questdb_module_tables("t_book"), questdb_module_tables("t_book_log")
    load_arrow(questdb_url, names, lake_table(lake))
    qdb, lk = QuestDBStore(questdb_url, names[0], page_rows=5_000), LakeStore(lake)
    client = falcon.testing.TestClient(create_app(qdb))
    for at in (AT, AT + 123_456_789, 1_761_120_000_000_000_000, 1_761_177_000_000_000_000):
        want = lk.book("NVDA", at, 10, None, True)
        assert (want["bids"] and want["asks"]) or at == 1_761_120_000_000_000_000
        assert qdb.book("NVDA", at, 10, None, True) == want
        r = client.simulate_get("/api/mbo/book", params={"symbol": "NVDA", "at": str(at)})
        assert r.status_code == 200 and r.json == lk.book("NVDA", at)
