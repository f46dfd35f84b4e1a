// Canvas 2D drawing of the chart: candles + volume, tick points, axes, and the crosshair overlay.
// Times are numbers of ns since the chart's origin (exact below 2^53 ns); only labels go back to BigInt.

import { axisLabel, axisStep } from "./timefmt.js";

export const COLORS = {
  bg: "#10151b", grid: "#1d252e", axis: "#8b97a4", text: "#c7d0d9",
  up: "#26a69a", down: "#ef5350", volUp: "rgba(38,166,154,0.35)", volDown: "rgba(239,83,80,0.35)",
  buy: "#66bb6a", sell: "#ff5252", neutral: "#b0bec5",
  bid: "rgba(66,165,245,0.85)", ask: "rgba(255,167,38,0.85)",
  bidFaint: "rgba(66,165,245,0.35)", askFaint: "rgba(255,167,38,0.35)", cross: "#d7e0e8",
};

const RIGHT = 76;
const BOTTOM = 26;

/** Plot rectangles (CSS px) of a canvas ``w`` x ``h``: prices above, volume below, axes right and bottom. */
export function geometry(w, h) {
  const plot = { x: 0, y: 8, w: Math.max(20, w - RIGHT), h: Math.max(40, h - 8 - BOTTOM) };
  const volH = Math.round(plot.h * 0.18);
  return {
    w, h, plot,
    price: { y: plot.y, h: plot.h - volH - 6 },
    vol: { y: plot.y + plot.h - volH, h: volH },
  };
}

/** Index of the first ``t[i] >= x`` in a sorted array (``t.length`` when none). */
export function lowerBound(t, x, n = t.length) {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (t[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The index range ``[i0, i1)`` of bars overlapping ``[v0, v1]``. */
export function visibleBars(bars, v0, v1) {
  const i0 = lowerBound(bars.t, v0 - bars.step + 1, bars.n);
  const i1 = lowerBound(bars.t, v1 + 1, bars.n);
  return [i0, Math.max(i0, i1)];
}

function niceStep(range, count) {
  const raw = range / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function decimalsOf(step) {
  let d = 0;
  while (d < 9 && Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-9) d++;
  return d;
}

function axes(ctx, g, s) {
  const { plot, price } = g;
  ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, monospace";
  ctx.textBaseline = "middle";
  ctx.lineWidth = 1;
  // prices
  if (s.yHi > s.yLo) {
    const step = niceStep(s.yHi - s.yLo, Math.max(2, price.h / 50));
    const dec = decimalsOf(step);
    ctx.fillStyle = COLORS.axis;
    ctx.strokeStyle = COLORS.grid;
    ctx.beginPath();
    for (let p = Math.ceil(s.yLo / step) * step; p <= s.yHi; p += step) {
      const y = Math.round(s.yOf(p)) + 0.5;
      ctx.moveTo(plot.x, y);
      ctx.lineTo(plot.x + plot.w, y);
      ctx.fillText(p.toFixed(dec), plot.x + plot.w + 6, y);
    }
    ctx.stroke();
  }
  // times, labelled in the exchange's zone
  const span = s.v1 - s.v0;
  const step = axisStep((span / plot.w) * 95);
  const bstep = BigInt(step);
  const a0 = s.origin + BigInt(Math.floor(s.v0));
  let t = ((a0 + bstep - 1n) / bstep) * bstep;
  const tEnd = s.origin + BigInt(Math.ceil(s.v1));
  ctx.textAlign = "center";
  ctx.beginPath();
  for (let k = 0; t <= tEnd && k < 64; k++, t += bstep) {
    const x = Math.round(s.xOf(Number(t - s.origin))) + 0.5;
    ctx.moveTo(x, plot.y);
    ctx.lineTo(x, plot.y + plot.h);
    const label = axisLabel(t, s.tz, step);
    const half = ctx.measureText(label).width / 2;
    if (x - half >= plot.x && x + half <= plot.x + plot.w) ctx.fillText(label, x, plot.y + plot.h + BOTTOM / 2);
  }
  ctx.stroke();
  ctx.textAlign = "left";
  ctx.strokeStyle = COLORS.axis;
  ctx.strokeRect(plot.x + 0.5, plot.y + 0.5, plot.w - 1, plot.h - 1);
}

function candles(ctx, g, s) {
  const b = s.bars;
  if (!b) return 0;
  const [i0, i1] = visibleBars(b, s.v0, s.v1);
  const pxPerNs = g.plot.w / (s.v1 - s.v0);
  const bw = b.step * pxPerNs;
  const body = Math.max(1, Math.min(bw * 0.72, bw - 1));
  let vmax = 0;
  for (let i = i0; i < i1; i++) vmax = Math.max(vmax, b.v[i]);
  for (const up of [true, false]) {
    ctx.fillStyle = up ? COLORS.up : COLORS.down;
    ctx.strokeStyle = ctx.fillStyle;
    ctx.lineWidth = 1;
    const wicks = new Path2D();
    for (let i = i0; i < i1; i++) {
      if ((b.c[i] >= b.o[i]) !== up) continue;
      const x = s.xOf(b.t[i] + b.step / 2);
      const xc = Math.round(x) + 0.5;
      wicks.moveTo(xc, s.yOf(b.h[i]));
      wicks.lineTo(xc, s.yOf(b.l[i]) + 0.5);
      if (bw >= 3) {
        const y0 = s.yOf(Math.max(b.o[i], b.c[i]));
        const y1 = s.yOf(Math.min(b.o[i], b.c[i]));
        ctx.fillRect(x - body / 2, y0, body, Math.max(1, y1 - y0));
      }
    }
    ctx.stroke(wicks);
    if (vmax > 0) {
      ctx.fillStyle = up ? COLORS.volUp : COLORS.volDown;
      for (let i = i0; i < i1; i++) {
        if ((b.c[i] >= b.o[i]) !== up) continue;
        const hgt = Math.max(1, (b.v[i] / vmax) * g.vol.h);
        ctx.fillRect(s.xOf(b.t[i] + b.step / 2) - Math.max(body, 1) / 2, g.vol.y + g.vol.h - hgt, Math.max(body, 1), hgt);
      }
    }
  }
  return i1 - i0;
}

// Tick point styles: trades are discs by aggressor side, other book events small squares by side.
function tickStyle(action, side) {
  if (action === "T") return side === "B" ? COLORS.buy : side === "A" ? COLORS.sell : COLORS.neutral;
  const bid = side === "B";
  if (action === "C") return bid ? COLORS.bidFaint : COLORS.askFaint;
  if (action === "F") return COLORS.neutral;
  return bid ? COLORS.bid : COLORS.ask;
}

function ticks(ctx, g, s) {
  const k = s.ticks;
  if (!k) return 0;
  const i0 = lowerBound(k.t, s.v0, k.n);
  const i1 = lowerBound(k.t, s.v1 + 1, k.n);
  const paths = new Map();
  const discs = new Map();
  let drawn = 0;
  for (let i = i0; i < i1; i++) {
    const p = k.price[i];
    if (Number.isNaN(p)) continue;
    const x = s.xOf(k.t[i]);
    const y = s.yOf(p);
    const style = tickStyle(k.action[i], k.side[i]);
    if (k.action[i] === "T") {
      const r = Math.min(6, 2 + Math.log10(k.size[i] + 1));
      let path = discs.get(style);
      if (!path) discs.set(style, (path = new Path2D()));
      path.moveTo(x + r, y);
      path.arc(x, y, r, 0, 2 * Math.PI);
    } else {
      let path = paths.get(style);
      if (!path) paths.set(style, (path = new Path2D()));
      path.rect(x - 1.5, y - 1.5, 3, 3);
    }
    drawn++;
  }
  for (const [style, path] of paths) {
    ctx.fillStyle = style;
    ctx.fill(path);
  }
  for (const [style, path] of discs) {
    ctx.fillStyle = style;
    ctx.fill(path);
    ctx.strokeStyle = COLORS.bg;
    ctx.lineWidth = 0.75;
    ctx.stroke(path);
  }
  return drawn;
}

/**
 * Draw the data layer. ``s``: {v0, v1, origin (BigInt ns), tz, bars, ticks, yLo, yHi}.
 * Returns {candles, ticksDrawn}: how many bars and tick points fell in the view.
 */
export function drawMain(ctx, g, s, dpr) {
  const { plot, price } = g;
  s.xOf = (t) => plot.x + ((t - s.v0) / (s.v1 - s.v0)) * plot.w;
  s.yOf = (p) => price.y + ((s.yHi - p) / (s.yHi - s.yLo || 1)) * price.h;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = COLORS.bg;
  ctx.fillRect(0, 0, g.w, g.h);
  axes(ctx, g, s);
  ctx.save();
  ctx.beginPath();
  ctx.rect(plot.x, plot.y, plot.w, plot.h);
  ctx.clip();
  const n = candles(ctx, g, s);
  const m = ticks(ctx, g, s);
  ctx.restore();
  return { candles: n, ticksDrawn: m };
}

function tag(ctx, text, x, y, align) {
  ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, monospace";
  const w = ctx.measureText(text).width + 8;
  const left = align === "center" ? x - w / 2 : x;
  ctx.fillStyle = COLORS.cross;
  ctx.fillRect(left, y - 9, w, 18);
  ctx.fillStyle = COLORS.bg;
  ctx.textBaseline = "middle";
  ctx.fillText(text, left + 4, y);
}

/** Draw (or clear, when ``ch`` is null) the crosshair: lines, and price and time tags on the axes. */
export function drawOverlay(ctx, g, ch, dpr) {
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, g.w, g.h);
  if (!ch) return;
  const { plot } = g;
  ctx.strokeStyle = COLORS.cross;
  ctx.setLineDash([4, 4]);
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(Math.round(ch.x) + 0.5, plot.y);
  ctx.lineTo(Math.round(ch.x) + 0.5, plot.y + plot.h);
  ctx.moveTo(plot.x, Math.round(ch.y) + 0.5);
  ctx.lineTo(plot.x + plot.w, Math.round(ch.y) + 0.5);
  ctx.stroke();
  ctx.setLineDash([]);
  if (ch.priceLabel) tag(ctx, ch.priceLabel, plot.x + plot.w + 2, ch.y, "left");
  if (ch.timeLabel) tag(ctx, ch.timeLabel, ch.x, plot.y + plot.h + BOTTOM / 2, "center");
}
