"""A fault-injecting TCP proxy in front of a real server: the faults a server does not make on demand.

:class:`FaultProxy` listens on a free loopback port and forwards every connection to ``target``
(the real QuestDB), byte for byte, in both directions. It understands only HTTP's framing (a
request's head, then ``Content-Length`` or chunked body bytes; an ``Upgrade`` request turns the
rest of the connection into a plain byte stream, as QWP's WebSocket does), never a QuestDB
protocol. Faults come from a queue, one per HTTP request in arrival order (``http=True``) or one
per connection (``http=False``, e.g. ILP/TCP); ``None`` in the queue forwards untouched, and
``default`` applies once the queue is empty. With ``match``, only requests whose path starts with
it take faults (e.g. ``/write`` for ILP/HTTP, whose client also asks for ``/settings``).

- :func:`drop_request` ``(after=n)``: forward the head and ``n`` bytes of the body (of the stream
  after an upgrade; of the connection without HTTP), then reset both sides: a connection dropped
  mid-request.
- :func:`drop_response` ``(after=n)``: forward the request, relay ``n`` bytes of the answer, then
  reset both sides: a connection dropped mid-response (the server did the work).
- :func:`status` ``(code, body)``: read the request, answer ``code`` (e.g. 503, or a 204 that
  acknowledges rows the server never sees) instead of forwarding; the connection stays open.
- :func:`stall`: accept and read, never forward, never answer.
- :func:`wait_for` ``(n)``: hold the request until the proxy has seen ``n`` requests (that take
  faults) in all, then forward it; ``released`` records True, or False when a minute passed
  first. A request held until a later one arrives proves the client had both in flight at once.

``FaultProxy(None, default=stall())`` is a silent listener: it accepts connections and never
answers. ``requests`` lists ``"METHOD /path"`` of every HTTP request seen, ``applied`` every fault
that took effect, ``headers`` their headers (lower-case names), ``bodies`` their body sizes (0 for
none; all three lists line up, whatever the connections' interleaving);
``connections`` counts accepted connections.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Fault", "FaultProxy", "drop_request", "drop_response", "stall", "status", "wait_for"]

_CHUNK = 65536
_REASONS = {204: "No Content", 400: "Bad Request", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}  # fmt: skip


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` is ``drop_request``, ``drop_response``, ``status`` or ``stall``."""

    kind: str
    after: int = 0
    code: int = 503
    body: bytes = b""


def drop_request(after: int = 0) -> Fault:
    """Reset both sides once the head and ``after`` more bytes from the client went through."""
    return Fault("drop_request", after=after)


def drop_response(after: int = 0) -> Fault:
    """Forward the request, relay ``after`` bytes of the answer (head included), then reset."""
    return Fault("drop_response", after=after)


def status(code: int = 503, body: bytes | str = b"") -> Fault:
    """Answer ``code`` with ``body`` (JSON when it starts with ``{``) instead of forwarding."""
    return Fault("status", code=code, body=body.encode() if isinstance(body, str) else body)


def stall() -> Fault:
    """Never forward, never answer (the connection stays open until the client or the proxy closes it)."""
    return Fault("stall")


def wait_for(n: int) -> Fault:
    """Hold the request until ``n`` requests were seen in all (at most a minute), then forward it."""
    return Fault("wait_for", after=n)


class _Closed(Exception):
    """The client closed its side."""


def _reset(sock: socket.socket | None) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed peer or a dropped link looks."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)  # wakes a thread blocked reading it; sends nothing
    with contextlib.suppress(OSError):
        sock.close()


class _Reader:
    """Buffered reads from the client socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _more(self) -> None:
        data = self.sock.recv(_CHUNK)
        if not data:
            raise _Closed
        self.buf += data

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._more()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def some(self) -> bytes:
        if not self.buf:
            self._more()
        out, self.buf = self.buf, b""
        return out


class _Conn:
    """One client connection and its upstream."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy, self.client = proxy, client
        self.reader = _Reader(client)
        self.upstream: socket.socket | None = None
        self.budget: int | None = None  # answer bytes still to relay before a reset
        self.seen = -1  # index of the current request in the proxy's lists
        self.lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------
    def connect(self) -> socket.socket:
        if self.upstream is None:
            if self.proxy.target is None:
                msg = "FaultProxy without a target can only stall or answer a status"
                raise RuntimeError(msg)
            self.upstream = socket.create_connection(self.proxy.target, timeout=30)
            self.upstream.settimeout(None)
            self.proxy._track(self.upstream)
            threading.Thread(target=self.relay_down, daemon=True).start()
        return self.upstream

    def relay_down(self) -> None:
        up = self.upstream
        assert up is not None
        try:
            while data := up.recv(_CHUNK):
                with self.lock:
                    budget = self.budget
                if budget is not None and len(data) >= budget:
                    self.client.sendall(data[:budget])
                    self.reset()
                    return
                if budget is not None:
                    with self.lock:
                        self.budget = budget - len(data)
                self.client.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self.client.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)

    def forward(self, data: bytes) -> None:
        self.connect().sendall(data)

    def hold(self) -> None:
        """Stall: read and discard until the client goes away."""
        with contextlib.suppress(_Closed, OSError):
            while True:
                self.reader.some()

    def answer(self, fault: Fault) -> None:
        """Answer the request (whose body was read) with the fault's status; the connection stays open."""
        body = fault.body
        ctype = "application/json" if body[:1] == b"{" else "text/plain"
        reason = _REASONS.get(fault.code, "Fault")
        head = (
            f"HTTP/1.1 {fault.code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.client.sendall(head.encode() + body)

    def stream(self, fault: Fault | None, sent: int = 0) -> None:
        """Forward the client's bytes as they come (raw TCP, or after an upgrade)."""
        while True:
            data = self.reader.some()
            if fault is not None and fault.kind == "drop_request" and sent + len(data) >= fault.after:
                self.forward(data[: fault.after - sent])
                self.reset()
                return
            sent += len(data)
            self.forward(data)

    # -- the two modes -------------------------------------------------------------------------
    def run_raw(self) -> None:
        fault = self.proxy._next_fault()
        if fault is not None and fault.kind == "stall":
            return self.hold()
        if fault is not None and fault.kind == "status":
            msg = "status faults need http=True"
            raise RuntimeError(msg)
        if fault is not None and fault.kind == "drop_response":
            self.budget = fault.after
        self.connect()
        return self.stream(fault)

    def run_http(self) -> None:
        while True:
            head = self.reader.until(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = [*lines[0].split(" "), "", ""][:2]
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            self.seen = self.proxy._record(f"{method} {path}", headers)
            fault = self.proxy._next_fault(path)
            if fault is not None and fault.kind == "wait_for":
                self.proxy._wait_for(fault.after)
                fault = None
            if fault is not None and fault.kind == "stall":
                return self.hold()
            if fault is not None and fault.kind == "status":
                self.read_body(headers)
                self.answer(fault)
                continue
            if fault is not None and fault.kind == "drop_response":
                with self.lock:
                    self.budget = fault.after
            drop_after = fault.after if fault is not None and fault.kind == "drop_request" else None
            self.forward(head)
            if "upgrade" in headers.get("connection", "").lower():
                return self.stream(fault if drop_after is not None else None)
            if not self.body(headers, drop_after):
                return

    def read_body(self, headers: dict[str, str]) -> bytes:
        """One request body, as sent (``Content-Length`` or chunked)."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size_line = self.reader.until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                parts.append(size_line + self.reader.take(size + 2))
                if size == 0:
                    break
            data = b"".join(parts)
        else:
            data = self.reader.take(int(headers.get("content-length", "0") or 0))
        self.proxy.bodies[self.seen] = len(data)
        return data

    def body(self, headers: dict[str, str], drop_after: int | None) -> bool:
        """Forward one request body; False once the connection was reset."""
        data = self.read_body(headers)
        if drop_after is not None:
            self.forward(data[:drop_after])
            self.reset()
            return False
        if data:
            self.forward(data)
        return True

    def run(self) -> None:
        try:
            self.run_http() if self.proxy.http else self.run_raw()
        except (_Closed, OSError):
            pass
        finally:
            if self.upstream is not None:
                with contextlib.suppress(OSError):
                    self.upstream.shutdown(socket.SHUT_WR)


class FaultProxy:
    """A threaded TCP proxy to ``target`` (host, port) that injects faults (see the module doc).

    Parameters
    ----------
    target : (str, int) or None
        The real server; None for a listener that can only stall or answer a status.
    http : bool
        Faults per HTTP request (True) or per connection (False, e.g. ILP/TCP).
    faults : iterable of Fault or None
        The first requests' (connections') faults, in order; more can be appended to ``faults``.
    default : Fault, optional
        The fault once the queue is empty (None: forward).
    match : str, optional
        Only HTTP requests whose path starts with this take faults.
    """

    def __init__(
        self,
        target: tuple[str, int] | None,
        *,
        http: bool = True,
        faults: Iterable[Fault | None] = (),
        default: Fault | None = None,
        match: str | None = None,
    ) -> None:
        self.target, self.http, self.default, self.match = target, http, default, match
        self.faults: collections.deque[Fault | None] = collections.deque(faults)
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[int] = []
        self.applied: list[Fault] = []
        self.released: list[bool] = []
        self.connections = 0
        self._seen = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._socks: list[socket.socket] = []
        self._listener = socket.socket()
        # A fixed, small receive window (no autotuning): after a drop the client learns of it within
        # a few hundred KB of further sends, not after the tens of MB a tuned window can hold.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.host, self.port = "127.0.0.1", self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)

    def _record(self, request: str, headers: dict[str, str]) -> int:
        """Note a request (its body size comes later, at the same index: connections interleave)."""
        with self._lock:
            self.requests.append(request)
            self.headers.append(headers)
            self.bodies.append(0)
            return len(self.requests) - 1

    def _next_fault(self, path: str = "") -> Fault | None:
        if self.match is not None and not path.startswith(self.match):
            return None
        with self._lock:
            self._seen += 1
            self._arrived.notify_all()
            fault = self.faults.popleft() if self.faults else self.default
            if fault is not None:
                self.applied.append(fault)
            return fault

    def _wait_for(self, n: int, limit: float = 60.0) -> None:
        with self._arrived:
            ok = self._arrived.wait_for(lambda: self._seen >= n, timeout=limit)
            self.released.append(ok)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            self._track(client)
            threading.Thread(target=_Conn(self, client).run, daemon=True).start()

    def close(self) -> None:
        """Stop listening and reset every open connection."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            _reset(s)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
