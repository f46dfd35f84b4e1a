"""The chart page (``GET /``) in a real browser: Debian's Chromium driven by Playwright.

The service runs on waitress in a thread over a generated lake (and once over the real QuestDB);
each browser test opens the page in a fresh context and reads ``window.datapairChart``, the
page's state for tests. Waits are Playwright conditions with generous deadlines, never sleeps.
Screenshots go to each test's ``tmp_path``.

The browser tests (marker ``browser``) skip, with the reason, when the ``playwright`` package or
the system ``chromium`` is missing (``.ci/run`` installs it with apt). The book panel test needs
``GET /api/mbo/book`` and skips while ``/openapi.json`` does not list it; a stub of that route
checks the panel meanwhile.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import falcon
import pytest
from falcon.testing import TestClient

from service import create_app
from service.openapi import build_spec
from service.resources.page import STATIC_FILES
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore
from tests.support.browser import CHROMIUM_ARGS, find_chromium
from tests.support.qdb import load_arrow
from tests.support.service import lake_table, make_lake, serve

NS = 1_000_000_000
SYMBOLS = ("NVDA", "AAPL", "MSFT")
ORDER = ("1s", "10s", "1m", "5m", "15m", "1h", "1d")
NEW_YORK = ZoneInfo("America/New_York")
WAIT_MS = 20_000
IDLE = "() => window.datapairChart && window.datapairChart.ready && window.datapairChart.pending === 0"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake_dir, _ = make_lake(tmp_path_factory.mktemp("chart"), 60_000, SYMBOLS, seed=7)
    return lake_dir


@pytest.fixture(scope="module")
def base_url(lake: Path) -> Iterator[str]:
    with serve(create_app(LakeStore(lake))) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
    )
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no system Chromium (apt-get install chromium, or set DATAPAIR_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        try:
            yield b
        finally:
            b.close()


class Page:
    """A Playwright page with the console errors it logged and helpers over ``window.datapairChart``."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.context = page.context
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("() => JSON.parse(JSON.stringify(window.datapairChart))")

    def until(self, predicate: str, arg: object = None) -> None:
        self.page.wait_for_function(predicate, arg=arg, timeout=WAIT_MS)

    def close(self) -> None:
        """Close the browser context (and its keep-alive connections, so a test server stops at once)."""
        self.context.close()

    def idle(self) -> dict[str, Any]:
        self.until(IDLE)
        return self.state()

    def hover(self, x: float, y: float) -> dict[str, Any]:
        self.page.mouse.move(x, y)
        self.until(
            "(x) => { const s = window.datapairChart; return s.crosshair && Math.abs(s.crosshair.x + s.plot.x - x) < 1; }",
            x,
        )
        return self.state()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Page]]:
    contexts = []

    def open_(url: str, *, bypass_csp: bool = True, wait: bool = True) -> Page:
        ctx = browser.new_context(viewport={"width": 1280, "height": 720}, bypass_csp=bypass_csp)
        contexts.append(ctx)
        page = Page(ctx.new_page())
        page.page.goto(url)
        if wait:
            page.idle()
        return page

    yield open_
    for ctx in contexts:
        ctx.close()


def get_json(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=30) as resp:
        return json.loads(resp.read())


def has_book_route(base: str) -> bool:
    return "/api/mbo/book" in get_json(base, "/openapi.json")["paths"]


def wheel_until(
    page: Page, x: float, y: float, predicate: Callable[[dict[str, Any]], bool], steps: int = 14
) -> dict[str, Any]:
    page.page.mouse.move(x, y)
    st = page.state()
    for _ in range(steps):
        if predicate(st):
            return st
        before = st["view"]
        page.page.mouse.wheel(0, -700)
        page.until(
            "(v) => window.datapairChart.view.start !== v.start || window.datapairChart.view.end !== v.end",
            before,
        )
        st = page.idle()
    assert predicate(st), f"not reached after {steps} wheel steps: {st['view']} {st['resolution']}"
    return st


def zone_text(ns: int, zone: ZoneInfo | None) -> str:
    dt = datetime.fromtimestamp(ns // NS, UTC)
    if zone is not None:
        dt = dt.astimezone(zone)
    return f"{dt:%Y-%m-%d %H:%M:%S}.{ns % NS:09d} {'UTC' if zone is None else dt.tzname()}"


# -- the page's HTTP side (no browser) -------------------------------------------------------------


def test_page_and_static_files_are_served(lake: Path) -> None:
    client = TestClient(create_app(LakeStore(lake)))
    for path in ("/", "/chart", "/chart?symbol=AAPL"):
        r = client.simulate_get(path.split("?")[0], query_string=path.partition("?")[2])
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert '"maxAutoBars": 1500' in r.text and "__DATAPAIR_CONFIG__" not in r.text
        assert "http://" not in r.text and "https://" not in r.text  # nothing from another origin
        again = client.simulate_get("/", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content
    for name, ctype in STATIC_FILES.items():
        r = client.simulate_get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == ctype and r.content
        assert r.headers["cache-control"] == "no-cache" and r.headers["etag"]
        assert b"http://" not in r.content and b"https://" not in r.content
    for bad in ("/static/nope.js", "/static/chart.html", "/static/..%2Fapp.py", "/static/../app.py"):
        r = client.simulate_get(bad)
        assert r.status_code == 404 and r.json["title"] and r.json["description"]
        assert "chart.js" in r.json["description"] or "no route" in r.json["description"]
    paths = client.simulate_get("/openapi.json").json["paths"]
    assert {"/", "/chart", "/static/{name}"} <= set(paths)


# -- the page in Chromium --------------------------------------------------------------------------


@pytest.mark.browser
def test_first_chart_draws_every_bar_of_the_day(
    base_url: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    page = open_page(base_url + "/")
    st = page.state()
    api = get_json(base_url, "/api/mbo/bars?symbol=NVDA&resolution=auto")
    assert st["symbol"] == "NVDA" and st["symbols"] == sorted(SYMBOLS)
    assert st["resolution"] == api["resolution"]
    assert st["candles"] == api["count"] > 100
    assert (st["view"]["start"], st["view"]["end"]) == (str(api["start"]), str(api["end"]))
    assert "/api/mbo/bars?symbol=NVDA&resolution=auto" in st["requests"]
    assert st["error"] is None and st["ticksDrawn"] == 0
    assert st["perf"]["firstChart"] > 0
    assert page.page.locator("#symbol option").count() == len(SYMBOLS)
    page.page.screenshot(path=str(tmp_path / "chart-day.png"))
    assert page.errors == []


@pytest.mark.browser
def test_symbol_from_the_url_and_the_picker(base_url: str, open_page: Callable[..., Page]) -> None:
    page = open_page(base_url + "/chart?symbol=AAPL")
    assert page.state()["symbol"] == "AAPL"
    page.page.select_option("#symbol", "MSFT")
    page.until(
        "() => window.datapairChart.symbol === 'MSFT' && window.datapairChart.ready && window.datapairChart.pending === 0"
    )
    st = page.state()
    assert st["candles"] == get_json(base_url, "/api/mbo/bars?symbol=MSFT&resolution=auto")["count"]
    assert page.errors == []


@pytest.mark.browser
def test_the_page_runs_under_its_content_security_policy(
    base_url: str, open_page: Callable[..., Page]
) -> None:
    page = open_page(base_url + "/", bypass_csp=False, wait=False)
    page.page.wait_for_selector("body[data-ready='true'][data-pending='0']", timeout=WAIT_MS)
    assert "candles" in page.page.inner_text("#status")
    assert page.errors == []  # a blocked script or style would log a CSP violation


@pytest.mark.browser
def test_wheel_zoom_asks_finer_bars_then_ticks(
    base_url: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    page = open_page(base_url + "/")
    first = page.state()
    plot = first["plot"]
    x, y = plot["x"] + plot["w"] * 0.55, plot["y"] + plot["h"] * 0.4
    st = wheel_until(page, x, y, lambda s: s["ticksMode"] and s["ticksDrawn"] > 0)
    bars_urls = [u for u in st["requests"] if u.startswith("/api/mbo/bars?") and "start=" in u]
    assert bars_urls, "zooming asked for no bars of the view"
    assert all(u.endswith("&resolution=auto") for u in bars_urls)
    assert ORDER.index(st["resolution"]) < ORDER.index(first["resolution"])
    tick_urls = [u for u in st["requests"] if u.startswith("/api/mbo/ticks?")]
    assert tick_urls and "offset=0" in tick_urls[0]
    # what is drawn is exactly what the API has in the view
    view = st["view"]
    ticks = get_json(
        base_url, f"/api/mbo/ticks?symbol=NVDA&start={view['start']}&end={view['end']}&limit=50000"
    )
    assert st["ticksDrawn"] == sum(t["price"] is not None for t in ticks["ticks"])
    bars = get_json(
        base_url, f"/api/mbo/bars?symbol=NVDA&start={view['start']}&end={view['end']}&resolution=auto"
    )
    assert bars["resolution"] == st["resolution"] and abs(st["candles"] - bars["count"]) <= 2
    steps = st["perf"]["steps"]
    assert steps and all(s["settled"] >= s["input"] for s in steps)
    page.page.screenshot(path=str(tmp_path / "chart-ticks.png"))
    assert page.errors == []


@pytest.mark.browser
def test_drag_pans_and_double_click_resets(
    base_url: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    page = open_page(base_url + "/")
    home = page.state()
    plot = home["plot"]
    cx, cy = plot["x"] + plot["w"] / 2, plot["y"] + plot["h"] / 2
    zoomed = wheel_until(page, cx, cy, lambda s: s["resolution"] != home["resolution"])
    span = int(zoomed["view"]["end"]) - int(zoomed["view"]["start"])
    n_requests = len(zoomed["requests"])
    mouse = page.page.mouse
    mouse.move(cx, cy)
    mouse.down()
    mouse.move(cx - 150, cy, steps=5)
    mouse.move(cx - 300, cy, steps=5)
    mouse.up()
    panned = page.idle()
    shift = int(panned["view"]["start"]) - int(zoomed["view"]["start"])
    assert int(panned["view"]["end"]) - int(panned["view"]["start"]) == pytest.approx(span, rel=1e-9)
    assert shift == pytest.approx(span * 300 / plot["w"], rel=0.02)  # dragged left: later times
    new = panned["requests"][n_requests:]
    assert any(u.startswith("/api/mbo/bars?") for u in new), new
    page.page.screenshot(path=str(tmp_path / "chart-panned.png"))
    n_requests = len(panned["requests"])
    mouse.dblclick(cx, cy)
    page.until(
        "(v) => window.datapairChart.view.start === v.start && window.datapairChart.view.end === v.end",
        home["view"],
    )
    reset = page.idle()
    assert reset["candles"] == home["candles"] and reset["resolution"] == home["resolution"]
    assert not [u for u in reset["requests"][n_requests:] if "/bars" in u]  # the day's bars were kept
    assert page.errors == []


@pytest.mark.browser
def test_crosshair_shows_the_bar_under_the_cursor(base_url: str, open_page: Callable[..., Page]) -> None:
    page = open_page(base_url + "/")
    st = page.state()
    api = get_json(base_url, "/api/mbo/bars?symbol=NVDA&resolution=auto")
    bar = max(api["bars"], key=lambda b: b["volume"])
    start, end, plot = int(st["view"]["start"]), int(st["view"]["end"]), st["plot"]
    x = plot["x"] + (bar["ts"] + api["step_ns"] / 2 - start) / (end - start) * plot["w"]
    ch = page.hover(x, plot["y"] + plot["h"] / 3)["crosshair"]
    at = int(ch["at"])
    assert bar["ts"] <= at < bar["ts"] + api["step_ns"]
    got = ch["bar"]
    assert int(got["ts"]) == bar["ts"]
    assert {k: got[k] for k in ("open", "high", "low", "close", "volume", "trades")} == {
        k: bar[k] for k in ("open", "high", "low", "close", "volume", "trades")
    }
    assert ch["utc"] == zone_text(at, None)
    assert ch["exchange"] == zone_text(at, NEW_YORK)
    readout = page.page.inner_text("#readout")
    assert ch["utc"] in readout and ch["exchange"] in readout
    assert f"trades {bar['trades']}" in readout and f"H {bar['high']:g}" in readout
    page.page.mouse.move(1, 1)  # off the chart: the crosshair goes
    page.until("() => window.datapairChart.crosshair === null")
    assert page.errors == []


def _hover_for_book(page: Page) -> dict[str, Any]:
    st = page.state()
    plot = st["plot"]
    page.hover(plot["x"] + plot["w"] * 0.6, plot["y"] + plot["h"] / 2)
    page.until(
        "() => window.datapairChart.book && window.datapairChart.crosshair && window.datapairChart.book.at === window.datapairChart.crosshair.at"
    )
    return page.idle()


@pytest.mark.browser
def test_book_panel_matches_the_book_route(
    base_url: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    if not has_book_route(base_url):
        pytest.skip("needs /api/mbo/book")
    page = open_page(base_url + "/")
    st = _hover_for_book(page)
    at = st["crosshair"]["at"]
    want = get_json(base_url, f"/api/mbo/book?symbol=NVDA&at={at}&depth=10")
    got = st["book"]
    assert str(got["at"]) == str(want["at"]) == at
    assert str(got["ts_recv"]) == str(want["ts_recv"])
    for side in ("bids", "asks"):
        key = [(lv["price_raw"], lv["size"], lv["count"]) for lv in want[side]]
        assert [(int(lv["price_raw"]), lv["size"], lv["count"]) for lv in got[side]] == key
        assert page.page.locator(f"#book-{side} tr").count() == len(want[side]) <= 10
    page.page.screenshot(path=str(tmp_path / "chart-book.png"))
    assert page.errors == []


@pytest.mark.browser
def test_book_panel_stays_quiet_without_the_route(base_url: str, open_page: Callable[..., Page]) -> None:
    if has_book_route(base_url):
        pytest.skip("the service has /api/mbo/book: test_book_panel_matches_the_book_route covers the panel")
    page = open_page(base_url + "/")
    page.until("() => window.datapairChart.bookRoute === false")
    plot = page.state()["plot"]
    st = page.hover(plot["x"] + plot["w"] * 0.6, plot["y"] + plot["h"] / 2)
    st = page.idle()
    assert st["book"] is None
    assert not [u for u in st["requests"] if u.startswith("/api/mbo/book")]
    assert "/api/mbo/book" in page.page.inner_text("#book-note")
    assert page.errors == []


class StubBook:
    """A stand-in ``/api/mbo/book`` of the agreed shape: ten levels a side around 100, echoing ``at``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        at, depth = int(req.get_param("at")), int(req.get_param("depth") or 10)
        level = lambda raw, i: {"price": raw / 1e9, "price_raw": raw, "size": 100 * (i + 1), "count": i + 1}  # noqa: E731
        resp.media = {
            "symbol": req.get_param("symbol"), "at": at, "ts_recv": at - 1234,
            "bids": [level(100_000_000_000 - i * 10_000_000, i) for i in range(depth)],
            "asks": [level(100_010_000_000 + i * 10_000_000, i) for i in range(depth)],
        }  # fmt: skip


@pytest.mark.browser
def test_book_panel_draws_the_agreed_shape(
    lake: Path, open_page: Callable[..., Page], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def spec_with_book(version: str = "0.1.0") -> dict[str, Any]:
        spec = build_spec(version)
        spec["paths"]["/api/mbo/book"] = {"get": {"summary": "stub"}}
        return spec

    monkeypatch.setattr("service.app.build_spec", spec_with_book)
    app = create_app(LakeStore(lake))
    app.add_route("/api/mbo/book", StubBook())
    with serve(app) as url:
        page = open_page(url + "/")
        st = _hover_for_book(page)
        at = st["crosshair"]["at"]
        assert (
            f"/api/mbo/book?symbol=NVDA&at={at}&depth=10" in st["requests"]
        )  # the exact ns, not a rounded float
        assert st["book"]["ts_recv"] == str(int(at) - 1234)
        assert page.page.locator("#book-asks tr").count() == page.page.locator("#book-bids tr").count() == 10
        assert page.page.locator("#book-bids tr").first.inner_text().split() == ["1", "100", "100.00"]
        assert page.page.locator("#book-asks tr").last.inner_text().split() == ["1", "100", "100.01"]
        assert "spread 0.01" in page.page.inner_text("#book-spread")
        page.page.screenshot(path=str(tmp_path / "chart-book-stub.png"))
        page.close()
    assert page.errors == []


@pytest.mark.browser
def test_store_down_says_so(tmp_path: Path, open_page: Callable[..., Page]) -> None:
    with serve(create_app(LakeStore(tmp_path / "gone"))) as url:
        page = open_page(url + "/", wait=False)
        page.until("() => window.datapairChart && window.datapairChart.error !== null")
        st = page.state()
        assert st["error"].startswith("Store unavailable (503)") and "lake store is unavailable" in st["error"]
        banner = page.page.locator("#error")
        assert banner.is_visible() and "Store unavailable (503)" in banner.inner_text()
        page.page.screenshot(path=str(tmp_path / "chart-store-down.png"))
        page.close()
    # the browser reports the failed requests themselves; nothing else may go wrong
    assert all("503" in e for e in page.errors), page.errors


@pytest.mark.browser
@pytest.mark.questdb
def test_chart_over_questdb(lake: Path, open_page: Callable[..., Page], questdb_url: str, questdb_tables) -> None:
    names = questdb_tables("t_chart"), questdb_tables("t_chart_log")
    load_arrow(questdb_url, names, lake_table(lake))  # the real server, holding the lake's rows
    with serve(create_app(QuestDBStore(questdb_url, names[0]))) as url:
        page = open_page(url + "/")
        st = page.state()
        api = get_json(url, "/api/mbo/bars?symbol=NVDA&resolution=auto")
        assert st["candles"] == api["count"] > 100 and st["error"] is None
        page.close()
    assert page.errors == []
