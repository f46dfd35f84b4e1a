"""Serving under load: slow readers must not take the service down.

A waitress worker thread writing a streamed answer waits while the client's buffer is above the
high-watermark, so a client that asks for a whole day and stops reading pins that thread. Three
bounds keep the service answering:

- **Bytes per client**: at most ``outbuf_high_watermark`` (default 4 MiB) buffered for one
  connection before its thread waits.
- **Time per client**: :class:`StallReaper` closes a connection whose pending answer has made
  no progress for ``stall_seconds`` (default 30), which wakes its thread (``ClientDisconnected``).
- **Concurrent large answers**: :class:`StreamSlots` admits at most ``slots`` streamed answers
  at once (default: the threads minus a reserve of a quarter, at least 2); one more gets 503 with
  ``Retry-After`` at once. The reserve keeps small requests and ``/health`` answering.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import StoreUnavailableError

__all__ = ["ServeLimits", "StallReaper", "StreamSlots", "TooBusyError", "create_server", "stop_server"]

log = logging.getLogger("datapair.service")


class TooBusyError(StoreUnavailableError):
    """Every slot for large answers is taken (HTTP 503 with Retry-After)."""


@dataclass(frozen=True)
class ServeLimits:
    """How the server bounds slow clients (see the module doc)."""

    threads: int = 8
    stream_slots: int | None = None
    stall_seconds: float = 30.0
    outbuf_bytes: int = 4 * 2**20

    @property
    def slots(self) -> int:
        if self.stream_slots is not None:
            return max(1, self.stream_slots)
        reserve = max(2, self.threads // 4)
        return max(1, self.threads - reserve)


class StreamSlots:
    """At most ``n`` large answers stream at once; :meth:`wrap` holds a slot for a body's lifetime."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._sem = threading.BoundedSemaphore(n)
        self._lock = threading.Lock()
        self.in_use = 0

    def wrap(self, body: Iterable[bytes]) -> Iterator[bytes]:
        """Take a slot now (or raise :class:`TooBusyError`); the body gives it back when it ends or is closed.

        The WSGI server closes the body whatever happens (client gone, error), even when it was
        never iterated, so the slot always comes back.
        """
        if not self._sem.acquire(blocking=False):
            msg = (
                f"all {self.n} slots for large answers are busy; retry in a few seconds, or page with `limit`"
            )
            raise TooBusyError(msg)
        with self._lock:
            self.in_use += 1
        return _Held(iter(body), self._release)

    def _release(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._sem.release()


class _Held:
    """An iterator that calls ``release`` once: when exhausted, failing, or closed."""

    def __init__(self, it: Iterator[bytes], release: Any) -> None:
        self._it = it
        self._release: Any = release

    def __iter__(self) -> _Held:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._it)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        release, self._release = self._release, None
        try:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()
        finally:
            if release is not None:
                release()


class StallReaper:
    """Closes connections whose pending answer has not moved for ``seconds`` (run by waitress' loop)."""

    def __init__(self, server: Any, seconds: float, every: float = 1.0) -> None:
        self.server = server
        self.seconds = seconds
        self.every = every
        self.closed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-reaper", daemon=True)

    def start(self) -> StallReaper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            cutoff = time.time() - self.seconds
            for ch in list(getattr(self.server, "active_channels", {}).values()):
                if ch.total_outbufs_len > 0 and ch.last_activity < cutoff and ch.connected:
                    self.closed += 1
                    log.warning("closing a connection whose client read nothing for %.0f s", self.seconds)
                    try:
                        self.server.trigger.pull_trigger(_closer(ch))  # in waitress' own loop thread
                    except OSError:  # the trigger is closed: the server is stopping, and closes it anyway
                        return


def _closer(ch: Any) -> Any:
    def close() -> None:
        if ch.connected:
            ch.handle_close()

    return close


def create_server(app: Any, host: str, port: int, limits: ServeLimits, **kw: Any) -> Any:
    """A waitress server with the limits above (not yet running) and its reaper started."""
    import waitress

    server = waitress.create_server(
        app, host=host, port=port, threads=limits.threads, outbuf_high_watermark=limits.outbuf_bytes,
        outbuf_overflow=2 * limits.outbuf_bytes, **kw,
    )  # fmt: skip
    server.reaper = StallReaper(server, limits.stall_seconds).start()
    return server


def stop_server(server: Any, thread: threading.Thread | None = None, timeout: float = 30.0) -> None:
    """Stop a server running in ``thread``: close its sockets in its own loop, then its workers."""
    reaper = getattr(server, "reaper", None)
    if reaper is not None:
        reaper.stop()

    def close_all() -> None:
        for obj in list(server._map.values()):
            with contextlib.suppress(OSError):
                obj.close()

    try:
        server.trigger.pull_trigger(close_all)  # the loop ends when its socket map is empty
    except OSError:
        # The loop closed its trigger already (seen once, in a CI run). Closing sockets from this
        # thread would race the loop's select (EBADF), so give the loop a new trigger: it polls
        # the new one within its loop timeout and closes everything itself.
        from waitress.trigger import trigger

        server.trigger = trigger(server._map)
        server.trigger.pull_trigger(close_all)
    if thread is not None:
        thread.join(timeout)
        if not thread.is_alive():
            close_all()  # what a loop that had ended already left open
    server.task_dispatcher.shutdown()
