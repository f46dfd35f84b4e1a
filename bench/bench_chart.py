"""Benchmark the chart page in Chromium over a 20M-record day: first chart, then zoom steps.

The service runs as its own process (``python -m service``, waitress) over a lake holding one
generated day (or ``--file``); the system Chromium, driven by Playwright, opens the page. The
page records its timings with the Performance API (``window.datapairChart.perf``): when the
first chart was drawn (ms since navigation start), and for each view change the wheel event and
the moment everything the new view needs was drawn. Resource Timing entries split each request
into server wait and download, so a slow step shows whether the server or the browser spent it.

Targets: the first chart <= 1 s after navigation start; each zoom step (wheel -> drawn) <= 200 ms.

Examples
--------
``python bench/bench_chart.py``                             (20M records; generated once, reused)
``python bench/bench_chart.py --records 2000000 --loads 3``
``python bench/bench_chart.py --file data/dbn/XNAS.ITCH-2025-10-22.dbn.zst --symbol AAPL``
``python bench/bench_chart.py --records 2000000 --loads 1 --zooms 0 --screenshot docs/chart.png``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_service import Server, pct  # noqa: E402

FIRST_CHART_MS = 1_000.0
ZOOM_STEP_MS = 200.0
READY = "() => window.datapairChart && window.datapairChart.ready && window.datapairChart.pending === 0"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark the chart page (GET /) in the system Chromium: first chart and zoom steps.",
        epilog="example: python bench/bench_chart.py --records 20000000",
    )
    p.add_argument(
        "--records", type=int, default=20_000_000, help="records of the generated day (default 20M)"
    )
    p.add_argument("--file", type=Path, help="a DBN day file to ingest instead of a generated one")
    p.add_argument("--date", default="2025-10-22", help="day to generate")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--dir",
        default=os.environ.get("DATAPAIR_BENCH_DIR", "/tmp/datapair-bench"),
        help="where the generated day and its lake are kept (a --file gets a temporary lake)",
    )
    p.add_argument("--symbol", default="NVDA", help="symbol shown (default NVDA, the busiest)")
    p.add_argument("--loads", type=int, default=5, help="page loads timed for the first chart")
    p.add_argument("--zooms", type=int, default=3, help="zoom sequences (each from the whole day to ticks)")
    p.add_argument("--steps", type=int, default=12, help="wheel steps per zoom sequence")
    p.add_argument("--threads", type=int, default=8, help="waitress threads of the server")
    p.add_argument(
        "--screenshot",
        type=Path,
        help="also save a PNG of the whole day with the crosshair on it (docs/chart.png is made so, "
        "with --records 2000000: make run's demo day)",
    )
    return p


def prepare(args: argparse.Namespace, tmp: Path) -> Path:
    """The lake: ``--file`` ingested into ``tmp``, or a generated day ingested once under ``--dir``."""
    from engine.lake.ingest import ingest_parquet
    from engine.synth.day import write_day

    if args.file:
        day, lake = args.file, tmp / "lake"
    else:
        d = Path(args.dir) / f"{args.records}"
        d.mkdir(parents=True, exist_ok=True)
        day, lake = d / f"XNAS.ITCH-{args.date}.dbn.zst", d / "lake"
        if not day.exists():
            t = time.perf_counter()
            write_day(day, args.records, date=args.date, seed=args.seed)
            print(f"generated {day} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    t = time.perf_counter()
    s = ingest_parquet([day], lake, quiet=True)
    if s.failed:
        raise SystemExit(f"ingest failed: {s.failed}")
    if not s.skipped:
        print(f"ingested {day} into {lake} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return lake


def resource(page: Any, url: str) -> dict[str, float]:
    """The Resource Timing of the last request of ``url`` (ms since navigation start)."""
    return page.evaluate(
        """(u) => { const e = performance.getEntriesByName(new URL(u, location.href).href).pop();
                    return e ? {start: e.requestStart || e.startTime, first: e.responseStart, end: e.responseEnd} : null; }""",
        url,
    )


def first_chart(page: Any, url: str) -> dict[str, float]:
    page.goto(url)
    page.wait_for_function(READY, timeout=120_000)
    st = page.evaluate("() => window.datapairChart.perf")
    load = next(x for x in st["loads"] if x["kind"] == "bars")
    rt = resource(page, load["url"]) or {
        "start": load["request"],
        "first": load["response"],
        "end": load["response"],
    }
    return {
        "total": st["firstChart"],
        "before": rt["start"],  # page, scripts and the symbol list, until the bars request left
        "server": rt["first"] - rt["start"],  # waiting for the first byte: the server's work
        "download": rt["end"] - rt["first"],
        "draw": st["firstChart"] - rt["end"],  # JSON parse, columns, canvas
    }


def zoom_sequence(page: Any, url: str, where: float, steps: int) -> list[dict[str, Any]]:
    """Wheel in ``steps`` times at ``where`` (a fraction of the plot's width); one row per step."""
    page.goto(url)
    page.wait_for_function(READY, timeout=120_000)
    plot = page.evaluate("() => window.datapairChart.plot")
    x, y = plot["x"] + plot["w"] * where, plot["y"] + plot["h"] * 0.4
    page.mouse.move(x, y)
    rows = []
    for _ in range(steps):
        n_steps = page.evaluate("() => window.datapairChart.perf.steps.length")
        n_loads = page.evaluate("() => window.datapairChart.perf.loads.length")
        page.mouse.wheel(0, -500)
        page.wait_for_function(f"() => window.datapairChart.perf.steps.length > {n_steps}", timeout=120_000)
        page.wait_for_function(READY, timeout=120_000)
        st = page.evaluate(
            f"() => {{ const s = window.datapairChart; return {{step: s.perf.steps[{n_steps}], loads: s.perf.loads.slice({n_loads}), res: s.resolution, ticks: s.ticksDrawn, candles: s.candles}}; }}"
        )
        server = 0.0
        for load in st["loads"]:
            rt = resource(page, load["url"])
            if rt:
                server += rt["first"] - rt["start"]
        step = st["step"]
        rows.append(
            {
                "span_s": step["span"] / 1e9,
                "ms": step["settled"] - step["input"],
                "requests": [x["kind"] for x in st["loads"]],
                "server": server,
                "res": st["res"],
                "candles": st["candles"],
                "ticks": st["ticks"],
            }
        )
    return rows


def screenshot(page: Any, url: str, path: Path) -> None:
    """The whole day with the crosshair at 62% of the plot's width (on a busy bar, most days)."""
    page.goto(url)
    page.wait_for_function(READY, timeout=120_000)
    plot = page.evaluate("() => window.datapairChart.plot")
    page.mouse.move(plot["x"] + plot["w"] * 0.62, plot["y"] + plot["h"] * 0.35)
    page.wait_for_function("() => window.datapairChart.crosshair !== null", timeout=120_000)
    page.wait_for_function(READY, timeout=120_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    print(f"saved {path} ({path.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from playwright.sync_api import sync_playwright

    from tests.support.browser import CHROMIUM_ARGS, find_chromium

    chromium = find_chromium()
    if chromium is None:  # like the QuestDB bench without a server: say so, do not fail `make bench`
        print("bench_chart: skipped, no system Chromium (apt-get install chromium)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-chart-") as tmp:
        lake = prepare(args, Path(tmp))
        server = Server(lake, args.threads)
        url = f"http://127.0.0.1:{server.port}/?symbol={args.symbol}"
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
                ctx = browser.new_context(viewport={"width": 1280, "height": 720}, bypass_csp=True)
                page = ctx.new_page()
                firsts = [first_chart(page, url) for _ in range(args.loads)]
                if args.screenshot:
                    screenshot(page, url, args.screenshot)
                zooms = []
                for k in range(args.zooms):
                    zooms += zoom_sequence(page, url, 0.35 + 0.4 * k / max(1, args.zooms - 1), args.steps)
                browser.close()
        finally:
            server.stop()
    report(args, lake, firsts, zooms)
    return 0


def verdict(values: list[float], target: float) -> str:
    """``ok`` when every value meets the target, else how many do not."""
    over = sum(v > target for v in values)
    return "ok" if not over else f"{over}/{len(values)} over"


def report(
    args: argparse.Namespace, lake: Path, firsts: list[dict[str, float]], zooms: list[dict[str, Any]]
) -> None:
    def med(key: str, rows: list[dict[str, Any]]) -> float:
        return statistics.median(r[key] for r in rows)

    def line(label: str, values: list[float], target: float) -> None:
        print(
            f"{label:<44} {statistics.median(values):>10.0f} {pct(values, 90):>8.0f} {max(values):>8.0f} "
            f"{target:>8.0f} {verdict(values, target):>10}"
        )

    print(f"\nchart page over {lake} ({args.symbol}), Chromium, {len(firsts)} loads, {len(zooms)} zoom steps")
    print(f"{'measure':<44} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'target':>8} {'holds':>10}")
    if firsts:
        total = [f["total"] for f in firsts]
        line("first chart (navigation -> drawn)", total, FIRST_CHART_MS)
        print(
            f"  each load (the first is cold: new browser, fresh server): {', '.join(f'{t:.0f}' for t in total)}"
        )
        for key, label in (
            ("before", "page + symbols, until the bars request"),
            ("server", "bars of the day: server (to first byte)"),
            ("download", "bars of the day: download"),
            ("draw", "parse + draw"),
        ):
            print(f"  {label:<42} {med(key, firsts):>10.0f}")
    if not zooms:
        return
    line("zoom step (wheel -> drawn)", [z["ms"] for z in zooms], ZOOM_STEP_MS)
    for kind in ("(loaded sets)", "bars", "ticks"):
        rows = [z for z in zooms if (",".join(z["requests"]) or "(loaded sets)").startswith(kind)]
        if rows:
            line(f"  steps answered by {kind}", [z["ms"] for z in rows], ZOOM_STEP_MS)
            if kind != "(loaded sets)":
                print(f"    of which server (to first byte), median {med('server', rows):>14.0f}")
    print(
        f"\n{'step':>4} {'span s':>10} {'res':>4} {'candles':>7} {'ticks':>6} {'requests':<22} {'server ms':>9} {'total ms':>8}"
    )
    for i, z in enumerate(zooms):
        reqs = ",".join(z["requests"]) or "(loaded sets)"
        print(f"{i % args.steps + 1:>4} {z['span_s']:>10.1f} {z['res'] or '-':>4} {z['candles']:>7} {z['ticks']:>6} "
              f"{reqs:<22} {z['server']:>9.0f} {z['ms']:>8.0f}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
