// Nanosecond timestamps as text, exactly: BigInt ns since 1970 UTC in, "YYYY-MM-DD HH:MM:SS.fffffffff" out.
// JavaScript numbers hold integers exactly only up to 2^53 (about 104 days in ns), so absolute
// timestamps stay BigInt (or digit strings) and only offsets from a day origin become numbers.

export const NS = 1_000_000_000n;
export const DAY_NS = 86_400n * NS;

const formatters = new Map();

function formatter(tz) {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
    });
    formatters.set(tz, f);
  }
  return f;
}

/** Floor division of BigInts (toward minus infinity). */
export function floorDiv(a, b) {
  const q = a / b;
  return a % b !== 0n && (a < 0n) !== (b < 0n) ? q - 1n : q;
}

function fraction(ns, digits) {
  if (digits <= 0) return "";
  const f = ns - floorDiv(ns, NS) * NS;
  return "." + f.toString().padStart(9, "0").slice(0, digits);
}

function fields(ns, tz) {
  const secs = floorDiv(ns, NS);
  const out = {};
  for (const p of formatter(tz).formatToParts(new Date(Number(secs) * 1000))) out[p.type] = p.value;
  return out;
}

/** "2025-10-22 13:45:12.123456789 UTC" */
export function utcText(ns, digits = 9) {
  const iso = new Date(Number(floorDiv(ns, NS)) * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${fraction(ns, digits)} UTC`;
}

/** "2025-10-22 09:45:12.123456789 EDT" in the IANA zone ``tz``. */
export function zoneText(ns, tz, digits = 9) {
  const f = fields(ns, tz);
  return `${f.year}-${f.month}-${f.day} ${f.hour}:${f.minute}:${f.second}${fraction(ns, digits)} ${f.timeZoneName}`;
}

// Axis steps in ns: from 1 µs to 1 day, each a "round" interval of the clock.
const STEPS = [
  1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 2e7, 5e7, 1e8, 2e8, 5e8,
  1e9, 2e9, 5e9, 1e10, 15e9, 3e10, 6e10, 12e10, 3e11, 6e11, 9e11, 18e11, 36e11, 72e11, 108e11,
  216e11, 432e11, 864e11,
];

/** The smallest round step giving labels at least ``minNs`` apart. */
export function axisStep(minNs) {
  for (const s of STEPS) if (s >= minNs) return s;
  return STEPS[STEPS.length - 1] * Math.ceil(minNs / STEPS[STEPS.length - 1]);
}

/** A short axis label of ``ns`` in ``tz`` with as many digits as ``step`` needs. */
export function axisLabel(ns, tz, step) {
  const f = fields(ns, tz);
  if (step >= 864e11) return `${f.month}-${f.day}`;
  if (step >= 6e10) return `${f.hour}:${f.minute}`;
  if (step >= 1e9) return `${f.hour}:${f.minute}:${f.second}`;
  const digits = step >= 1e6 ? 3 : 6;
  return `${f.minute}:${f.second}${fraction(ns, digits)}`;
}
