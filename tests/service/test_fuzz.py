"""Arbitrary input at every parameter of every route: a 4xx JSON body, never a 500 (issue 15, 2a)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from falcon.testing import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import Settings, create_app
from service.stores.lake import LakeStore
from tests.support.service import make_lake

ROUTES = {
    "/data": ("start_ts", "end_ts", "symbol", "limit", "cursor", "format", "tz"),
    "/time/to_timestamp": ("datetime", "tz", "fold"),
    "/time/to_datetime": ("timestamp_ns", "tz"),
    "/api/mbo/bars": ("symbol", "start", "end", "resolution", "tz"),
    "/api/mbo/ticks": ("symbol", "start", "end", "limit", "offset", "tz"),
    "/api/mbo/range": ("symbol",),
    "/api/mbo/symbols": (),
    "/health": (),
}
POST_ROUTES = ("/data", "/time/to_timestamp", "/time/to_datetime")

# what users and scanners send: folders of the zone database, Unicode digits, huge numbers, text
NASTY = [
    "America", "Etc", "__pycache__", "America/New_York", "UTC", "../etc/passwd", "²", "¹⁰", "٣", "Ⅻ",
    "9" * 60, "-" + "9" * 40, "1e309", "NaN", "", " ", "\x00", "NVDA", "BRN FMJ0024!", "auto", "1s",
    "2025-11-02 01:30", "2025-10-22T11:01:00Z", "0", "-1", "1761130860000000000", "9223372036854775807",
    "9223372036854775808", "json", "arrow", "parquet", "{}", "[]", "null", "true",
]  # fmt: skip
scalars = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    lake: Path = make_lake(tmp_path_factory.mktemp("fuzz"), 5_000)[0]
    return TestClient(create_app(LakeStore(lake), Settings(max_rows=20_000)))


def _check(r) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        doc = r.json
        assert set(doc) == {"title", "description"} and doc["description"], doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_query_strings_never_give_500(client: TestClient, data) -> None:
    route = data.draw(st.sampled_from(sorted(ROUTES)))
    names = data.draw(st.lists(st.sampled_from([*ROUTES[route], "x", "limit", "symbol"]), max_size=5, unique=True))
    params = {n: data.draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=30))) for n in names}
    _check(client.simulate_get(route, params=params))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_json_bodies_never_give_500(client: TestClient, data) -> None:
    route = data.draw(st.sampled_from(POST_ROUTES))
    names = data.draw(st.lists(st.sampled_from([*ROUTES[route], "x"]), max_size=5, unique=True))
    doc = {n: data.draw(json_values) for n in names}
    try:
        body = json.dumps(doc, allow_nan=True)
    except (ValueError, OverflowError):
        return
    _check(client.simulate_post(route, body=body, headers={"Content-Type": "application/json"}))


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("body", ["[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, "\xff\xfe", "1" * 70_000])
def test_pathological_bodies(client: TestClient, route: str, body: str) -> None:
    _check(client.simulate_post(route, body=body))


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("/data", {"start_ts": "0", "end_ts": "1", "tz": "America"}),
        ("/time/to_datetime", {"timestamp_ns": "1", "tz": "__pycache__"}),
        ("/api/mbo/bars", {"tz": "Etc", "start": "2025-10-22 10:00"}),
        ("/api/mbo/ticks", {"limit": "²"}),
        ("/api/mbo/ticks", {"offset": "¹⁰"}),
        ("/api/mbo/ticks", {"limit": "9" * 60}),
        ("/data", {"start_ts": "0", "end_ts": "1", "limit": "9" * 60}),
    ],
)
def test_reported_500s_are_400s_naming_the_parameter(client: TestClient, route: str, params: dict) -> None:
    r = client.simulate_get(route, params=params)
    assert r.status_code == 400, r.text
    named = [n for n in params if f"`{n}`" in r.json["description"]]
    assert named, r.json
