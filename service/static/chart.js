// The chart page: a symbol picker, candles + volume from /api/mbo/bars (resolution=auto), tick
// points from /api/mbo/ticks (paged) when zoomed in far enough, a crosshair, and the book at the
// crosshair's instant from /api/mbo/book beside the chart.
//
// A view change (wheel: zoom around the cursor, drag: pan, double-click: the whole range) redraws
// what is loaded at once, then, after DEBOUNCE_MS of quiet (or on releasing a drag), asks only for
// what the new view lacks: bars at the resolution `auto` picks for the view unless a loaded set at
// that resolution covers it, and ticks when the view holds at most TICK_BUDGET events (estimated
// from the bars' trade counts). A request that no longer fits the view is aborted.
//
// Time: absolute ns are BigInt (exact); the view and drawing use numbers of ns since `origin`,
// the UTC midnight before the symbol's first record (exact integers for ~104 days).
// State for tests and benchmarks: window.datapairChart.

import { Api, ApiError, isAbort } from "./api.js";
import { BookPanel } from "./book.js";
import { Loader } from "./data.js";
import { drawMain, drawOverlay, geometry, lowerBound, visibleBars } from "./draw.js";
import { DAY_NS, floorDiv, utcText, zoneText } from "./timefmt.js";

const CONFIG = JSON.parse(document.getElementById("datapair-config").textContent);
const PARAMS = new URLSearchParams(location.search);
const TZ = PARAMS.get("tz") || CONFIG.exchangeTz;
const DEBOUNCE_MS = 30;
const BOOK_DEPTH = 10;
const BOOK_DELAY_MS = 40;
const MIN_SPAN = 1e4; // 10 µs

const state = {
  symbol: null, symbols: [], view: { start: null, end: null }, resolution: null, candles: 0,
  ticksDrawn: 0, ticksMode: false, requests: [], book: null, bookRoute: null, crosshair: null,
  ready: false, error: null, plot: null, perf: { firstChart: null, steps: [], loads: [] },
};
Object.defineProperty(state, "pending", { enumerable: true, get: pendingCount });
window.datapairChart = state;

const api = new Api(state.requests);
const el = {
  symbol: document.getElementById("symbol"), status: document.getElementById("status"),
  error: document.getElementById("error"), chart: document.getElementById("chart"),
  main: document.getElementById("main-canvas"), overlay: document.getElementById("overlay-canvas"),
  readout: document.getElementById("readout"), legend: document.getElementById("legend"),
};
const book = new BookPanel(document.getElementById("book"), BOOK_DEPTH);
const ctxMain = el.main.getContext("2d");
const ctxOver = el.overlay.getContext("2d");

const loader = new Loader(api, CONFIG, { loaded, failed: (err) => fail(err, update) });

let home = null; // {v0, v1}: the symbol's whole range
let v0 = 0;
let v1 = 1;
let geom = null;
let dpr = 1;
let yLast = { lo: 0, hi: 1 };
let epoch = 0; // bumped on a symbol change: late answers of the old symbol are dropped
let bookLoad = null;
let fetchTimer = 0;
let bookTimer = 0;
let retryTimer = 0;
let dragging = null;
let hover = null;
let step = null; // the view change waiting for its data: {cause, input, span}

function pendingCount() {
  return (loader.loads.bars ? 1 : 0) + (loader.loads.ticks ? 1 : 0) + (bookLoad ? 1 : 0) + (fetchTimer ? 1 : 0) + (bookTimer ? 1 : 0);
}

const absNs = (off) => loader.absNs(off);

// -- errors and status -------------------------------------------------------------------------

function fail(err, retry) {
  if (isAbort(err)) return;
  let text;
  if (err instanceof ApiError) {
    text = err.storeDown ? `Store unavailable (503): ${err.description}` : `${err.title} (${err.status || "no answer"}): ${err.description}`;
  } else {
    text = `Error: ${err && err.message ? err.message : err}`;
  }
  state.error = text;
  el.error.textContent = retry ? `${text} (retrying in 5 s)` : text;
  el.error.hidden = false;
  if (retry) {
    clearTimeout(retryTimer); // one retry pending at most
    retryTimer = setTimeout(retry, 5000);
  }
  status();
}

function clearError() {
  if (state.error === null) return;
  state.error = null;
  el.error.hidden = true;
}

function status() {
  const { bars, ticks } = loader;
  const parts = [];
  if (state.symbol) parts.push(state.symbol);
  if (bars) parts.push(`${bars.res} bars`, `${state.candles} candles`);
  if (state.ticksMode) parts.push(ticks ? `${state.ticksDrawn} events${ticks.truncated ? ` (first ${ticks.n})` : ""}` : "events…");
  if (bars) parts.push(`times in ${TZ}`);
  if (pendingCount()) parts.push("loading…");
  el.status.textContent = parts.join(" · ");
  el.legend.hidden = !(state.ticksMode && ticks);
  document.body.dataset.ready = String(state.ready);
  document.body.dataset.pending = String(pendingCount());
}

function record(kind, url, t0, t1) {
  const log = state.perf.loads;
  log.push({ kind, url, request: t0, response: t1, drawn: performance.now() });
  if (log.length > 500) log.splice(0, log.length - 500);
}

// -- loading -----------------------------------------------------------------------------------

/** Ask for what the view lacks (after a pause in view changes, or at once). */
function update() {
  clearTimeout(fetchTimer);
  fetchTimer = 0;
  if (!home || dragging) return;
  const changed = loader.update(v0, v1);
  state.ticksMode = loader.ticksMode;
  if (changed) draw();
  settle();
  status();
}

function settle() {
  if (step && !loader.busy && !fetchTimer) {
    step.settled = performance.now();
    state.perf.steps.push(step);
    step = null;
  }
}

function loaded(kind, url, t0, t1) {
  clearError();
  draw();
  record(kind, url, t0, t1);
  update();
}

// -- drawing -----------------------------------------------------------------------------------

function yRange() {
  const { bars, ticks } = loader;
  let lo = Infinity;
  let hi = -Infinity;
  if (bars) {
    const [i0, i1] = visibleBars(bars, v0, v1);
    for (let i = i0; i < i1; i++) {
      lo = Math.min(lo, bars.l[i]);
      hi = Math.max(hi, bars.h[i]);
    }
  }
  if (ticks && state.ticksMode) {
    const i0 = lowerBound(ticks.t, v0, ticks.n);
    const i1 = lowerBound(ticks.t, v1 + 1, ticks.n);
    const mid = lo <= hi ? (lo + hi) / 2 : NaN;
    for (let i = i0; i < i1; i++) {
      const p = ticks.price[i];
      if (Number.isNaN(p)) continue;
      // trades always; book events near the traded prices (deep levels would flatten the picture)
      if (ticks.action[i] === "T" || Number.isNaN(mid) || Math.abs(p - mid) <= mid * 0.002) {
        lo = Math.min(lo, p);
        hi = Math.max(hi, p);
      }
    }
  }
  if (lo > hi) return yLast;
  const pad = Math.max((hi - lo) * 0.08, Math.abs(hi) * 5e-5, 0.005);
  yLast = { lo: lo - pad, hi: hi + pad };
  return yLast;
}

function resize() {
  const r = el.chart.getBoundingClientRect();
  dpr = window.devicePixelRatio || 1;
  for (const c of [el.main, el.overlay]) {
    c.width = Math.max(1, Math.round(r.width * dpr));
    c.height = Math.max(1, Math.round(r.height * dpr));
  }
  geom = geometry(r.width, r.height);
  const p = geom.plot;
  state.plot = { x: r.left + p.x, y: r.top + p.y, w: p.w, h: p.h };
  draw();
}

function draw() {
  if (!geom || !home) return;
  const { bars, ticks, origin } = loader;
  const y = yRange();
  const shown = state.ticksMode ? ticks : null;
  const out = drawMain(ctxMain, geom, { v0, v1, origin, tz: TZ, bars, ticks: shown, yLo: y.lo, yHi: y.hi }, dpr);
  state.candles = out.candles;
  state.ticksDrawn = out.ticksDrawn;
  state.resolution = bars ? bars.res : null;
  state.view = { start: absNs(v0).toString(), end: absNs(v1).toString() };
  crosshair();
  status();
}

function fmt(x) {
  return x.toLocaleString("en-US", { maximumFractionDigits: 9 });
}

/** The crosshair at the hovered point: time, the bar under it, the events in that bar. */
function crosshair() {
  if (!hover || !geom || !home) {
    state.crosshair = null;
    el.readout.hidden = true;
    drawOverlay(ctxOver, geom || geometry(1, 1), null, dpr);
    return;
  }
  const { plot, price } = geom;
  const { bars } = loader;
  const x = Math.min(Math.max(hover.x, plot.x), plot.x + plot.w);
  const at = absNs(v0 + ((x - plot.x) / plot.w) * (v1 - v0));
  const t = Number(at - loader.origin);
  const y = yLast;
  const p = y.hi - ((hover.y - price.y) / price.h) * (y.hi - y.lo);
  let bar = null;
  let events = null;
  if (bars) {
    const i = lowerBound(bars.t, t - bars.step + 1, bars.n);
    if (i < bars.n && bars.t[i] <= t && t < bars.t[i] + bars.step) {
      bar = { ts: bars.ts[i], open: bars.o[i], high: bars.h[i], low: bars.l[i], close: bars.c[i], volume: bars.v[i], trades: bars.k[i] };
      events = loader.eventsIn(bars.t[i], bars.t[i] + bars.step);
    }
  }
  const ch = {
    at: at.toString(), x: hover.x, y: hover.y, price: p, utc: utcText(at), exchange: zoneText(at, TZ),
    resolution: bars ? bars.res : null, bar, events,
  };
  const lines = [`${state.symbol} ${ch.resolution || ""}  ${ch.utc}`, `${" ".repeat((state.symbol || "").length + (ch.resolution || "").length + 1)}  ${ch.exchange}`];
  if (bar) {
    lines.push(`O ${fmt(bar.open)}  H ${fmt(bar.high)}  L ${fmt(bar.low)}  C ${fmt(bar.close)}`);
    lines.push(`V ${fmt(bar.volume)}  trades ${fmt(bar.trades)}${events === null ? "" : `  events ${fmt(events)}`}`);
  } else {
    lines.push("no trade in this bar");
  }
  el.readout.textContent = lines.join("\n");
  el.readout.hidden = false;
  const label = ch.exchange.split(" ")[1];
  drawOverlay(ctxOver, geom, { x, y: hover.y, priceLabel: p.toFixed(2), timeLabel: label }, dpr);
  const moved = !state.crosshair || state.crosshair.at !== ch.at;
  state.crosshair = ch;
  if (moved) scheduleBook();
}

// -- the book ----------------------------------------------------------------------------------

function scheduleBook() {
  clearTimeout(bookTimer);
  bookTimer = 0;
  if (!state.bookRoute || !state.crosshair) return;
  const at = state.crosshair.at;
  bookTimer = setTimeout(() => {
    bookTimer = 0;
    loadBook(at);
  }, BOOK_DELAY_MS);
}

function loadBook(at) {
  if (bookLoad) bookLoad.ctrl.abort();
  const ctrl = new AbortController();
  const load = { ctrl, ep: epoch };
  bookLoad = load;
  const params = { symbol: state.symbol, at, depth: BOOK_DEPTH };
  const t0 = performance.now();
  api.get("/api/mbo/book", params, ctrl.signal).then((doc) => {
    if (bookLoad === load) bookLoad = null;
    if (load.ep !== epoch) return;
    const t1 = performance.now();
    book.render(doc, TZ);
    state.book = doc;
    clearError();
    record("book", api.url("/api/mbo/book", params), t0, t1);
    status();
  }).catch((err) => {
    if (bookLoad === load) bookLoad = null;
    status();
    if (isAbort(err) || load.ep !== epoch) return;
    if (err instanceof ApiError && err.storeDown) fail(err);
    else book.message(`no book: ${err.title}: ${err.description}`);
  });
}

async function probeBook() {
  try {
    const spec = await api.get("/openapi.json");
    state.bookRoute = Boolean(spec.paths && spec.paths["/api/mbo/book"]);
  } catch {
    state.bookRoute = false;
  }
  if (!state.bookRoute) book.message("this service has no /api/mbo/book route yet: no book to show");
}

// -- view changes ------------------------------------------------------------------------------

function setView(a, b, cause) {
  const full = home.v1 - home.v0;
  const span = Math.min(Math.max(b - a, MIN_SPAN), Math.max(3 * full, 3_600e9));
  let s = (a + b) / 2 - span / 2;
  // keep at least a tenth of the view on the symbol's range
  s = Math.min(Math.max(s, home.v0 - 0.9 * span), home.v1 - 0.1 * span);
  v0 = s;
  v1 = s + span;
  step = { cause, input: performance.now(), span: Math.round(span) };
  draw();
  clearTimeout(fetchTimer);
  fetchTimer = dragging ? 0 : setTimeout(update, DEBOUNCE_MS);
}

function zoomAt(x, factor) {
  const t = v0 + ((x - geom.plot.x) / geom.plot.w) * (v1 - v0);
  setView(t - (t - v0) * factor, t + (v1 - t) * factor, "wheel");
}

function pointer(e) {
  const r = el.overlay.getBoundingClientRect();
  return { x: e.clientX - r.left, y: e.clientY - r.top };
}

function listen() {
  el.overlay.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (!home || !geom) return;
    const unit = e.deltaMode === 1 ? 40 : e.deltaMode === 2 ? 800 : 1;
    const dy = Math.max(-1500, Math.min(1500, e.deltaY * unit));
    hover = pointer(e);
    zoomAt(hover.x, Math.exp(dy * 0.0015));
  }, { passive: false });
  el.overlay.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || !home) return;
    el.overlay.setPointerCapture(e.pointerId);
    dragging = { x: e.clientX, v0, v1, moved: false };
  });
  el.overlay.addEventListener("pointermove", (e) => {
    hover = pointer(e);
    if (dragging) {
      const dx = e.clientX - dragging.x;
      if (Math.abs(dx) > 2) dragging.moved = true;
      if (dragging.moved) {
        el.overlay.classList.add("dragging");
        const dt = (dx / geom.plot.w) * (dragging.v1 - dragging.v0);
        setView(dragging.v0 - dt, dragging.v1 - dt, "pan");
        return;
      }
    }
    crosshair();
  });
  const release = () => {
    if (!dragging) return;
    const moved = dragging.moved;
    dragging = null;
    el.overlay.classList.remove("dragging");
    if (moved) update();
  };
  el.overlay.addEventListener("pointerup", release);
  el.overlay.addEventListener("pointercancel", release);
  el.overlay.addEventListener("pointerleave", () => {
    if (dragging) return;
    hover = null;
    crosshair();
  });
  el.overlay.addEventListener("dblclick", () => {
    if (home) setView(home.v0, home.v1, "reset");
  });
  el.symbol.addEventListener("change", () => {
    history.replaceState(null, "", `?symbol=${encodeURIComponent(el.symbol.value)}`);
    showSymbol(el.symbol.value);
  });
  new ResizeObserver(resize).observe(el.chart);
}

// -- start -------------------------------------------------------------------------------------

function showHome(doc) {
  const set = loader.begin(doc.symbol, floorDiv(BigInt(doc.start), DAY_NS) * DAY_NS, doc);
  home = { v0: set.s, v1: Math.max(set.e, set.s + MIN_SPAN) };
  v0 = home.v0;
  v1 = home.v1;
  yLast = { lo: 0, hi: 1 };
  draw();
  if (state.perf.firstChart === null) {
    performance.mark("datapair:first-chart");
    state.perf.firstChart = performance.now();
  }
  state.ready = true;
  update();
}


async function showSymbol(symbol) {
  const ep = ++epoch;
  loader.clear();
  home = null;
  if (bookLoad) bookLoad.ctrl.abort();
  bookLoad = null;
  clearTimeout(fetchTimer);
  fetchTimer = 0;
  state.symbol = symbol;
  state.ready = false;
  state.book = null;
  el.symbol.value = symbol;
  if (state.bookRoute) book.message("hover the chart to see the book at that instant");
  let doc;
  const t0 = performance.now();
  const params = { symbol, resolution: "auto" };
  try {
    doc = await api.get("/api/mbo/bars", params);
  } catch (err) {
    if (ep === epoch) fail(err, () => ep === epoch && showSymbol(symbol));
    return;
  }
  if (ep !== epoch) return;
  const t1 = performance.now();
  clearError();
  showHome(doc);
  record("bars", api.url("/api/mbo/bars", params), t0, t1);
  loader.learnEventsPerTrade().catch((err) => ep === epoch && fail(err));
}

async function start() {
  let symbols;
  try {
    symbols = (await api.get("/api/mbo/symbols")).symbols;
  } catch (err) {
    fail(err, start);
    return;
  }
  clearError();
  state.symbols = symbols;
  el.symbol.replaceChildren(...symbols.map((s) => new Option(s, s)));
  el.symbol.disabled = symbols.length === 0;
  if (!symbols.length) {
    el.status.textContent = "the store holds no symbols";
    state.ready = true;
    return;
  }
  const wanted = PARAMS.get("symbol");
  const symbol = symbols.includes(wanted) ? wanted : symbols.includes(CONFIG.defaultSymbol) ? CONFIG.defaultSymbol : symbols[0];
  probeBook();
  await showSymbol(symbol);
}

listen();
resize();
start();
