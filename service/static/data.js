// What the chart has loaded and what it asks for: bar sets from /api/mbo/bars (resolution=auto)
// and tick sets from /api/mbo/ticks (paged), each covering a range of ns offsets from `origin`.
//
// `update(v0, v1)` works out what a view needs: bars at the resolution `auto` picks for the view,
// unless a loaded set at that resolution covers it; ticks when the view is narrow and holds at
// most TICK_BUDGET events (estimated from the finest covering bars' trade counts). A request
// whose range no longer covers what the view needs is aborted; one that still does is kept.

import { isAbort } from "./api.js";
import { lowerBound, visibleBars } from "./draw.js";

export const TICK_MAX_SPAN = 15 * 60e9; // ns: never ticks over a wider view
// At most this many events (estimated) in the view. The JSON of a tick costs the server ~5 µs to
// write and is ~300 bytes: 6,000 ticks are one page of ~2 MB, ~30 ms of server time and ~15 ms of
// parsing on our machines (bench/bench_chart.py), so a zoom step into ticks stays under 200 ms.
export const TICK_BUDGET = 6_000;
export const TICK_PAGE = 8_000; // rows per /api/mbo/ticks request: an estimate a bit short still fits one
export const TICK_CAP = 60_000; // rows loaded at most for one view
const KEEP_SETS = 16;

/** The resolution the API's `auto` picks for a span (service/bars.py pick_resolution). */
export function autoResolution(span, resolutions, maxAutoBars) {
  const s = Math.max(span, 1);
  for (const [name, ns] of resolutions) if (s / ns <= maxAutoBars) return name;
  return resolutions[resolutions.length - 1][0];
}

/** A bars answer as columns; ``offOf`` turns ns (digit strings) into offsets. */
export function barSet(doc, offOf) {
  const n = doc.bars.length;
  const set = {
    symbol: doc.symbol, res: doc.resolution, step: Number(doc.step_ns), s: offOf(doc.start), e: offOf(doc.end), n,
    ts: new Array(n), t: new Float64Array(n), o: new Float64Array(n), h: new Float64Array(n),
    l: new Float64Array(n), c: new Float64Array(n), v: new Float64Array(n), k: new Float64Array(n), trades: 0,
  };
  for (let i = 0; i < n; i++) {
    const b = doc.bars[i];
    set.ts[i] = String(b.ts);
    set.t[i] = offOf(b.ts);
    set.o[i] = b.open;
    set.h[i] = b.high;
    set.l[i] = b.low;
    set.c[i] = b.close;
    set.v[i] = b.volume;
    set.k[i] = b.trades;
    set.trades += b.trades;
  }
  return set;
}

const barsCover = (set, need) => set.res === need.res && set.s <= need.s && set.e >= need.e;
const ticksCover = (set, need) => set.s <= need.s && set.e >= need.e;

function keep(sets, set) {
  sets.push(set);
  if (sets.length > KEEP_SETS) sets.splice(1, 1); // the first is the whole range: kept for resets
}

export class Loader {
  /**
   * @param api  the Api (requests are logged there)
   * @param config  the page config: resolutions, maxAutoBars
   * @param hooks  {loaded(kind, url, t0, t1): a set arrived and was adopted; failed(err): not an abort}
   */
  constructor(api, config, hooks) {
    this.api = api;
    this.resolutions = Object.entries(config.resolutions);
    this.maxAutoBars = config.maxAutoBars;
    this.hooks = hooks;
    this.loads = { bars: null, ticks: null };
    this.epoch = 0;
    this.clear();
  }

  clear() {
    this.abortAll();
    this.epoch++;
    this.symbol = null;
    this.origin = 0n;
    this.barSets = [];
    this.tickSets = [];
    this.bars = null; // the bar set drawn
    this.ticks = null; // the tick set drawn
    this.ticksMode = false;
    this.eventsPerTrade = 20;
  }

  /** Start over on ``symbol`` with the whole-range bars answer ``doc``; returns that set. */
  begin(symbol, origin, doc) {
    this.clear();
    this.symbol = symbol;
    this.origin = origin;
    const set = barSet(doc, (ns) => this.offOf(ns));
    this.barSets = [set];
    this.bars = set;
    return set;
  }

  offOf(ns) {
    return Number(BigInt(ns) - this.origin);
  }

  absNs(off) {
    return this.origin + BigInt(Math.round(off));
  }

  get busy() {
    return Boolean(this.loads.bars || this.loads.ticks);
  }

  abortAll() {
    for (const kind of Object.keys(this.loads)) this.abort(kind);
  }

  abort(kind) {
    const load = this.loads[kind];
    if (load) {
      load.ctrl.abort();
      this.loads[kind] = null;
    }
  }

  estimateEvents(s, e) {
    let best = null; // the finest loaded set covering [s, e]; unknown (infinite) when none does
    for (const set of this.barSets) if (set.s <= s && set.e >= e && (!best || set.step < best.step)) best = set;
    if (!best) return Infinity;
    const [i0, i1] = visibleBars(best, s, e);
    let trades = 0;
    for (let i = i0; i < i1; i++) {
      const overlap = Math.min(e, best.t[i] + best.step) - Math.max(s, best.t[i]);
      trades += (best.k[i] * Math.max(0, overlap)) / best.step;
    }
    return trades * this.eventsPerTrade;
  }

  needs(v0, v1) {
    const s = Math.round(v0);
    const e = Math.round(v1);
    const wantTicks = e - s <= TICK_MAX_SPAN && this.estimateEvents(s, e) <= TICK_BUDGET;
    return { bars: { res: autoResolution(e - s, this.resolutions, this.maxAutoBars), s, e }, ticks: wantTicks ? { s, e } : null };
  }

  /** Use or ask for what the view [v0, v1] needs; true when the picture changed. */
  update(v0, v1) {
    if (!this.symbol) return false;
    const need = this.needs(v0, v1);
    let changed = false;
    const hit = this.barSets.find((set) => barsCover(set, need.bars));
    if (hit) {
      this.abort("bars");
      changed = this.bars !== hit;
      this.bars = hit;
    } else if (!(this.loads.bars && barsCover(this.loads.bars.need, need.bars))) {
      this.abort("bars");
      this.loadBars(need.bars);
    }
    this.ticksMode = Boolean(need.ticks);
    if (!need.ticks) {
      this.abort("ticks");
      changed = changed || this.ticks !== null;
      this.ticks = null;
      return changed;
    }
    const th = this.tickSets.find((set) => ticksCover(set, need.ticks));
    if (th) {
      this.abort("ticks");
      changed = changed || this.ticks !== th;
      this.ticks = th;
    } else if (!(this.loads.ticks && ticksCover(this.loads.ticks.need, need.ticks))) {
      this.abort("ticks");
      this.loadTicks(need.ticks);
    }
    return changed;
  }

  begun(kind, need) {
    const load = { need, ctrl: new AbortController(), epoch: this.epoch };
    this.loads[kind] = load;
    return load;
  }

  done(kind, load) {
    if (this.loads[kind] === load) this.loads[kind] = null;
  }

  async loadBars(need) {
    const load = this.begun("bars", need);
    const params = { symbol: this.symbol, start: this.absNs(need.s), end: this.absNs(need.e), resolution: "auto" };
    const t0 = performance.now();
    try {
      const doc = await this.api.get("/api/mbo/bars", params, load.ctrl.signal);
      if (load.epoch !== this.epoch) return;
      const t1 = performance.now();
      const set = barSet(doc, (ns) => this.offOf(ns));
      keep(this.barSets, set);
      this.done("bars", load);
      this.bars = set;
      this.hooks.loaded("bars", this.api.url("/api/mbo/bars", params), t0, t1);
    } catch (err) {
      this.done("bars", load);
      if (!isAbort(err) && load.epoch === this.epoch) this.hooks.failed(err);
    }
  }

  async loadTicks(need) {
    const load = this.begun("ticks", need);
    const set = { s: need.s, e: need.e, n: 0, t: [], price: [], action: [], side: [], size: [], truncated: false };
    const base = { symbol: this.symbol, start: this.absNs(need.s), end: this.absNs(need.e), limit: TICK_PAGE };
    try {
      for (let offset = 0; ; ) {
        const params = { ...base, offset };
        const t0 = performance.now();
        const doc = await this.api.get("/api/mbo/ticks", params, load.ctrl.signal);
        if (load.epoch !== this.epoch) return;
        const t1 = performance.now();
        for (const r of doc.ticks) {
          set.t.push(this.offOf(r.ts_event));
          set.price.push(r.price === null ? NaN : r.price);
          set.action.push(r.action);
          set.side.push(r.side);
          set.size.push(r.size);
        }
        set.n = set.t.length;
        offset += doc.count;
        const last = !doc.has_more || set.n >= TICK_CAP;
        set.truncated = last && Boolean(doc.has_more);
        if (last) {
          keep(this.tickSets, set);
          this.done("ticks", load);
        }
        this.ticks = set; // drawn page by page
        this.hooks.loaded("ticks", this.api.url("/api/mbo/ticks", params), t0, t1);
        if (last) return;
      }
    } catch (err) {
      this.done("ticks", load);
      if (!isAbort(err) && load.epoch === this.epoch) this.hooks.failed(err);
    }
  }

  /** Ticks per trade of the symbol, from its row count (/api/mbo/range), for the estimate. */
  async learnEventsPerTrade() {
    const epoch = this.epoch;
    const all = this.barSets[0];
    const r = await this.api.get("/api/mbo/range", { symbol: this.symbol });
    if (epoch === this.epoch && all && all.trades > 0) this.eventsPerTrade = Math.max(1, r.rows / all.trades);
  }

  /** How many ticks of the drawn set fall in [s, e), or null when the set does not cover it. */
  eventsIn(s, e) {
    const k = this.ticks;
    if (!k || !this.ticksMode || k.s > s || k.e < e - 1) return null;
    return lowerBound(k.t, e, k.n) - lowerBound(k.t, s, k.n);
  }
}
