"""Slow readers do not take the service down (issue 15, 2b): bounded slots, a reserve, a stall reaper."""

from __future__ import annotations

import json
import socket
import threading
import time
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import Settings, create_app
from service.serving import ServeLimits, StallReaper, StreamSlots, create_server, stop_server
from service.stores.lake import LakeStore
from tests.support.service import make_lake

SLOTS = 2


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    return make_lake(tmp_path_factory.mktemp("slow"), 150_000, symbols=("NVDA", "AAPL"))[0]


@pytest.fixture
def server(lake: Path) -> Iterator[tuple[str, StreamSlots, object]]:
    slots = StreamSlots(SLOTS)
    app = create_app(LakeStore(lake, cache_bytes=0), Settings(buffer_rows=1_000), slots)
    limits = ServeLimits(threads=4, stream_slots=SLOTS, stall_seconds=1.0, outbuf_bytes=64 * 1024)
    srv = create_server(app, "127.0.0.1", 0, limits)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.effective_port}", slots, srv
    finally:
        stop_server(srv, thread)


def _whole_day(url: str) -> bytes:
    body = json.dumps({"start_ts": 0, "end_ts": 2**63 - 1, "symbol": "NVDA"}).encode()
    host, port = url.removeprefix("http://").split(":")
    return (
        f"POST /data HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n\r\n"
    ).encode() + body


def _slow_client(url: str) -> socket.socket:
    """Asks for a whole NVDA day and never reads the answer."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, int(port)))
    s.sendall(_whole_day(url))
    return s


def _wait(cond, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_slow_readers_hold_only_their_slots_and_are_cut_loose(server) -> None:
    url, slots, srv = server
    stalled = [_slow_client(url) for _ in range(SLOTS)]
    try:
        _wait(lambda: slots.in_use == SLOTS, "the slow readers to hold every large-answer slot")
        # a third large answer is refused at once, with a hint when to retry
        req = urllib.request.Request(url + "/data", data=_whole_day(url).split(b"\r\n\r\n", 1)[1], method="POST")
        try:
            urllib.request.urlopen(req, timeout=60)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as e:
            assert e.code == 503 and e.headers["Retry-After"]
            assert json.loads(e.read())["title"] == "Too busy"
        # the reserve answers small requests while the slots are full
        status, _, body = _get(url + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, _, _ = _get(url + "/time/to_datetime?timestamp_ns=1761130860010235508")
        assert status == 200
        # the stalled answers are cut after stall_seconds without progress: slots come back
        _wait(lambda: slots.in_use == 0, "the reaper to close the stalled connections")
        assert srv.reaper.closed >= SLOTS
        for s in stalled:  # the server closed them: reading ends (EOF or reset) instead of blocking
            s.settimeout(60)
            try:
                while s.recv(1 << 16):
                    pass
            except ConnectionResetError:
                pass
    finally:
        for s in stalled:
            s.close()
    # and a large answer streams again, whole
    req = urllib.request.Request(url + "/data", data=_whole_day(url).split(b"\r\n\r\n", 1)[1], method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        rows = json.loads(r.read())
    assert len(rows) == int(r.headers["X-Row-Count"]) > 1_000


def test_a_slot_comes_back_when_the_body_is_never_read() -> None:
    slots = StreamSlots(1)
    body = slots.wrap(iter([b"a", b"b"]))
    assert slots.in_use == 1
    body.close()  # what a WSGI server does when the client is gone before the first chunk
    assert slots.in_use == 0
    assert list(slots.wrap(iter([b"x"]))) == [b"x"] and slots.in_use == 0


def test_stop_server_ends_a_server_whose_trigger_is_already_closed(lake: Path) -> None:
    app = create_app(LakeStore(lake, cache_bytes=0), Settings())
    srv = create_server(app, "127.0.0.1", 0, ServeLimits(threads=2))
    srv.trigger.close()  # what the loop does when it sees its trigger fail (closed in the loop's thread)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    stop_server(srv, thread)  # before: OSError (EBADF) from pulling the closed trigger
    assert not thread.is_alive()
    assert not srv._map  # nothing left open, and the loop's select never saw a closed descriptor


def test_the_reaper_ends_quietly_when_the_trigger_is_closed(lake: Path) -> None:
    app = create_app(LakeStore(lake, cache_bytes=0), Settings())
    srv = create_server(app, "127.0.0.1", 0, ServeLimits(threads=2, stall_seconds=0.0))
    srv.reaper.stop()
    srv.trigger.close()  # the server is stopping
    stalled = types.SimpleNamespace(total_outbufs_len=1, last_activity=0.0, connected=True)
    srv.active_channels = {0: stalled}  # a connection whose client read nothing
    reaper = StallReaper(srv, 0.0, every=0.01).start()
    reaper._thread.join(60)
    assert not reaper._thread.is_alive()  # it returned; pytest fails the test if the thread raised instead
    assert reaper.closed == 1
    srv.close()
    srv.task_dispatcher.shutdown()
