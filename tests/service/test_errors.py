"""The error matrix and the /time endpoints over HTTP: every client mistake is a 4xx JSON
``{title, description}``, a store that is down is 503, never a 500."""

from __future__ import annotations

import json
import socket

import pytest
from falcon.testing import TestClient

from service import create_app
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore
from tests.support.service import make_lake

SEED_START, SEED_END = 1761130860000000000, 1761130920000000000
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    lake, _ = make_lake(tmp_path_factory.mktemp("errors"), 20_000, ("NVDA", "AAPL"), ("2025-10-22",), seed=2)
    return TestClient(create_app(LakeStore(lake)))


def post(client, path, doc, headers=None, **kw):
    return client.simulate_post(path, body=json.dumps(doc), headers=headers or FORM, **kw)


# -- errors --------------------------------------------------------------------------------------

GOOD = {"start_ts": SEED_START, "end_ts": SEED_END}
ERRORS = [
    ("POST", "/data", "{not json", None, 400),
    ("POST", "/data", "", None, 400),
    ("POST", "/data", "[1, 2]", None, 400),
    ("POST", "/data", {"end_ts": SEED_END}, None, 400),
    ("POST", "/data", {"start_ts": "soon", "end_ts": SEED_END}, None, 400),
    ("POST", "/data", {"start_ts": 1.5e18, "end_ts": SEED_END}, None, 400),
    ("POST", "/data", {"start_ts": True, "end_ts": SEED_END}, None, 400),
    ("POST", "/data", {"start_ts": [1], "end_ts": SEED_END}, None, 400),
    ("POST", "/data", {"start_ts": -1, "end_ts": SEED_END}, None, 400),
    ("POST", "/data", {"start_ts": 0, "end_ts": 2**64}, None, 400),
    ("POST", "/data", {"start_ts": SEED_END, "end_ts": SEED_START}, None, 400),
    ("POST", "/data", {**GOOD, "symbol": "ZZZZ"}, None, 404),
    ("POST", "/data", {**GOOD, "symbol": "NVDA'; DROP TABLE mbo_ticks; --"}, None, 404),  # text, looked up
    ("POST", "/data", {**GOOD, "symbol": "NVDA\n"}, None, 400),  # not printable
    ("POST", "/data", {**GOOD, "symbol": " NVDA"}, None, 400),
    ("POST", "/data", {**GOOD, "symbol": "X" * 71}, None, 400),
    ("POST", "/data", {**GOOD, "symbol": 7}, None, 400),
    ("POST", "/data", {**GOOD, "format": "xml"}, None, 400),
    ("POST", "/data", GOOD, {"Accept": "image/png"}, 406),
    ("POST", "/data", {**GOOD, "limit": 10**12}, None, 400),
    ("POST", "/data", {**GOOD, "limit": 0}, None, 400),
    ("POST", "/data", {**GOOD, "limit": "many"}, None, 400),
    ("POST", "/data", {**GOOD, "cursor": "not-a-cursor"}, None, 400),
    ("POST", "/data", {**GOOD, "tz": "Mars/Base"}, None, 400),
    ("POST", "/data", {**GOOD, "start": 1}, None, 400),
    ("POST", "/data", "x" * 70_000, None, 413),  # over the body limit
    ("POST", "/data", "[" * 1000 + "]" * 1000, None, 400),  # nested too deeply
    ("POST", "/time/to_datetime", "[" * 1000 + "]" * 1000, None, 400),
    ("POST", "/time/to_timestamp", {"datetime": "2025-11-02 01:30", "tz": "America/New_York"}, None, 400),
    ("GET", "/data", {"start_ts": "1", "end_ts": "2", "symbol": ["A", "B"]}, None, 400),
    ("PUT", "/data", GOOD, None, 405),
    ("POST", "/time/to_timestamp", {"datetime": "22/10/2025"}, None, 400),
    ("POST", "/time/to_timestamp", {"datetime": 5}, None, 400),
    ("POST", "/time/to_timestamp", {}, None, 400),
    ("POST", "/time/to_timestamp", {"datetime": "2025-10-22", "tz": "Nowhere/City"}, None, 400),
    ("POST", "/time/to_datetime", {"timestamp_ns": -5}, None, 400),
    ("POST", "/time/to_datetime", {"timestamp_ns": 2**63}, None, 400),
    ("POST", "/time/to_datetime", {"timestamp_ns": 1.5}, None, 400),
    ("POST", "/time/to_datetime", {"timestamp_ns": "abc"}, None, 400),
    ("POST", "/time/to_datetime", "nope", None, 400),
    ("GET", "/api/mbo/bars", {"resolution": "2m"}, None, 400),
    ("GET", "/api/mbo/bars", {"symbol": "ZZZZ"}, None, 404),
    ("GET", "/api/mbo/bars", {"start": "0", "end": str(2**62), "resolution": "1s"}, None, 400),
    ("GET", "/api/mbo/ticks", {"limit": "50001"}, None, 400),
    ("GET", "/api/mbo/ticks", {"offset": "-1"}, None, 400),
    ("GET", "/api/mbo/ticks", {"start": "2", "end": "1"}, None, 400),
    ("GET", "/api/mbo/range", {"symbol": "bad symbol!"}, None, 404),  # a real venue's kind of name, not held
    ("GET", "/api/mbo/range", {"symbol": "bad\tsymbol"}, None, 400),
    ("GET", "/api/mbo/symbols", {"x": "1"}, None, 400),
    ("GET", "/no/such/route", None, None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status"), ERRORS)
def test_error_matrix(client, method, path, body, headers, status):
    if method == "GET":
        r = client.simulate_get(path, params=body, headers=headers)
    else:
        text = body if isinstance(body, str) else json.dumps(body)
        r = client.simulate_request(method, path, body=text, headers={**FORM, **(headers or {})})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json
    assert set(doc) == {"title", "description"}
    assert isinstance(doc["title"], str) and isinstance(doc["description"], str) and doc["description"]


def test_time_errors_show_the_accepted_forms(client):
    r = post(client, "/time/to_timestamp", {"datetime": "tomorrow"})
    assert "YYYY-MM-DD" in r.json["description"]
    r = post(client, "/time/to_datetime", {"timestamp_ns": -1})
    assert "nanoseconds" in r.json["description"]
    assert "YYYY-MM-DD" not in r.json["description"]  # a timestamp_ns takes no date-time text


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["lake", "questdb"])
def test_store_down_is_503(tmp_path, kind):
    store = (
        LakeStore(tmp_path / "missing")
        if kind == "lake"
        else QuestDBStore(f"http://127.0.0.1:{_dead_port()}", timeout=2)
    )
    c = TestClient(create_app(store))
    for r in (
        post(c, "/data", GOOD), c.simulate_get("/api/mbo/symbols"), c.simulate_get("/api/mbo/range"),
        c.simulate_get("/api/mbo/bars"), c.simulate_get("/api/mbo/ticks"),
    ):  # fmt: skip
        assert r.status_code == 503, r.text
        assert set(r.json) == {"title", "description"}
    h = c.simulate_get("/health")
    assert h.status_code == 503 and h.json["status"] == "unavailable"
    assert post(c, "/time/to_datetime", {"timestamp_ns": 0}).status_code == 200  # needs no store


# -- /time ---------------------------------------------------------------------------------------


def test_time_seed_contract(client):
    r = post(client, "/time/to_timestamp", {"datetime": "2025-10-22 11:01:00"})
    assert r.json == {"timestamp_ns": 1761130860000000000, "datetime_utc": "2025-10-22 11:01:00 UTC"}
    r = post(client, "/time/to_datetime", {"timestamp_ns": 1761130860010235508})
    assert r.json == {
        "timestamp_ns": 1761130860010235508,
        "datetime_utc": "2025-10-22 11:01:00.010235508 UTC",
    }


@pytest.mark.parametrize(
    ("doc", "ns"),
    [
        ({"datetime": "2025-10-22T07:01:00.010235508-04:00"}, 1761130860010235508),
        ({"datetime": "2025-10-22 07:01:00.010235508", "tz": "America/New_York"}, 1761130860010235508),
        ({"datetime": "2025-11-03 07:01:00.000000001", "tz": "America/New_York"}, 1762171260000000001),
        ({"datetime": "1970-01-01"}, 0),
        ({"datetime": "2262-04-11 23:47:16.854775807Z"}, 2**63 - 1),
    ],
)
def test_time_edge_cases(client, doc, ns):
    r = post(client, "/time/to_timestamp", doc)
    assert r.status_code == 200 and r.json["timestamp_ns"] == ns
    back = post(
        client, "/time/to_datetime", {"timestamp_ns": ns, **({"tz": doc["tz"]} if "tz" in doc else {})}
    ).json
    assert back["timestamp_ns"] == ns
    assert post(client, "/time/to_timestamp", {"datetime": back["datetime_utc"]}).json["timestamp_ns"] == ns
    if "tz" in doc:
        assert back["datetime_local"].startswith(doc["datetime"])
        assert (
            post(client, "/time/to_timestamp", {"datetime": back["datetime_iso"]}).json["timestamp_ns"] == ns
        )


def test_time_get_and_string_timestamps(client):
    r = client.simulate_get(
        "/time/to_datetime", params={"timestamp_ns": "1761130860010235508", "tz": "America/New_York"}
    )
    assert r.json["datetime_local"] == "2025-10-22 07:01:00.010235508 EDT"
    r = client.simulate_get("/time/to_timestamp", params={"datetime": "2025-10-22 11:01:00"})
    assert r.json["timestamp_ns"] == 1761130860000000000
