"""Retry and backoff of ``/exec`` (and the senders' reconnects): pure backoff arithmetic, then the real
server behind the fault proxy (marker ``questdb`` on those)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
import questdb

from engine.errors import QueryError, SinkError, StoreUnavailableError
from engine.questdb.conf import QuestDBOptions, parse_questdb_url
from engine.questdb.ddl import ensure_tables
from engine.questdb.http import Backoff, QuestDBHttp, TransientError, retry
from engine.questdb.ilp import IlpSender
from engine.questdb.protocols import is_transient
from tests.support.blocks import block_of
from tests.support.faultproxy import FaultProxy, drop_request, drop_response, status
from tests.support.qdb import wait_count


@pytest.fixture
def proxy(questdb_url: str) -> Iterator[FaultProxy]:
    a = parse_questdb_url(questdb_url)
    with FaultProxy((a.host, a.port)) as p:
        yield p


def test_backoff_delays_grow_and_cap() -> None:
    d = Backoff(initial=0.1, factor=2.0, max_delay=0.5).delays()
    assert [round(next(d), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


def test_retry_stops_at_the_time_budget() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    def always() -> None:
        raise TransientError("down")

    with pytest.raises(TransientError):
        retry(always, backoff=Backoff(initial=1, factor=2, max_delay=4, timeout=10), is_transient=lambda e: True,
              sleep=sleep, clock=lambda: now[0])  # fmt: skip
    assert sleeps == [1, 2, 4]  # a fourth sleep of 4 would end at 11 > 10
    calls = []

    def permanent() -> None:
        calls.append(1)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        retry(permanent, backoff=Backoff(), is_transient=lambda e: isinstance(e, TransientError), sleep=sleep)
    assert calls == [1]


def _client(url: str, timeout: float = 2.0) -> tuple[QuestDBHttp, list[float]]:
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        time.sleep(s)

    backoff = Backoff(initial=0.01, max_delay=0.05, timeout=timeout)
    return QuestDBHttp(parse_questdb_url(url), backoff=backoff, sleep=sleep), sleeps


@pytest.mark.questdb
def test_exec_retries_5xx_and_dropped_connections(proxy: FaultProxy) -> None:
    proxy.faults.extend([status(503, "busy"), drop_request(), drop_response(after=20), status(500, '{"error":"x"}')])
    http, sleeps = _client(proxy.url, timeout=10)
    assert http.exec("SELECT 1 AS ok").records() == [{"ok": 1}]
    assert http.attempts == 5 and len(sleeps) == 4 and not proxy.faults
    assert sleeps == sorted(sleeps)


@pytest.mark.questdb
def test_exec_does_not_retry_a_rejected_statement(proxy: FaultProxy) -> None:
    http, sleeps = _client(proxy.url)
    with pytest.raises(QueryError) as info:
        http.exec("SELEC 1")
    assert "table does not exist [table=SELEC]" in str(info.value) and "at position 0" in str(info.value)
    assert http.attempts == 1 and sleeps == [] and len(proxy.requests) == 1


def test_exec_gives_up_on_an_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: connection refused
    http, sleeps = _client(f"http://127.0.0.1:{port}", timeout=0.3)
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port} did not answer within 0.3 s"):
        http.exec("SELECT 1 AS ok")
    assert http.attempts == len(sleeps) + 1 >= 3
    assert sum(sleeps) <= 0.3  # the budget bounds the sleeps (no wall clock asserted)


@pytest.mark.questdb
def test_exec_pages_with_limit(questdb_url: str, questdb_tables: Callable[[str], str]) -> None:
    t = questdb_tables("t_page")
    http, _ = _client(questdb_url, timeout=10)
    http.exec(f"CREATE TABLE {t} (ts TIMESTAMP, symbol SYMBOL, publisher_id INT) TIMESTAMP(ts) PARTITION BY DAY WAL")
    http.exec(f"INSERT INTO {t} SELECT x::timestamp, 'S' || (x % 7), 1 FROM long_sequence(50)")
    assert wait_count(http, t, 50) == 50
    recs = http.records(f"SELECT symbol, publisher_id, count() AS n FROM {t} ORDER BY symbol, publisher_id", page=3)
    assert [r["symbol"] for r in recs] == [f"S{i}" for i in range(7)]  # ordered, each group once
    assert sum(r["n"] for r in recs) == 50


def test_error_classification() -> None:
    assert is_transient(questdb.QuestDBError(questdb.QuestDBErrorCode.SocketError, "Peer disconnected"))
    assert not is_transient(questdb.QuestDBError(questdb.QuestDBErrorCode.ServerFlushError, "cast error"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ValueError())


@pytest.mark.questdb
def test_ilp_sender_reconnects_then_stops_on_a_permanent_error(
    questdb_url: str, questdb_tables: Callable[[str], str]
) -> None:
    t, log = questdb_tables("t_ilp"), questdb_tables("t_ilplog")
    a = parse_questdb_url(questdb_url)
    ensure_tables(QuestDBHttp(a, backoff=Backoff(timeout=10)), t, "day", log)
    refusal = '{"code":"invalid","message":"bad value","line":1,"errorId":"x-1"}'
    faults = [drop_request(after=100), drop_request(after=100), status(503, "busy"), None, status(400, refusal)]
    with FaultProxy((a.host, a.port), match="/write", faults=faults) as p:
        # one connection: the faults meet the requests in the order the rows are cut
        opts = QuestDBOptions.from_env({}, url=p.url, retry_timeout_ms=3000, flush_rows=100, ilp_connections=1)
        sender = IlpSender(opts.address, opts, t, "http")
        try:
            with pytest.raises(SinkError, match="bad value"):
                sender.send(block_of(450), final=True)
        finally:
            sender.close()
        assert not p.faults
    assert sender.stats.retries == 2  # the drops; the 503 was retried by the client itself
    assert sender.stats.requests == 1  # batch 2 met the 400
    http = QuestDBHttp(a, backoff=Backoff(timeout=10))
    assert wait_count(http, t, 100) == 100
