"""What a new user hit (issue 11): real venue symbols, server flags, auto bars, body limits, DST."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from falcon.testing import TestClient

from engine.lake.ingest import ingest_parquet
from service import Settings, create_app
from service.__main__ import QueueLogLimiter
from service.stores.lake import LakeStore
from tests.support.samples import MBO_SAMPLES, ROOT, sample_path
from tests.support.service import make_lake

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def venues(tmp_path_factory) -> TestClient:
    """Every real sample in one lake: CME, ICE (``BRN FMJ0024!``), Nasdaq, live."""
    lake = tmp_path_factory.mktemp("venues") / "lake"
    paths = [sample_path(s) for s in MBO_SAMPLES if s.startswith("databento-python/")]
    summary = ingest_parquet(paths, lake, jobs=1)
    assert summary.ok, summary.failed
    return TestClient(create_app(LakeStore(lake)))


def test_every_symbol_the_store_lists_works_in_every_route(venues: TestClient) -> None:
    symbols = venues.simulate_get("/api/mbo/symbols").json["symbols"]
    assert "BRN FMJ0024!" in symbols and "TFM FMH0024!" in symbols
    for s in symbols:
        r = venues.simulate_get("/api/mbo/range", params={"symbol": s})
        assert r.status_code == 200, (s, r.text)
        span = r.json
        assert span["symbol"] == s and span["rows"] > 0
        body = {"symbol": s, "start_ts": span["start"], "end_ts": span["end"]}
        data = venues.simulate_post("/data", body=json.dumps(body), headers=FORM)
        assert data.status_code == 200, (s, data.text)
        assert len(data.json) == span["rows"]
        ticks = venues.simulate_get("/api/mbo/ticks", params={"symbol": s, "limit": "5"})
        assert ticks.status_code == 200 and ticks.json["count"] == min(5, span["rows"])
        bars = venues.simulate_get("/api/mbo/bars", params={"symbol": s})
        assert bars.status_code == 200, (s, bars.text)


def test_an_unknown_symbol_is_404_with_the_nearest_names(venues: TestClient) -> None:
    r = venues.simulate_get("/api/mbo/range", params={"symbol": "BRN FMJ0025!"})
    assert r.status_code == 404
    assert "BRN FMJ0024!" in r.json["description"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[TestClient, Path]:
    lake, _ = make_lake(tmp_path_factory.mktemp("demo"), 20_000)
    return TestClient(create_app(LakeStore(lake), Settings(max_bars=2_000))), lake


def test_auto_resolution_always_answers_within_the_cap(demo) -> None:
    client, _ = demo
    r = client.simulate_get(
        "/api/mbo/bars", params={"symbol": "NVDA", "start": "0", "end": str(2**63 - 1), "resolution": "auto"}
    )
    assert r.status_code == 200, r.text
    assert 0 < r.json["count"] <= 2_000
    rng = client.simulate_get("/api/mbo/range", params={"symbol": "NVDA"}).json
    span = rng["end"] - rng["start"]
    assert span / r.json["step_ns"] <= 2_000  # the clamped span decides, not 0..2^63
    # an explicit resolution over such a range is still refused, with the advice to use auto
    r = client.simulate_get(
        "/api/mbo/bars", params={"symbol": "NVDA", "start": "0", "end": str(2**63 - 1), "resolution": "1s"}
    )
    assert r.status_code == 400 and "auto" in r.json["description"]
    # a range outside the data gives no bars, not an error
    r = client.simulate_get("/api/mbo/bars", params={"symbol": "NVDA", "start": "0", "end": "1000", "resolution": "auto"})
    assert r.status_code == 200 and r.json["count"] == 0


def test_body_limits_head_health_and_time_errors(demo) -> None:
    client, _ = demo
    big = client.simulate_post("/data", body="x" * 70_000, headers=FORM)
    assert big.status_code == 413 and big.json["title"] == "Request body too large"
    deep = client.simulate_post("/time/to_datetime", body="[" * 5000 + "]" * 5000, headers=FORM)
    assert deep.status_code == 400 and "deep" in deep.json["description"]
    head = client.simulate_head("/health")
    assert head.status_code == 200 and not head.content
    r = client.simulate_post("/time/to_datetime", body=json.dumps({"timestamp_ns": "soon"}), headers=FORM)
    assert r.status_code == 400 and "YYYY-MM-DD" not in r.json["description"]


def test_ambiguous_local_time_names_both_readings_unless_fold(demo) -> None:
    client, _ = demo
    ask = {"datetime": "2025-11-02 01:30", "tz": "America/New_York"}
    r = client.simulate_post("/time/to_timestamp", body=json.dumps(ask), headers=FORM)
    assert r.status_code == 400
    assert "2025-11-02 05:30:00 UTC" in r.json["description"] and "2025-11-02 06:30:00 UTC" in r.json["description"]
    for fold, hour in ((0, 5), (1, 6)):
        r = client.simulate_post("/time/to_timestamp", body=json.dumps({**ask, "fold": fold}), headers=FORM)
        assert r.status_code == 200 and r.json["datetime_utc"] == f"2025-11-02 0{hour}:30:00 UTC"
    r = client.simulate_post("/time/to_timestamp", body=json.dumps({**ask, "fold": 2}), headers=FORM)
    assert r.status_code == 400 and "fold" in r.json["description"]


def test_queue_warnings_are_limited_to_one_a_second() -> None:
    limiter = QueueLogLimiter(seconds=3600.0)
    records = [logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d", (i,), None)
               for i in range(40)]  # fmt: skip
    passed = [r for r in records if limiter.filter(r)]
    assert len(passed) == 1 and limiter.suppressed == 39


# -- python -m service: flags checked before anything starts ------------------------------------------
def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "service", "--store", "lake", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--threads", "0"], "--threads"),
        (["--threads", "-2"], "--threads"),
        (["--port", "70000"], "--port"),
        (["--port", "-1"], "--port"),
        (["--host", "999.1.1.1"], "--host"),
        (["--host", "nosuchhost.invalid"], "--host"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(demo, flags: list[str], needle: str) -> None:
    _, lake = demo
    proc = _serve("--lake", str(lake), *flags)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert "http://" not in err  # nothing announced


def _wait_for_url(proc: subprocess.Popen) -> str:
    assert proc.stderr is not None
    line = proc.stderr.readline()  # announced only once the socket is bound
    m = re.search(r"http://[\d.]+:(\d+)", line)
    assert m, line
    return m.group(0)


def test_url_is_announced_once_bound_and_a_port_in_use_is_exit_1(demo) -> None:
    _, lake = demo
    first = _serve("--lake", str(lake), "--port", "0")
    try:
        url = _wait_for_url(first)
        with urllib.request.urlopen(url + "/health", timeout=30) as r:  # answers at the announced port
            assert r.status == 200
        port = url.rsplit(":", 1)[1]
        second = _serve("--lake", str(lake), "--port", port)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1
        assert err.strip().splitlines() == [f"datapair-serve: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    finally:
        first.terminate()
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0 and "Traceback" not in err and "stopped" in err


def test_default_threads_follow_the_cores() -> None:
    from service.__main__ import default_threads, make_parser

    assert make_parser().parse_args([]).threads == default_threads() == max(4, min(64, 4 * (os.cpu_count() or 1)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_stops_the_server_cleanly(demo) -> None:
    _, lake = demo
    proc = _serve("--lake", str(lake), "--port", str(_free_port()))
    _wait_for_url(proc)
    proc.send_signal(15)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err
