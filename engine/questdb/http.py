"""QuestDB's REST ``/exec`` endpoint, with retry and exponential backoff.

Transient failures (connection refused or reset, timeouts, a truncated body, HTTP 5xx) are
retried until :attr:`Backoff.timeout` runs out, then reported as
:class:`~engine.errors.StoreUnavailableError`. A statement the server rejects (HTTP 4xx, with
its JSON ``error`` and ``position``) is never retried: it is raised as
:class:`~engine.errors.QueryError` carrying the server's own message.

The same :func:`retry` loop drives the ILP and QWP senders' reconnects
(:mod:`engine.questdb.protocols`).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.errors import ConfigError, QueryError, StoreUnavailableError
from engine.questdb.conf import ServerAddress

__all__ = ["Backoff", "ExecResult", "QuestDBHttp", "TransientError", "retry"]

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying (the server may answer next time)."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial``, times ``factor`` each retry, at most ``max_delay``.

    Retrying stops once the next sleep would end more than ``timeout`` seconds after the first try.
    """

    initial: float = 0.05
    factor: float = 2.0
    max_delay: float = 2.0
    timeout: float = 10.0

    def delays(self) -> Iterator[float]:
        """The sleeps between tries, forever (the caller enforces ``timeout``)."""
        d = self.initial
        while True:
            yield min(d, self.max_delay)
            d *= self.factor


def retry(
    fn: Callable[[], T],
    *,
    backoff: Backoff,
    is_transient: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it returns, retrying transient errors with ``backoff``.

    A non-transient error is raised at once; the last transient one is raised when the time
    budget is spent. ``on_retry(exc, delay)`` runs before each sleep (e.g. to reconnect).
    """
    start = clock()
    delays = backoff.delays()
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = next(delays)
            if clock() - start + delay > backoff.timeout:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)


@dataclass
class ExecResult:
    """One ``/exec`` answer: column (name, type) pairs and rows; ``ddl`` for statements."""

    columns: list[tuple[str, str]] = field(default_factory=list)
    dataset: list[list[Any]] = field(default_factory=list)
    count: int = 0
    ddl: str | None = None

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts keyed by column name."""
        names = [c[0] for c in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.dataset]


_TRANSIENT_STATUS = {500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524, 529, 599}


class QuestDBHttp:
    """A small client of ``/exec``.

    Parameters
    ----------
    address : ServerAddress
        The server (base URL and credentials).
    backoff : Backoff
        Retry policy for transient failures.
    timeout : float
        Seconds per HTTP request.
    sleep : callable
        Injected for tests.
    """

    def __init__(
        self,
        address: ServerAddress,
        *,
        backoff: Backoff | None = None,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.address = address
        self.backoff = backoff or Backoff()
        self.timeout = timeout
        self._sleep = sleep
        self.attempts = 0
        """HTTP requests made (tries, retries included): for tests and diagnostics."""

    def _request(self, sql: str, limit: str | None) -> ExecResult:
        query = {"query": sql}
        if limit is not None:
            query["limit"] = limit
        url = f"{self.address.http_url}/exec?{urllib.parse.urlencode(query)}"
        req = urllib.request.Request(url, method="GET")
        auth = self.address.auth_header()
        if auth:
            req.add_header("Authorization", auth)
        self.attempts += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            if status in _TRANSIENT_STATUS:
                raise TransientError(f"HTTP {status} {raw[:200]!r}") from None
            if status in (401, 403):
                msg = f"QuestDB at {self.address.describe()} refused the credentials (HTTP {status})"
                raise ConfigError(msg) from None
            raise QueryError(self._server_message(sql, status, raw)) from None
        except (TimeoutError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientError(f"{type(exc).__name__}: {reason}") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise TransientError(f"unreadable answer ({len(body)} bytes): {body[:120]!r}") from None
        if "error" in data:
            raise QueryError(self._server_message(sql, 200, body))
        cols = [(c.get("name", ""), c.get("type", "")) for c in data.get("columns", [])]
        return ExecResult(
            cols, data.get("dataset", []), int(data.get("count", 0)), data.get("ddl") or data.get("dml")
        )

    @staticmethod
    def _server_message(sql: str, status: int, raw: bytes) -> str:
        short = sql if len(sql) < 300 else sql[:300] + "..."
        try:
            data = json.loads(raw)
            err = data.get("error", raw.decode("utf-8", "replace"))
            pos = data.get("position")
        except ValueError:
            err, pos = raw.decode("utf-8", "replace")[:500], None
        where = f" at position {pos}" if pos is not None else ""
        return f"QuestDB rejected the statement (HTTP {status}): {err}{where}; statement: {short}"

    def exec(self, sql: str, *, limit: str | None = None) -> ExecResult:
        """Run one statement, retrying transient failures.

        Raises
        ------
        QueryError
            The server rejected the statement (its message included).
        StoreUnavailableError
            No answer within the retry budget.
        """
        try:
            return retry(
                lambda: self._request(sql, limit),
                backoff=self.backoff,
                is_transient=lambda e: isinstance(e, TransientError),
                sleep=self._sleep,
            )
        except TransientError as exc:
            msg = (
                f"QuestDB at {self.address.describe()} did not answer within "
                f"{self.backoff.timeout:g} s ({self.attempts} tries): {exc}"
            )
            raise StoreUnavailableError(msg) from None

    def records(self, sql: str, *, page: int = 100_000) -> list[dict[str, Any]]:
        """All rows of a query as dicts, fetched ``page`` rows per request.

        ``/exec``'s ``limit=X,Y`` counts rows from 1 and includes both ends (``limit=3,6`` is the
        third to the sixth row, checked on QuestDB 9.4), unlike SQL's ``LIMIT lo, hi``.
        """
        out: list[dict[str, Any]] = []
        lo = 0
        while True:
            res = self.exec(sql, limit=f"{lo + 1},{lo + page}")
            out.extend(res.records())
            if len(res.dataset) < page:
                return out
            lo += page

    def ping(self) -> None:
        """Check that the server answers SQL (raises as :meth:`exec` does)."""
        self.exec("SELECT 1 AS ok")
