"""The QuestDB store's ``/exec`` client: short timeouts, a circuit breaker, a bound on blocked calls.

A QuestDB that accepts connections but never answers must not hold the service: each call has a
connect timeout and a timeout on every read (the first byte included), a few seconds each; a
transport failure (refused, reset, timed out, 5xx, an answer that is not JSON) opens the
:class:`CircuitBreaker`, so for ``retry_after`` seconds every call fails at once, then one call
probes the server while the others keep failing fast. At most ``max_calls`` calls wait on the
server at any time; one more fails at once ("busy"), so a stalled server can never take every
waitress thread and routes that need no store (``/time/*``) always find one.

Every failure is a :class:`~engine.errors.StoreUnavailableError` whose message names the server
(for the log); the app answers 503 naming only the kind of store.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

from engine.errors import StoreUnavailableError
from engine.questdb.conf import ServerAddress

__all__ = ["CircuitBreaker", "ExecClient"]


class CircuitBreaker:
    """Closed (calls go through), open (calls fail at once) for ``retry_after`` s, then half-open.

    In the half-open state one caller probes the server; success closes the breaker, failure
    opens it again. ``clock`` is injectable for tests.
    """

    def __init__(self, retry_after: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_after = retry_after
        self.clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None
        self._probing = False
        self.last_error = ""
        self.trips = 0

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None and (self._probing or self.clock() < self._open_until)

    def admit(self) -> None:
        """Let a call through, or raise :class:`StoreUnavailableError` while the server is known down."""
        with self._lock:
            if self._open_until is None:
                return
            wait = self._open_until - self.clock()
            if wait <= 0 and not self._probing:
                self._probing = True  # this call probes; the others keep failing fast
                return
        msg = f"known down ({self.last_error}); next try in {max(wait, 0):.1f} s"
        raise StoreUnavailableError(msg)

    def success(self) -> None:
        with self._lock:
            self._open_until, self._probing = None, False

    def failure(self, reason: str) -> None:
        with self._lock:
            self._open_until = self.clock() + self.retry_after
            self._probing = False
            self.last_error = reason
            self.trips += 1


class _Transport(Exception):
    """The server did not answer properly (trips the breaker)."""


def _close_all(conns: list[http.client.HTTPConnection], lock: threading.Lock) -> None:
    with lock:
        todo = list(conns)
        conns.clear()
    for c in todo:
        c.close()


class ExecClient:
    """Runs SQL through ``/exec`` on persistent per-thread connections.

    Parameters
    ----------
    address : ServerAddress
        The server (credentials included).
    connect_timeout, timeout : float
        Seconds to connect, and to wait for the first (and every further) byte of an answer.
    max_calls : int
        Calls that may wait on the server at once; one more fails at once.
    breaker : CircuitBreaker, optional
        Shared failure state (a new one with a 5 s ``retry_after`` by default).
    """

    def __init__(
        self,
        address: ServerAddress,
        *,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
        max_calls: int = 6,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.address = address
        self.scheme = "https" if address.tls else "http"
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.breaker = breaker or CircuitBreaker()
        self._slots = threading.BoundedSemaphore(max(1, int(max_calls)))
        self._headers = {"Accept": "application/json"}
        if auth := address.auth_header():
            self._headers["Authorization"] = auth
        self._local = threading.local()
        self._open: list[http.client.HTTPConnection] = []
        self._open_lock = threading.Lock()
        # a client dropped without close() still closes its sockets (no ResourceWarning, no leak)
        weakref.finalize(self, _close_all, self._open, self._open_lock)

    def close(self) -> None:
        """Close every thread's connection."""
        _close_all(self._open, self._open_lock)

    @property
    def where(self) -> str:
        return f"QuestDB at {self.address.describe()}"

    def _conn(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        cls = http.client.HTTPSConnection if self.address.tls else http.client.HTTPConnection
        conn = cls(self.address.host, self.address.port, timeout=self.connect_timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.timeout)  # from now on: the wait for each byte of the answer
        self._local.conn = conn
        with self._open_lock:
            self._open.append(conn)
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._open_lock:
                if conn in self._open:
                    self._open.remove(conn)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            msg = f"{self.where} is busy: every allowed call is waiting on it"
            raise StoreUnavailableError(msg)
        try:
            yield
        finally:
            self._slots.release()

    def _roundtrip(self, path: str) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                conn, reused = self._conn()
            except TimeoutError:
                raise _Transport(f"no connection within {self.connect_timeout:g} s") from None
            except OSError as exc:
                raise _Transport(f"cannot connect: {exc}") from None
            try:
                conn.request("GET", path, headers=self._headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except TimeoutError:
                self._drop()
                raise _Transport(f"no answer within {self.timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if reused and attempt == 0:  # a kept-alive connection the server had closed: once more
                    continue
                raise _Transport(f"connection failed: {type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def exec(self, sql: str) -> dict:
        """The decoded JSON answer of one statement.

        Raises
        ------
        StoreUnavailableError
            The breaker is open, every call slot is taken, the server does not answer properly,
            or it reports an error (its message quoted).
        """
        path = "/exec?count=false&query=" + quote(sql, safe="")
        with self._slot():
            self.breaker.admit()
            try:
                status, body = self._roundtrip(path)
                if status >= 500:
                    raise _Transport(f"HTTP {status}: {body[:200]!r}")
                try:
                    doc = json.loads(body)
                except ValueError:
                    raise _Transport(f"HTTP {status} with a body that is not JSON: {body[:200]!r}") from None
            except _Transport as exc:
                self.breaker.failure(str(exc))
                msg = f"{self.where} does not answer: {exc}"
                raise StoreUnavailableError(msg) from None
            except BaseException as exc:
                self.breaker.failure(f"{type(exc).__name__}: {exc}")
                raise
        self.breaker.success()
        if status != 200 or "error" in doc:
            msg = f"{self.where} failed: {doc.get('error', f'HTTP {status}')}"
            raise StoreUnavailableError(msg)
        return doc
