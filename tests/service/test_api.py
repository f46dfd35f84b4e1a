"""The HTTP contract over a temporary lake built from generated days; databento is the oracle."""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass

import databento as db
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from falcon.testing import TestClient

from engine.dbn.metadata import UNDEF_PRICE
from service import Settings, create_app
from service.app import ROUTES, store_from_env
from service.bars import RESOLUTIONS
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore
from tests.support.service import make_lake, serve

NS = 1_000_000_000
SEED_START, SEED_END = 1761130860000000000, 1761130920000000000
SYMBOLS = ("NVDA", "AAPL", "MSFT", "TSLA")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends


@dataclass
class Oracle:
    """databento's view of the source files: JSON lines, symbols and the fields to filter on."""

    lines: list[bytes]
    symbol: np.ndarray
    ts_event: np.ndarray
    ts_recv: np.ndarray
    sequence: np.ndarray
    action: np.ndarray
    price: np.ndarray
    size: np.ndarray

    def select(self, symbol: str, start: int, end: int) -> np.ndarray:
        idx = np.flatnonzero((self.symbol == symbol) & (self.ts_event >= start) & (self.ts_event <= end))
        order = np.lexsort((self.sequence[idx], self.ts_recv[idx], self.ts_event[idx]))
        return idx[order]

    def json(self, symbol: str, start: int, end: int) -> bytes:
        return b"[" + b",".join(self.lines[i] for i in self.select(symbol, start, end)) + b"]"


def build_oracle(paths) -> Oracle:
    parts = []
    for p in paths:
        with open(p, "rb") as f:
            store = db.DBNStore.from_bytes(f.read())
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "o.json")
            store.to_json(out, pretty_px=False, pretty_ts=False, map_symbols=False)
            with open(out, "rb") as f:
                lines = f.read().splitlines()
        df = store.to_df(map_symbols=True, pretty_ts=False, price_type="fixed")
        assert len(df) == len(lines)
        parts.append((lines, df))

    def cat(col, dt=None):
        return np.concatenate(
            [
                np.asarray(df[col].to_numpy() if col != "ts_recv" else df.index.to_numpy(), dtype=dt)
                for _, df in parts
            ]
        )

    return Oracle(
        [x for lines, _ in parts for x in lines], cat("symbol", object), cat("ts_event", np.int64), cat("ts_recv", np.int64),
        cat("sequence", np.int64), cat("action", object), cat("price", np.int64), cat("size", np.int64),
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    lake, files = make_lake(
        tmp_path_factory.mktemp("api"), 60_000, SYMBOLS, ("2025-10-22", "2025-10-23"), seed=5
    )
    return lake, build_oracle(files)


@pytest.fixture(scope="module")
def client(world):
    return TestClient(create_app(LakeStore(world[0])))


def post(client, path, doc, headers=None, **kw):
    return client.simulate_post(path, body=json.dumps(doc), headers=headers or FORM, **kw)


def span(oracle: Oracle, symbol: str) -> tuple[int, int]:
    ts = oracle.ts_event[oracle.symbol == symbol]
    return int(ts.min()), int(ts.max())


# -- /data ---------------------------------------------------------------------------------------


def test_seed_request_is_databento_json_byte_for_byte(client, world):
    _, oracle = world
    r = post(client, "/data", {"start_ts": SEED_START, "end_ts": SEED_END})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    expected = oracle.json("NVDA", SEED_START, SEED_END)
    assert r.content == expected
    assert len(json.loads(r.content)) == int(r.headers["x-row-count"]) > 0


@pytest.mark.parametrize("symbol", ["NVDA", "TSLA"])
def test_data_windows_equal_databento(client, world, symbol):
    _, oracle = world
    lo, hi = span(oracle, symbol)
    mid = (lo + hi) // 2
    for start, end in [(lo, hi), (mid, mid + 3600 * NS), (1761177000 * NS, 1761210000 * NS), (mid, mid)]:
        r = post(client, "/data", {"start_ts": start, "end_ts": end, "symbol": symbol})
        assert r.status_code == 200, r.text
        assert r.content == oracle.json(symbol, start, end)


def test_text_timestamps_and_get(client, world):
    _, oracle = world
    r = client.simulate_get(
        "/data",
        params={
            "start_ts": "2025-10-22 07:01",
            "end_ts": "2025-10-22T07:02:00-04:00",
            "tz": "America/New_York",
        },
    )
    assert r.status_code == 200
    assert r.content == oracle.json("NVDA", SEED_START, SEED_END)


def _rows_of(fmt: str, body: bytes) -> dict[str, list]:
    """ts_event, ts_recv, price_raw, sequence, action of any format's body."""
    if fmt in ("json", "ndjson"):
        recs = json.loads(body) if fmt == "json" else [json.loads(x) for x in body.splitlines()]
        return {
            "ts_event": [int(r["hd"]["ts_event"]) for r in recs], "ts_recv": [int(r["ts_recv"]) for r in recs],
            "price_raw": [int(r["price"]) for r in recs], "sequence": [r["sequence"] for r in recs],
            "action": [r["action"] for r in recs],
        }  # fmt: skip
    if fmt == "csv":
        t = pacsv.read_csv(io.BytesIO(body))
    elif fmt == "arrow":
        t = ipc.open_stream(body).read_all()
    else:
        t = pq.read_table(pa.BufferReader(body))
    out = {}
    for c in ("ts_event", "ts_recv", "price_raw", "sequence", "action"):
        col = t.column(c)
        col = (
            col.cast(pa.int64())
            if pa.types.is_timestamp(col.type)
            else col.cast(pa.string())
            if c == "action"
            else col
        )
        out[c] = col.to_pylist()
    return out


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "arrow", "parquet"])
def test_every_format_parses_back_to_the_same_rows(client, world, fmt):
    _, oracle = world
    lo, hi = span(oracle, "MSFT")
    doc = {"start_ts": lo, "end_ts": hi, "symbol": "MSFT"}
    base = _rows_of("json", post(client, "/data", doc).content)
    assert len(base["ts_event"]) == len(oracle.select("MSFT", lo, hi)) > 0
    r = post(client, "/data", {**doc, "format": fmt})
    assert r.status_code == 200
    assert _rows_of(fmt, r.content) == base
    media = {
        "ndjson": "application/x-ndjson",
        "csv": "text/csv",
        "arrow": "application/vnd.apache.arrow.stream",
        "parquet": "application/vnd.apache.parquet",
    }[fmt]
    r2 = post(client, "/data", doc, headers={"Accept": media})
    assert r2.headers["content-type"].startswith(media)
    assert _rows_of(fmt, r2.content) == base


def test_ndjson_is_databento_to_json_output(client, world):
    _, oracle = world
    lo, hi = span(oracle, "TSLA")
    r = post(client, "/data", {"start_ts": lo, "end_ts": hi, "symbol": "TSLA", "format": "ndjson"})
    assert r.content == b"".join(oracle.lines[i] + b"\n" for i in oracle.select("TSLA", lo, hi))


def test_cursor_paging_joins_to_the_whole_answer(client, world):
    _, oracle = world
    lo, _hi = span(oracle, "NVDA")
    doc = {"start_ts": lo, "end_ts": lo + 2 * 3600 * NS, "symbol": "NVDA"}
    whole = json.loads(post(client, "/data", doc).content)
    assert len(whole) > 300
    got, cursor, pages = [], None, 0
    while True:
        r = post(client, "/data", {**doc, "limit": 97, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200
        page = json.loads(r.content)
        assert len(page) == int(r.headers["x-row-count"]) <= 97
        got += page
        pages += 1
        cursor = r.headers.get("x-next-cursor")
        if cursor is None:
            break
    assert got == whole
    assert pages == -(-len(whole) // 97)


def test_row_cap_gives_413_with_a_paging_hint(world):
    lake, oracle = world
    c = TestClient(create_app(LakeStore(lake), Settings(max_rows=500)))
    lo, hi = span(oracle, "NVDA")
    r = post(c, "/data", {"start_ts": lo, "end_ts": hi})
    assert r.status_code == 413
    assert set(r.json) == {"title", "description"}
    assert "limit" in r.json["description"] and "cursor" in r.json["description"]
    ok = post(c, "/data", {"start_ts": lo, "end_ts": hi, "limit": 500})
    assert ok.status_code == 200 and len(json.loads(ok.content)) == 500 and "x-next-cursor" in ok.headers
    assert post(c, "/data", {"start_ts": lo, "end_ts": hi, "limit": 501}).status_code == 400


# -- chart API -------------------------------------------------------------------------------------


def reference_bars(oracle: Oracle, symbol: str, start: int, end: int, step: int) -> list[dict]:
    out: dict[int, dict] = {}
    for i in oracle.select(symbol, start, end):
        if oracle.action[i] != "T" or oracle.price[i] == UNDEF_PRICE:
            continue
        b = int(oracle.ts_event[i]) // step * step
        p, s = int(oracle.price[i]), int(oracle.size[i])
        if b not in out:
            out[b] = {
                "ts": b,
                "open_raw": p,
                "high_raw": p,
                "low_raw": p,
                "close_raw": p,
                "volume": 0,
                "trades": 0,
            }
        bar = out[b]
        bar.update(high_raw=max(bar["high_raw"], p), low_raw=min(bar["low_raw"], p), close_raw=p)
        bar["volume"] += s
        bar["trades"] += 1
    return [out[k] for k in sorted(out)]


@pytest.mark.parametrize("resolution", ["1m", "1h", "1d", "auto"])
def test_bars_equal_reference(client, world, resolution):
    _, oracle = world
    lo, hi = span(oracle, "NVDA")
    r = client.simulate_get(
        "/api/mbo/bars", params={"symbol": "NVDA", "start": str(lo), "end": str(hi), "resolution": resolution}
    )
    assert r.status_code == 200, r.text
    doc = r.json
    step = RESOLUTIONS[doc["resolution"]]
    assert doc["step_ns"] == step
    ref = reference_bars(oracle, "NVDA", lo, hi, step)
    assert len(ref) > 1
    got = [{k: b[k] for k in ref[0]} for b in doc["bars"]]
    assert got == ref
    assert all(b["open"] == b["open_raw"] / 1e9 and b["close"] == b["close_raw"] / 1e9 for b in doc["bars"])
    if resolution == "auto":
        # NVDA spans two days (~40 h): 1m would be ~2400 bars, 5m is the finest with <= 1500
        assert (hi - lo) / RESOLUTIONS["1m"] > 1500 >= (hi - lo) / RESOLUTIONS["5m"]
        assert doc["resolution"] == "5m"


def test_bars_arrow_and_defaults(client, world):
    _, oracle = world
    j = client.simulate_get("/api/mbo/bars", params={"symbol": "AAPL", "resolution": "5m"}).json
    r = client.simulate_get(
        "/api/mbo/bars",
        params={"symbol": "AAPL", "resolution": "5m"},
        headers={"Accept": "application/vnd.apache.arrow.stream"},
    )
    assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    t = ipc.open_stream(r.content).read_all()
    assert t.column("ts").cast(pa.int64()).to_pylist() == [b["ts"] for b in j["bars"]]
    assert t.column("volume").to_pylist() == [b["volume"] for b in j["bars"]]
    lo, hi = span(oracle, "AAPL")
    assert (j["start"], j["end"]) == (lo, hi)


def test_ticks_paging_and_arrow(client, world):
    _, oracle = world
    lo, hi = span(oracle, "TSLA")
    full = json.loads(post(client, "/data", {"start_ts": lo, "end_ts": hi, "symbol": "TSLA"}).content)
    got, offset = [], 0
    while True:
        doc = client.simulate_get(
            "/api/mbo/ticks", params={"symbol": "TSLA", "limit": "700", "offset": str(offset)}
        ).json
        assert doc["count"] == len(doc["ticks"]) <= 700
        got += doc["ticks"]
        if not doc["has_more"]:
            break
        offset = doc["next_offset"]
    assert len(got) == len(full)
    assert [t["ts_event"] for t in got] == [int(r["hd"]["ts_event"]) for r in full]
    assert [t["order_id"] for t in got] == [int(r["order_id"]) for r in full]
    assert [t["price_raw"] for t in got] == [int(r["price"]) for r in full]
    assert all((t["price"] is None) == (t["price_raw"] == UNDEF_PRICE) for t in got)
    r = client.simulate_get(
        "/api/mbo/ticks",
        params={"symbol": "TSLA", "limit": "50", "offset": "100"},
        headers={"Accept": "application/vnd.apache.arrow.stream"},
    )
    t = ipc.open_stream(r.content).read_all()
    assert t.column("ts_event").cast(pa.int64()).to_pylist() == [x["ts_event"] for x in got[100:150]]
    assert r.headers["x-has-more"] == "true" and r.headers["x-next-offset"] == "150"


def test_symbols_range_health_openapi(client, world):
    lake, oracle = world
    assert client.simulate_get("/api/mbo/symbols").json == {"symbols": sorted(SYMBOLS), "count": 4}
    r = client.simulate_get("/api/mbo/range", params={"symbol": "MSFT"}).json
    lo, hi = span(oracle, "MSFT")
    assert (r["start"], r["end"], r["rows"]) == (lo, hi, int((oracle.symbol == "MSFT").sum()))
    h = client.simulate_get("/health")
    assert h.status_code == 200 and h.json["status"] == "ok" and h.json["store"]["kind"] == "lake"
    spec = client.simulate_get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == set(ROUTES)
    app = create_app(LakeStore(lake))
    for path, methods in spec["paths"].items():
        resource = app._router.find(path)[0]  # the resource routed there
        served = {m for m in ("get", "post", "put", "delete") if hasattr(resource, f"on_{m}")}
        assert served == set(methods), path


def test_store_from_env(tmp_path):
    assert isinstance(store_from_env({"DATAPAIR_LAKE": str(tmp_path)}), LakeStore)
    assert isinstance(store_from_env({"QUESTDB_URL": "http://127.0.0.1:9000"}), QuestDBStore)
    assert isinstance(store_from_env({"QUESTDB_URL": "http://127.0.0.1:9000"}, "lake"), LakeStore)


# -- real HTTP -------------------------------------------------------------------------------------


def test_waitress_over_real_http(world, client):
    lake, oracle = world
    with serve(create_app(LakeStore(lake), Settings(buffer_rows=1_000))) as base:
        req = urllib.request.Request(
            f"{base}/data",
            data=json.dumps({"start_ts": SEED_START, "end_ts": SEED_END}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
            body = resp.read()
            assert body == oracle.json("NVDA", SEED_START, SEED_END)
            assert int(resp.headers["Content-Length"]) == len(body)  # small: sent whole
        lo, hi = span(oracle, "NVDA")
        big = urllib.request.Request(f"{base}/data?start_ts={lo}&end_ts={hi}&format=arrow")
        with urllib.request.urlopen(big, timeout=60) as resp:
            assert resp.headers.get("Transfer-Encoding") == "chunked"  # streamed, not buffered
            assert ipc.open_stream(resp.read()).read_all().num_rows == len(oracle.select("NVDA", lo, hi))
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(f"{base}/data?start_ts=5&end_ts=1", timeout=30)
        assert ei.value.code == 400
        assert set(json.loads(ei.value.read())) == {"title", "description"}
        with urllib.request.urlopen(f"{base}/health", timeout=30) as resp:
            assert json.loads(resp.read())["status"] == "ok"


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_arguments(monkeypatch, capsys):
    from service.__main__ import main

    assert main(["--help"]) == 0
    assert "examples" in capsys.readouterr().out
    assert main(["--port", "eighty"]) == 2
    monkeypatch.delenv("QUESTDB_URL", raising=False)
    assert main(["--store", "questdb"]) == 1
    assert "QUESTDB_URL" in capsys.readouterr().err


def test_cli_serves_the_lake_until_interrupted(world):
    import signal
    import subprocess
    import sys
    import time

    lake, oracle = world
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DATAPAIR_LAKE": str(lake), "DATAPAIR_STORE": "lake"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port), "--quiet"], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                    health = json.loads(resp.read())
                    assert health["store"]["kind"] == "lake" and str(lake) not in json.dumps(health)
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/data",
            data=json.dumps({"start_ts": SEED_START, "end_ts": SEED_END}).encode(),
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.read() == oracle.json("NVDA", SEED_START, SEED_END)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
