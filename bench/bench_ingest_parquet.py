"""Ingest one generated day into Parquet: ours (``engine.lake.ingest.ingest_parquet``) vs databento's
``DBNStore.to_parquet()``, on the same file.

Each path runs in a fresh interpreter, ``--trials`` times unobserved (the median is shown), then
once more with its whole process tree (our file workers and encoder processes included) sampled
every 50 ms from /proc for the sum of RSS and the sum of PSS (proportional set size: shared pages
counted once across the tree, so it is the tree's real memory; RSS double-counts pages that
forked children share). The sampling slows what it watches (see :func:`run_measured`), so no
timed run is sampled. CPU seconds of the tree come from ``wait4``: rows per CPU-second is the
figure that survives a busy machine.

Rows: ``ours`` (the library call, after a warm-up run: the steady state), ``ours CLI`` (the whole
``python -m engine.ingest`` command, start-up included: what a user waits for) and databento's
``to_parquet()``. Below the table, where ``ours`` spends its time: CPU- and wall-seconds per stage
(:mod:`engine.stages`: decompress, convert, sort, encode in the worker when it steals a stripe,
the Parquet encoder process, waiting on it, writing the day file), and the start-up of the command
line (``--help``, and a 2-record file end to end).

Usage: ``python bench/bench_ingest_parquet.py [--records 20000000] [--trials 3] [--jobs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import generated_day

MIB = 1 << 20


def _children(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/*/stat)."""
    parent: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parent.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parent.get(p, []))
    return out


def _mem_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            vals = {
                line.split(":")[0]: int(line.split()[1])
                for line in fh
                if line.split(":")[0] in ("Rss", "Pss")
            }
        return vals.get("Rss", 0), vals.get("Pss", 0)
    except (OSError, ValueError, IndexError):
        return 0, 0


class TreeSampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree until stopped; keeps the peaks."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.every = every
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pids = _children(self.pid)
            mems = [_mem_kib(p) for p in pids]
            self.peak_rss = max(self.peak_rss, sum(m[0] for m in mems))
            self.peak_pss = max(self.peak_pss, sum(m[1] for m in mems))
            self.peak_procs = max(self.peak_procs, sum(1 for m in mems if m[0]))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_measured(args: list[str], sample: bool = False) -> dict:
    """Run ``this script --child ARGS``; return its JSON (and, with ``sample``, the tree's memory).

    Timed runs are not sampled: one sample reads ``smaps_rollup`` of every process of the tree,
    about 30 ms of the bench's own CPU that walks their page tables under their memory-map lock,
    and every 50 ms that slowed the timed 20M-row command by 0.9-1.4 s (6.2-7.1 s against 5.3-6.4 s
    unsampled, alternating). Memory comes from a separate run of each path.
    """
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = TreeSampler(proc.pid) if sample else None
    if sampler is not None:
        sampler.start()
    out, err = proc.communicate()
    if sampler is not None:
        sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{err[-3000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    if sampler is not None:
        res["peak_rss_mib"] = sampler.peak_rss / 1024
        res["peak_pss_mib"] = sampler.peak_pss / 1024
        res["procs"] = sampler.peak_procs
    return res


def _forkserver_cpu() -> float:
    """CPU seconds of the forkserver and the children it has reaped (our file workers and encoders
    are its children, not ours, so ``RUSAGE_CHILDREN`` never sees them)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            f = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def _forkserver_pid() -> int:
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None) or 0


def child(which: str, src: str, out: str, jobs: int | None) -> None:
    """Runs in the measured interpreter: convert ``src`` into ``out``, print one JSON line."""
    import resource

    extra: dict = {}
    extra_cpu = 0.0

    with open(src, "rb") as fh:  # same page-cache state for both paths
        while fh.read(16 << 20):
            pass

    if which == "ours":
        from engine.lake.ingest import ingest_parquet

        warm = generated_day(100_000)  # compiled kernels loaded, code paths warm
        ingest_parquet([warm], out, force=True, jobs=jobs, quiet=True)
        shutil.rmtree(out)
        t0 = time.perf_counter()
        c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        f0 = _forkserver_cpu()
        s = ingest_parquet([src], out, force=True, jobs=jobs, quiet=True)
        secs = time.perf_counter() - t0
        deadline = time.monotonic() + 10  # the forkserver reaps the last workers a moment later
        while _children(_forkserver_pid()) != [_forkserver_pid()] and time.monotonic() < deadline:
            time.sleep(0.01)
        extra_cpu = _forkserver_cpu() - f0
        if s.failed:
            raise SystemExit(f"ingest failed: {s.failed}")
        rows = s.rows
        extra = {"stages": s.stages, "file_seconds": s.file_seconds}
    elif which == "cli":
        t0 = time.perf_counter()
        c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cmd = [sys.executable, "-m", "engine.ingest", src, "--parquet", out, "--quiet", "--force"]
        cmd += ["--jobs", str(jobs)] if jobs else []
        subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
        secs = time.perf_counter() - t0
        import pyarrow.parquet as pq

        rows = sum(pq.read_metadata(p).num_rows for p in Path(out).glob("mbo_*.parquet"))
        extra = {
            "cpu_unknown": True
        }  # the command's forkserver outlives it: its workers' CPU is not ours to see
    else:
        import databento as db

        store = db.DBNStore.from_file(src)
        t0 = time.perf_counter()
        c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        Path(out).mkdir(parents=True, exist_ok=True)
        store.to_parquet(Path(out) / "databento.parquet")
        secs = time.perf_counter() - t0
        import pyarrow.parquet as pq

        rows = pq.read_metadata(Path(out) / "databento.parquet").num_rows
    c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(c0, c1, strict=True))
    cpu += extra_cpu
    size = sum(p.stat().st_size for p in Path(out).glob("*.parquet"))
    print(json.dumps({"rows": rows, "seconds": secs, "cpu_s": cpu, "out_bytes": size, **extra}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=20_000_000, help="records in the generated day")
    p.add_argument("--trials", type=int, default=1, help="trials per path (median reported)")
    p.add_argument("--jobs", type=int, default=None, help="our --jobs (default: number of cores)")
    p.add_argument("--skip-baseline", action="store_true", help="only run ours")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        which, src, out, jobs = a.child
        child(which, src, out, int(jobs) if jobs != "-" else None)
        return 0
    src = generated_day(a.records)
    in_bytes = src.stat().st_size
    results = []
    paths = ["ours", "ours CLI"] + ([] if a.skip_baseline else ["databento to_parquet"])
    for name in paths:
        kind = {"ours": "ours", "ours CLI": "cli"}.get(name, "databento")
        trials = []
        for i in range(a.trials + 1):  # the timed trials, then one run sampled for memory
            with tempfile.TemporaryDirectory(dir=src.parent) as tmp:
                args = [kind, str(src), str(Path(tmp) / "out"), str(a.jobs or "-")]
                trials.append(run_measured(args, sample=i == a.trials))
        mem = trials.pop()
        trials.sort(key=lambda r: r["seconds"])
        r = trials[len(trials) // 2]
        r["name"] = name
        r.update({k: mem[k] for k in ("peak_rss_mib", "peak_pss_mib", "procs")})
        results.append(r)
    base = results[-1]
    load = os.getloadavg()[0]
    print(
        f"\ningest {a.records:,} MBO records ({in_bytes / 1e6:.0f} MB zstd) into Parquet, "
        f"{os.cpu_count()} cores, load average {load:.1f}, median of {a.trials}"
    )
    hdr = (
        f"{'path':<22} {'rows':>12} {'seconds':>8} {'rows/s':>11} {'MB/s':>7} {'rows/cpu-s':>11} "
        f"{'peak RSS MiB':>13} {'peak PSS MiB':>13} {'procs':>5} {'out MB':>7} {'vs base':>8}"
    )
    print(hdr)
    for r in results:
        rate = r["rows"] / r["seconds"]
        print(
            f"{r['name']:<22} {r['rows']:>12,} {r['seconds']:>8.2f} {rate:>11,.0f} {in_bytes / r['seconds'] / 1e6:>7.1f} "
            f"{'n/a' if r.get('cpu_unknown') else format(r['rows'] / max(r['cpu_s'], 1e-9), ',.0f'):>11} {r['peak_rss_mib']:>13.0f} {r['peak_pss_mib']:>13.0f} "
            f"{r['procs']:>5} {r['out_bytes'] / 1e6:>7.0f} {r['seconds'] and base['seconds'] / r['seconds']:>7.2f}x"
        )
    print(
        "RSS sums every process's resident pages (pages shared by forked processes count once per process); "
        "PSS splits shared pages between the processes that map them."
    )
    print_stages(results[0])
    print_startup()
    return 0


def print_stages(r: dict) -> None:
    """Where ``ours`` spent its time, per stage (CPU-s and wall-s, and CPU ns a row)."""
    stages = r.get("stages") or {}
    rows = max(r["rows"], 1)
    print(
        f"\nwhere ours spends its time ({r['rows']:,} rows, {r['seconds']:.2f} s wall, {r['cpu_s']:.2f} CPU-s):"
    )
    print(f"{'stage':<18} {'CPU s':>8} {'wall s':>8} {'CPU ns/row':>11}")
    worker_wall = 0.0
    for name, (cpu, wall) in sorted(stages.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:<18} {cpu:>8.2f} {wall:>8.2f} {cpu / rows * 1e9:>11.0f}")
        if name != "Parquet encoder":  # the helper process's time runs beside the worker's
            worker_wall += wall
    idle = max(r.get("file_seconds", 0.0) - worker_wall, 0.0)
    rest = max(r["cpu_s"] - sum(c for c, _ in stages.values()), 0.0)
    print(
        f"{'worker, other':<18} {'':>8} {idle:>8.2f} {'':>11}   (the file worker's wall time outside the stages)"
    )
    print(
        f"{'untracked CPU':<18} {rest:>8.2f} {'':>8} {rest / rows * 1e9:>11.0f}   (parent, start-up, Python glue)"
    )


def print_startup(trials: int = 5) -> None:
    """The command line's start-up: --help, and a 2-record file end to end (median of ``trials``)."""
    root = Path(__file__).resolve().parents[1]
    tiny = root.parent / "shared/data/dbn/databento-dbn/test_data.mbo.v3.dbn.zst"

    def wall(args: list[str]) -> float:
        times = []
        for _ in range(trials):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                cmd = [sys.executable, "-m", "engine.ingest", *[a.replace("{tmp}", tmp) for a in args]]
                subprocess.run(cmd, check=True, cwd=root, stdout=subprocess.DEVNULL)
                times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    print("\nstart-up (median of 5):")
    print(f"  datapair-ingest --help: {wall(['--help']):.2f} s")
    if tiny.exists():
        print(
            f"  datapair-ingest on a 2-record file, to the summary line: {wall([str(tiny), '--parquet', '{tmp}', '--quiet']):.2f} s"
        )


if __name__ == "__main__":
    sys.exit(main())
