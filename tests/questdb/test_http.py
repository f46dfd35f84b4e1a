"""Retry and backoff of ``/exec`` (and the senders' reconnects) against endpoints that fail on purpose."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import questdb

from engine.errors import QueryError, SinkError, StoreUnavailableError
from engine.questdb.conf import QuestDBOptions, parse_questdb_url
from engine.questdb.http import Backoff, QuestDBHttp, TransientError, retry
from engine.questdb.protocols import IlpSender, is_transient
from tests.support.questdb_fake import FakeQuestDB


@pytest.fixture
def fake() -> Iterator[FakeQuestDB]:
    f = FakeQuestDB()
    yield f
    f.close()


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


def test_exec_retries_5xx_and_dropped_connections(fake: FakeQuestDB) -> None:
    fake.exec_faults[:] = [(503, b"busy"), "drop", (500, {"error": "internal"})]
    http, sleeps = _client(fake.url)
    assert http.exec("SELECT 1 AS ok").records() == [{"ok": 1}]
    assert http.attempts == 4 and len(sleeps) == 3
    assert sleeps == sorted(sleeps)


def test_exec_does_not_retry_a_rejected_statement(fake: FakeQuestDB) -> None:
    fake.exec_faults[:] = [(400, {"query": "SELEC 1", "error": "unexpected token [SELEC]", "position": 0})]
    http, sleeps = _client(fake.url)
    with pytest.raises(QueryError) as info:
        http.exec("SELEC 1")
    assert "unexpected token [SELEC]" in str(info.value) and "at position 0" in str(info.value)
    assert http.attempts == 1 and sleeps == []


def test_exec_gives_up_on_an_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: connection refused
    http, _sleeps = _client(f"http://127.0.0.1:{port}", timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port} did not answer within 0.3 s"):
        http.exec("SELECT 1 AS ok")
    assert http.attempts >= 3 and time.monotonic() - t0 < 2.0


def test_exec_pages_with_limit(fake: FakeQuestDB) -> None:
    from engine.questdb.ddl import ensure_tables

    http, _ = _client(fake.url)
    ensure_tables(http, "t", "day", "log")
    fake.tables["t"].rows = [
        {"symbol": f"S{i % 7}", "publisher_id": 1, "ts_event": i, "ts_recv": i} for i in range(50)
    ]
    recs = http.records("SELECT symbol, publisher_id, count() AS n FROM t WHERE ts_event BETWEEN 0 AND 100 "
                        "AND ts_recv BETWEEN 0 AND 100 ORDER BY symbol, publisher_id", page=3)  # fmt: skip
    assert [r["symbol"] for r in recs] == [f"S{i}" for i in range(7)]  # ordered, each group once
    assert sum(r["n"] for r in recs) == 50


def test_error_classification() -> None:
    assert is_transient(questdb.QuestDBError(questdb.QuestDBErrorCode.SocketError, "Peer disconnected"))
    assert not is_transient(questdb.QuestDBError(questdb.QuestDBErrorCode.ServerFlushError, "cast error"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ValueError())


def test_ilp_sender_reconnects_then_stops_on_a_permanent_error(fake: FakeQuestDB) -> None:
    from engine.questdb.ddl import ensure_tables
    from tests.support.blocks import block_of

    http, _ = _client(fake.url)
    ensure_tables(http, "t", "day", "log")
    opts = QuestDBOptions.from_env({}, url=fake.url, retry_timeout_ms=3000, flush_rows=100)
    fake.write_faults[:] = [
        "drop",
        "drop",
        (503, b"busy"),
        None,
        (400, {"code": "invalid", "message": "bad value"}),
    ]
    sender = IlpSender(opts.address, opts, "t", "http")
    with pytest.raises(SinkError, match="bad value"):
        sender.send(block_of(450), final=True)
    assert sender.stats.retries == 2  # the drops; the 503 was retried by the client itself
    assert sender.stats.requests == 1 and len(fake.tables["t"].rows) == 100  # batch 2 met the 400
    sender.close()
