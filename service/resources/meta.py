"""``GET /health`` (is the store reachable) and ``GET /openapi.json`` (every route described)."""

from __future__ import annotations

import logging
import time

import falcon

from engine.errors import StoreUnavailableError
from service.stores.base import Store

__all__ = ["HealthResource", "OpenAPIResource"]

log = logging.getLogger("datapair.service")


class HealthResource:
    """200 with the store's counts when it answers, 503 when it does not.

    The answer names the kind of store, never where it lives (address, table, lake path); why it
    is down goes to the log.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        t0 = time.perf_counter()
        store: dict[str, object] = {"kind": self.store.kind}
        try:
            details = self.store.ping()
        except StoreUnavailableError as exc:
            log.warning("health: the %s store is unavailable: %s", self.store.kind, exc)
            resp.status = falcon.HTTP_503
            resp.media = {"status": "unavailable", "store": store}
            return
        store.update(details)
        store["ping_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        resp.media = {"status": "ok", "store": store}

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The same status as GET, without a body (load balancers' health checks)."""
        self.on_get(req, resp)


class OpenAPIResource:
    """The OpenAPI 3.1 document of the service."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.spec
