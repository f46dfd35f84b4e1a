"""The chart page: ``GET /`` and ``GET /chart`` (HTML), ``GET /static/{name}`` (its CSS and JavaScript).

The page is plain HTML, CSS and ES2020 modules shipped as package data in ``service/static/``
(no build step, nothing fetched from another origin). The files are read once, when the app is
built, and served from memory with a strong ``ETag`` and ``Cache-Control: no-cache``, so a
browser revalidates (a 304 on an unchanged file) and never runs a stale script after an upgrade.

The HTML carries the chart's configuration as a JSON island (``#datapair-config``) filled in
from :mod:`service.bars` and the settings, so the page and the API agree on the resolutions
and on the bar cap of ``resolution=auto`` without a copy of them in JavaScript.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources

import falcon

from service.bars import MAX_AUTO_BARS, RESOLUTIONS
from service.resources.chart import MAX_TICKS

__all__ = ["STATIC_FILES", "Asset", "PageResource", "StaticResource", "page_config"]

STATIC_FILES: dict[str, str] = {
    "chart.css": "text/css; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "book.js": "text/javascript; charset=utf-8",
    "data.js": "text/javascript; charset=utf-8",
    "draw.js": "text/javascript; charset=utf-8",
    "timefmt.js": "text/javascript; charset=utf-8",
}
"""The files ``/static/{name}`` serves, with their content types (nothing else is served)."""

PAGE_FILE = "chart.html"
CONFIG_MARK = "__DATAPAIR_CONFIG__"
EXCHANGE_TZ = "America/New_York"

# Everything from this origin, nothing inline but the JSON island (which is not executed).
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Asset:
    """One file served from memory."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        return cls(body, content_type, hashlib.blake2b(body, digest_size=12).hexdigest())

    def send(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer 200 with the body, or 304 when the browser holds this version."""
        resp.etag = self.etag
        resp.cache_control = ["no-cache"]
        resp.set_header("X-Content-Type-Options", "nosniff")
        tags = req.if_none_match or []
        if any(t == "*" or str(t) == self.etag for t in tags):
            resp.status = falcon.HTTP_304
            resp.content_type = None  # a 304 has no body, so no Content-Type
            return
        resp.content_type = self.content_type
        resp.data = self.body


def _read(name: str) -> bytes:
    return resources.files("service").joinpath("static", name).read_bytes()


def page_config(default_symbol: str = "NVDA") -> dict[str, object]:
    """What the page needs to know of the API: resolutions (ns), the auto bar cap, tick paging."""
    return {
        "resolutions": dict(RESOLUTIONS),
        "maxAutoBars": MAX_AUTO_BARS,
        "maxTicks": MAX_TICKS,
        "defaultSymbol": default_symbol,
        "exchangeTz": EXCHANGE_TZ,
    }


class PageResource:
    """``GET /`` and ``GET /chart``: the chart page (``?symbol=`` picks the symbol shown first)."""

    def __init__(self, default_symbol: str = "NVDA") -> None:
        html = _read(PAGE_FILE).decode()
        config = json.dumps(page_config(default_symbol)).replace("<", "\\u003c")
        self.asset = Asset.of(html.replace(CONFIG_MARK, config).encode(), falcon.MEDIA_HTML)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_header("Content-Security-Policy", _CSP)
        self.asset.send(req, resp)

    on_head = on_get


class StaticResource:
    """``GET /static/{name}``: one of :data:`STATIC_FILES`; 404 for any other name."""

    def __init__(self) -> None:
        self.assets = {name: Asset.of(_read(name), ctype) for name, ctype in STATIC_FILES.items()}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        asset = self.assets.get(name)
        if asset is None:
            msg = f"no static file {name!r}; the files are {', '.join(sorted(self.assets))}"
            raise falcon.HTTPNotFound(title="Not found", description=msg)
        asset.send(req, resp)

    on_head = on_get
