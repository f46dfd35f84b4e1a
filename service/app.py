"""The Falcon application: routes, error mapping, and configuration from the environment.

``create_app(store, settings)`` builds the app from injected parts (tests pass a temporary lake
or a fake QuestDB); ``get_app()`` reads the environment (for ``waitress-serve --call
service.app:get_app``):

=========================  =================================  =====================================
variable                   default                            meaning
=========================  =================================  =====================================
``DATAPAIR_STORE``         ``auto``                           ``lake``, ``questdb`` or ``auto``
                                                              (QuestDB when ``QUESTDB_URL`` is set)
``DATAPAIR_LAKE``          ``./data/parquet``                 the lake directory
``DATAPAIR_LAKE_CACHE_MB`` ``256``                            decoded row groups kept (0: off)
``QUESTDB_URL``            (unset)                            e.g. ``http://127.0.0.1:9000``
``QUESTDB_TABLE``          ``mbo_ticks``                      the QuestDB table
``DATAPAIR_QDB_CONNECT_TIMEOUT`` ``2``                        s to connect to QuestDB
``DATAPAIR_QDB_TIMEOUT``   ``5``                              s to wait for each byte of an answer
``DATAPAIR_QDB_RETRY_AFTER`` ``5``                            s of fast 503s after QuestDB failed
``DATAPAIR_QDB_MAX_CALLS`` threads - 2                        calls that may wait on QuestDB at once
``DATAPAIR_MAX_ROWS``      ``5000000``                        row cap of one ``/data`` answer (413)
``DATAPAIR_DEFAULT_SYMBOL`` ``NVDA``                          symbol when a request names none
=========================  =================================  =====================================

Errors: every :class:`engine.errors.DatapairError` maps to one status (400 bad request, 404
unknown symbol, 406 not acceptable, 413 too many rows, 503 store unavailable, 500 otherwise),
always as JSON ``{"title", "description"}``. A 503 names the kind of store that is down, never
where it lives (address, table, lake path): those go to the log.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, fields

import falcon

from engine import __version__
from engine.errors import ConfigError, DatapairError, QueryError, StoreUnavailableError
from service.errors import BodyTooLargeError, NotAcceptableError, TooManyRowsError, UnknownSymbolError
from service.openapi import build_spec
from service.resources import (
    BarsResource,
    BookResource,
    DataResource,
    HealthResource,
    OpenAPIResource,
    PageResource,
    RangeResource,
    StaticResource,
    SymbolsResource,
    TicksResource,
    ToDatetimeResource,
    ToTimestampResource,
)
from service.serving import ServeLimits, StreamSlots, TooBusyError
from service.stores.base import Store, check_symbol
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore

__all__ = ["ROUTES", "AppParts", "Settings", "create_app", "get_app", "store_from_env"]

log = logging.getLogger("datapair.service")

DEFAULT_LAKE = "./data/parquet"


@dataclass
class Settings:
    """Service limits and defaults (each has an environment variable, see the module doc)."""

    max_rows: int = 5_000_000
    default_symbol: str = "NVDA"
    batch_rows: int = 16_384
    buffer_rows: int = 32_768
    max_body_bytes: int = 65_536
    max_bars: int = 100_000
    stream_slots: int = ServeLimits().slots
    """Large answers streaming at once (``DATAPAIR_STREAM_SLOTS``; ``datapair-serve`` sizes it from --threads)."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        s = cls()
        raw = env.get("DATAPAIR_MAX_ROWS")
        if raw:
            try:
                s.max_rows = int(raw.replace("_", ""))
            except ValueError:
                msg = f"DATAPAIR_MAX_ROWS={raw!r} is not an integer"
                raise ConfigError(msg) from None
        if env.get("DATAPAIR_DEFAULT_SYMBOL"):
            s.default_symbol = env["DATAPAIR_DEFAULT_SYMBOL"]
        raw = env.get("DATAPAIR_STREAM_SLOTS")
        if raw:
            try:
                s.stream_slots = int(raw)
            except ValueError:
                msg = f"DATAPAIR_STREAM_SLOTS={raw!r} is not an integer"
                raise ConfigError(msg) from None
        s.check()
        return s

    def check(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and v < 1:
                msg = f"setting {f.name} must be at least 1, got {v}"
                raise ConfigError(msg)
        try:
            check_symbol(self.default_symbol)
        except QueryError as exc:
            raise ConfigError(f"default symbol: {exc}") from None


@dataclass
class AppParts:
    """What the resources are built from: the store, the settings, the OpenAPI document, the stream slots."""

    store: Store
    settings: Settings
    spec: dict
    slots: StreamSlots


ROUTES: dict[str, Callable[[AppParts], object]] = {
    "/data": lambda p: DataResource(
        p.store,
        p.settings.max_rows,
        p.settings.default_symbol,
        p.settings.batch_rows,
        p.settings.max_body_bytes,
        p.settings.buffer_rows,
        p.slots,
    ),
    "/time/to_timestamp": lambda p: ToTimestampResource(p.settings.max_body_bytes),
    "/time/to_datetime": lambda p: ToDatetimeResource(p.settings.max_body_bytes),
    "/api/mbo/bars": lambda p: BarsResource(p.store, p.settings.default_symbol, p.settings.max_bars),
    "/api/mbo/ticks": lambda p: TicksResource(p.store, p.settings.default_symbol),
    "/api/mbo/symbols": lambda p: SymbolsResource(p.store),
    "/api/mbo/range": lambda p: RangeResource(p.store, p.settings.default_symbol),
    "/api/mbo/book": lambda p: BookResource(p.store, p.settings.default_symbol),
    "/health": lambda p: HealthResource(p.store),
    "/openapi.json": lambda p: OpenAPIResource(p.spec),
    "/": lambda p: PageResource(p.settings.default_symbol),
    "/chart": lambda p: PageResource(p.settings.default_symbol),
    "/static/{name}": lambda p: StaticResource(),
}
"""Every route and how its resource is built."""

_STATUS: list[tuple[type[DatapairError], str, str]] = [
    (UnknownSymbolError, falcon.HTTP_404, "Unknown symbol"),
    (NotAcceptableError, falcon.HTTP_406, "Not acceptable"),
    (TooManyRowsError, falcon.HTTP_413, "Too many rows"),
    (BodyTooLargeError, falcon.HTTP_413, "Request body too large"),
    (QueryError, falcon.HTTP_400, "Bad request"),
    (TooBusyError, falcon.HTTP_503, "Too busy"),
    (StoreUnavailableError, falcon.HTTP_503, "Store unavailable"),
    (ConfigError, falcon.HTTP_500, "Server misconfigured"),
    (DatapairError, falcon.HTTP_500, "Server error"),
]


_STORE_NAMES = {"questdb": "QuestDB", "lake": "lake"}


def _error_handler(store: Store) -> Callable[[falcon.Request, falcon.Response, Exception, dict], None]:
    unavailable = f"the {_STORE_NAMES.get(store.kind, store.kind)} store is unavailable; try again later"

    def handle(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
        for cls, status, title in _STATUS:
            if isinstance(ex, cls):
                if status == falcon.HTTP_503:
                    log.warning("%s %s: %s", req.method, req.path, ex)  # the details stay in the log
                    raise falcon.HTTPServiceUnavailable(title=title, description=unavailable, retry_after=5)
                if status.startswith("5"):
                    log.error("%s %s: %s", req.method, req.path, ex)
                raise falcon.HTTPError(status, title=title, description=str(ex))
        raise ex  # pragma: no cover - every DatapairError matches the last row

    return handle


def _serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Every error body is JSON ``{"title", "description"}`` (Falcon's own 404/405 included)."""
    description = exc.description
    if not description:
        if exc.status_code == 404:
            description = f"no route {req.path}; the routes are described at /openapi.json"
        elif exc.status_code == 405:
            description = f"{req.method} is not allowed on {req.path}; see /openapi.json"
        else:
            description = str(exc.title)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({"title": exc.title, "description": description})


def create_app(
    store: Store, settings: Settings | None = None, slots: StreamSlots | None = None
) -> falcon.App:
    """The WSGI app over ``store``.

    Parameters
    ----------
    store : Store
        Where rows come from (:class:`~service.stores.lake.LakeStore` or
        :class:`~service.stores.questdb.QuestDBStore`).
    settings : Settings, optional
        Limits and defaults (:class:`Settings` defaults when None).
    slots : StreamSlots, optional
        The slots of large streamed answers (default: ``settings.stream_slots`` of them).
    """
    settings = settings or Settings()
    settings.check()
    app = falcon.App()
    app.req_options.auto_parse_qs_csv = False
    app.resp_options.secure_cookies_by_default = False
    app.add_error_handler(DatapairError, _error_handler(store))
    app.set_error_serializer(_serialize_error)
    spec = build_spec(__version__)
    parts = AppParts(store, settings, spec, slots or StreamSlots(settings.stream_slots))
    for path, make in ROUTES.items():
        app.add_route(path, make(parts))
    return app


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        msg = f"{name}={raw!r}: expected a positive number of seconds"
        raise ConfigError(msg)
    return value


def store_from_env(env: dict[str, str] | None = None, kind: str | None = None, threads: int = 8) -> Store:
    """The store the environment selects (see the module doc); ``kind`` overrides ``DATAPAIR_STORE``.

    ``threads`` (the server's) bounds the QuestDB calls that may wait at once to ``threads - 2``,
    so two threads always stay free for routes that need no store.
    """
    env = dict(os.environ if env is None else env)
    kind = (kind or env.get("DATAPAIR_STORE") or "auto").lower()
    url = env.get("QUESTDB_URL")
    if kind == "auto":
        kind = "questdb" if url else "lake"
    if kind == "lake":
        raw = env.get("DATAPAIR_LAKE_CACHE_MB") or "256"
        try:
            cache_mb = int(raw)
        except ValueError:
            msg = f"DATAPAIR_LAKE_CACHE_MB={raw!r} is not an integer (MiB of decoded row groups kept; 0 turns the cache off)"
            raise ConfigError(msg) from None
        return LakeStore(env.get("DATAPAIR_LAKE") or DEFAULT_LAKE, cache_bytes=max(cache_mb, 0) * 2**20)
    if kind == "questdb":
        if not url:
            msg = "the QuestDB store needs QUESTDB_URL (e.g. http://127.0.0.1:9000) or --questdb-url"
            raise ConfigError(msg)
        raw = env.get("DATAPAIR_QDB_MAX_CALLS") or str(max(1, threads - 2))
        if not raw.isdigit() or int(raw) < 1:
            msg = f"DATAPAIR_QDB_MAX_CALLS={raw!r}: expected a positive integer"
            raise ConfigError(msg)
        return QuestDBStore(
            url, env.get("QUESTDB_TABLE") or "mbo_ticks",
            connect_timeout=_seconds(env, "DATAPAIR_QDB_CONNECT_TIMEOUT", 2.0),
            timeout=_seconds(env, "DATAPAIR_QDB_TIMEOUT", 5.0),
            retry_after=_seconds(env, "DATAPAIR_QDB_RETRY_AFTER", 5.0),
            max_calls=int(raw),
        )  # fmt: skip
    msg = f"DATAPAIR_STORE / --store must be lake, questdb or auto, got {kind!r}"
    raise ConfigError(msg)


def get_app() -> falcon.App:
    """The app configured from the environment (``waitress-serve --call service.app:get_app``)."""
    return create_app(store_from_env(), Settings.from_env())
