"""Against a real QuestDB (9.1+, reviewed on 9.4): marker ``questdb``, skipped unless QUESTDB_URL answers.

Every test loads into tables of its own (unique names) and drops them afterwards. Rows are read
back with ``/exp?fmt=parquet`` (exact doubles and ns timestamps; ``/exec`` JSON as a fallback)
and compared column by column with databento's decoding.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.errors import SinkError
from engine.questdb.conf import QuestDBOptions, parse_questdb_url
from engine.questdb.ddl import DEDUP_KEYS, MBO_COLUMNS
from engine.questdb.http import Backoff, QuestDBHttp
from engine.questdb.protocols import detect_protocol
from engine.sinks.questdb import ingest_questdb
from tests.conftest import MBO_SAMPLES, sample_path
from tests.test_questdb_fake import CANONICAL, assert_same_rows, expected_rows

pytestmark = pytest.mark.questdb

URL = os.environ.get("QUESTDB_URL", "http://localhost:9000")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server() -> QuestDBHttp:
    http = QuestDBHttp(parse_questdb_url(URL), backoff=Backoff(timeout=1.0), timeout=5.0)
    try:
        http.ping()
    except Exception as exc:
        pytest.skip(f"QuestDB not reachable at {URL}: {exc}")
    return QuestDBHttp(parse_questdb_url(URL), backoff=Backoff(timeout=30.0), timeout=120.0)


@pytest.fixture
def tables(server: QuestDBHttp) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:10]
    names = (f"t_mbo_{tag}", f"t_log_{tag}")
    yield names
    for n in names:
        server.exec(f"DROP TABLE IF EXISTS {n}")


def _protocol_available(protocol: str) -> None:
    address = parse_questdb_url(URL)
    if protocol == "qwp" and detect_protocol(address) != "qwp":
        pytest.skip("this QuestDB does not offer QWP/WebSocket")
    if protocol == "ilp-tcp":
        try:
            socket.create_connection((address.host, address.tcp_port), timeout=2).close()
        except OSError:
            pytest.skip(f"ILP/TCP port {address.tcp_port} closed")


def options(names: tuple[str, str], protocol: str, **kw: object) -> QuestDBOptions:
    return QuestDBOptions.from_env(url=URL, protocol=protocol, table=names[0], log_table=names[1], **kw)


_SELECT = ", ".join(f"cast({c} AS LONG) {c}" if c in ("ts_event", "ts_recv") else c for c in CANONICAL)


def read_rows(http: QuestDBHttp, table: str) -> pd.DataFrame:
    """Every row of ``table`` (canonical columns + day_seq), timestamps as ns integers."""
    sql = f"SELECT {_SELECT} FROM {table}"
    url = f"{http.address.http_url}/exp?{urllib.parse.urlencode({'query': sql, 'fmt': 'parquet'})}"
    req = urllib.request.Request(url)
    auth = http.address.auth_header()
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            body = resp.read()
        if body[:4] == b"PAR1":
            return pq.read_table(io.BytesIO(body)).to_pandas()
    except urllib.error.HTTPError:
        pass
    return pd.DataFrame(http.records(sql, page=200_000), columns=list(CANONICAL))


def wait_count(http: QuestDBHttp, table: str, want: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = int(http.exec(f"SELECT count() AS n FROM {table}").dataset[0][0])
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


def assert_no_duplicate_keys(http: QuestDBHttp, table: str) -> None:
    keys = ", ".join(DEDUP_KEYS)
    res = http.exec(f"SELECT count() AS n FROM (SELECT {keys}, count() AS c FROM {table}) WHERE c > 1")
    assert int(res.dataset[0][0]) == 0


PROTOCOLS = ["qwp", "ilp-http", "ilp-tcp"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("sample", MBO_SAMPLES, ids=lambda s: s.split("/", 1)[1])
def test_sample_round_trip(server: QuestDBHttp, tables: tuple[str, str], protocol: str, sample: str) -> None:
    _protocol_available(protocol)
    path = sample_path(sample)
    summary = ingest_questdb([path], options=options(tables, protocol))
    assert summary.ok, summary.failed
    assert summary.protocol == protocol
    want = expected_rows(path)
    assert summary.rows == len(want)
    assert wait_count(server, tables[0], len(want)) == len(want)
    assert_same_rows(read_rows(server, tables[0]), want)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_generated_day_exact_and_idempotent(
    server: QuestDBHttp, tables: tuple[str, str], protocol: str, make_day
) -> None:
    _protocol_available(protocol)
    path = make_day(records=300_000, symbols=("NVDA", "AAPL", "MSFT", "TSLA", "AMD"), seed=11)
    opts = options(tables, protocol, flush_rows=20_000, qwp_rows=100_000)
    first = ingest_questdb([path], options=opts)
    assert first.ok, first.failed
    want = expected_rows(path)
    assert first.rows == len(want) == wait_count(server, tables[0], len(want))
    assert_same_rows(read_rows(server, tables[0]), want)
    again = ingest_questdb([path], options=opts)  # complete: skipped without decoding
    assert again.ok and again.skipped == 1 and again.rows == 0
    forced = ingest_questdb([path], options=replace(opts, force=True))  # sent again: dedup keeps one copy
    assert forced.ok and forced.rows == len(want)
    assert wait_count(server, tables[0], len(want), timeout=5) == len(want)
    assert_no_duplicate_keys(server, tables[0])
    nvda = ingest_questdb([path], options=replace(opts, force=True), symbols={"NVDA"})
    assert nvda.ok and nvda.rows == int((want["symbol"] == "NVDA").sum())
    assert wait_count(server, tables[0], len(want), timeout=5) == len(want)


def test_table_ddl_partition_and_schema(server: QuestDBHttp, tables: tuple[str, str], make_day) -> None:
    path = make_day(records=20_000)
    summary = ingest_questdb([path], options=options(tables, "ilp-http", partition="hour"))
    assert summary.ok, summary.failed
    info = server.exec(f"SELECT * FROM tables() WHERE table_name = '{tables[0]}'").records()[0]
    assert str(info["partitionBy"]).upper() == "HOUR" and info["designatedTimestamp"] == "ts_event"
    cols = {r["column"]: r for r in server.exec(f"SELECT * FROM table_columns('{tables[0]}')").records()}
    assert [c for c, _ in MBO_COLUMNS] == list(cols)
    assert {c for c, r in cols.items() if r["upsertKey"]} == set(DEDUP_KEYS)
    assert str(cols["ts_recv"]["type"]).upper().replace("_", "") in ("TIMESTAMPNS", "TIMESTAMPNANOS")


def test_mismatching_table_is_refused(server: QuestDBHttp, tables: tuple[str, str], make_day) -> None:
    seed_ddl = (
        f"CREATE TABLE {tables[0]} (ts_event TIMESTAMP, symbol SYMBOL, instrument_id INT, order_id LONG, price_raw LONG, "
        "price DOUBLE, size INT, flags INT, channel_id SHORT, action SYMBOL, side SYMBOL, ts_recv TIMESTAMP, "
        "ts_in_delta INT, sequence INT) TIMESTAMP(ts_event) PARTITION BY DAY WAL"
    )
    server.exec(seed_ddl)
    with pytest.raises(SinkError) as info:
        ingest_questdb([make_day(records=5_000)], options=options(tables, "ilp-http"))
    msg = str(info.value)
    assert "different schema" in msg and "ts_event is TIMESTAMP, expected TIMESTAMP_NS" in msg
    assert "sequence is INT, expected LONG" in msg and "day_seq is missing" in msg
    assert int(server.exec(f"SELECT count() AS n FROM {tables[0]}").dataset[0][0]) == 0


def test_two_files_in_parallel(server: QuestDBHttp, tables: tuple[str, str], make_day) -> None:
    a = make_day(records=60_000, date="2025-10-22", seed=21)
    b = make_day(records=60_000, date="2025-10-23", seed=22)
    summary = ingest_questdb([a, b], options=options(tables, "auto"), jobs=2)
    assert summary.ok, summary.failed
    want = pd.concat([expected_rows(a), expected_rows(b)], ignore_index=True)
    assert summary.rows == len(want) == wait_count(server, tables[0], len(want))
    assert_same_rows(read_rows(server, tables[0]), want)


@pytest.mark.parametrize("protocol", ["ilp-http", "qwp"])
def test_kill_mid_ingest_then_rerun_is_exact(
    server: QuestDBHttp, tables: tuple[str, str], protocol: str, make_day
) -> None:
    _protocol_available(protocol)
    records = 3_000_000 if protocol == "qwp" else 1_500_000  # QWP is fast: a bigger day to kill it in time
    path = make_day(records=records, symbols=("NVDA", "AAPL", "MSFT"), seed=31)
    opts = options(tables, protocol, flush_rows=10_000, qwp_rows=20_000)
    code = textwrap.dedent("""
        import json, sys
        from engine.questdb.conf import QuestDBOptions
        from engine.sinks.questdb import ingest_questdb
        opts = QuestDBOptions(**json.loads(sys.argv[1]))
        ingest_questdb([sys.argv[2]], options=opts)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(opts.__dict__), str(path)], cwd=ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 120
        n = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                n = int(server.exec(f"SELECT count() AS n FROM {tables[0]}").dataset[0][0])
            except Exception:
                n = 0
            if n > 0:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the load ended before it could be killed: use a bigger day"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    want = expected_rows(path)
    partial = wait_count(server, tables[0], len(want), timeout=3)
    assert 0 < partial < len(want)
    log_rows = server.exec(f"SELECT count() AS n FROM {tables[1]}").dataset[0][0]
    assert int(log_rows) == 0  # killed before its completion record
    rerun = ingest_questdb([path], options=opts)
    assert rerun.ok and rerun.skipped == 0 and rerun.rows == len(want)
    assert wait_count(server, tables[0], len(want), timeout=10) == len(want)
    assert_no_duplicate_keys(server, tables[0])
    per_symbol = {
        r["symbol"]: int(r["n"])
        for r in server.exec(f"SELECT symbol, count() AS n FROM {tables[0]}").records()
    }
    assert per_symbol == want.groupby("symbol").size().to_dict()
    assert_same_rows(read_rows(server, tables[0]), want)
    again = ingest_questdb([path], options=opts)
    assert again.ok and again.skipped == 1
