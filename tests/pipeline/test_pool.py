"""The process pool: files in order, dying workers and helpers, shared slots."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

import engine.lake.encode as encode
from engine.dbn.columns import ColumnBlock
from engine.errors import SinkError
from engine.lake.encode import ParquetOptions, offload_spec
from engine.lake.ingest import ParquetSinkFactory
from engine.lake.layout import (
    list_lake,
)
from engine.pipeline.offload import OffloadSpec, slot_views
from engine.pipeline.pool import run_pipeline
from engine.pipeline.process import ProgressEvent
from engine.pipeline.sinks import FileSink, SinkResult
from tests.support.samples import ROOT, sample_path


class CountSink(FileSink):
    """Counts rows; dies (the whole worker process) or fails on request."""

    def __init__(self, path: Path, die_on: str | None, fail_on: str | None) -> None:
        self.path = path
        self.rows = 0
        if fail_on is not None and fail_on in str(path):
            msg = f"{path.name}: refused by the test sink"
            raise SinkError(msg)
        self.die = die_on is not None and die_on in str(path)

    def write(self, block: ColumnBlock) -> None:
        if self.die:
            os._exit(7)
        self.rows += len(block)

    def close(self) -> SinkResult:
        return SinkResult(rows=self.rows, outputs=[f"{self.path.name}:{self.rows}"])

    def abort(self) -> None:
        pass


class ProbeSink(CountSink):
    """Writes what a worker process looks like from inside to a JSON file."""

    def __init__(self, path: Path, out: str) -> None:
        super().__init__(path, None, None)
        sig = ctypes.c_int(0)
        ctypes.CDLL(None).prctl(2, ctypes.byref(sig))  # PR_GET_PDEATHSIG
        Path(out).write_text(json.dumps({
            "threads": len(os.listdir("/proc/self/task")), "parent": os.getppid(), "pdeathsig": sig.value,
            "pid": os.getpid(),
        }))  # fmt: skip


@dataclass(frozen=True)
class ProbeFactory:
    out: str

    def __call__(self, path: Path) -> FileSink:
        return ProbeSink(path, self.out)


def psutil_alive(pid: int) -> bool:
    """True while ``pid`` runs (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class CountFactory:
    def __init__(self, die_on: str | None = None, fail_on: str | None = None) -> None:
        self.die_on = die_on
        self.fail_on = fail_on

    def __call__(self, path: Path) -> FileSink:
        return CountSink(path, self.die_on, self.fail_on)


SAMPLES = [
    "databento-dbn/test_data.mbo.v1.dbn.zst",
    "databento-python/GLBX.MDP3/test_data.mbo.dbn.zst",
    "databento-python/IFEU.IMPACT/test_data.mbo.dbn.zst",
    "databento-python/XNAS.ITCH/test_data.mbo.dbn.zst",
]


@pytest.mark.parametrize("jobs", [1, 3])
def test_pool_runs_every_file_in_order(jobs: int) -> None:
    paths = [sample_path(s) for s in SAMPLES]
    events: list[ProgressEvent] = []
    outs = run_pipeline(paths, [CountFactory()], jobs=jobs, report=events.append)
    assert [o.path for o in outs] == [str(p) for p in paths] and all(o.ok for o in outs)
    assert [o.rows for o in outs] == [2, 4, 4, 4]
    assert {e.index for e in events if e.done} == {0, 1, 2, 3}
    assert run_pipeline(paths, [CountFactory()], inline=True)[3].outputs == outs[3].outputs


def test_worker_death_fails_only_its_file() -> None:
    paths = [sample_path(s) for s in SAMPLES]
    outs = run_pipeline(paths, [CountFactory(die_on="GLBX")], jobs=2)
    failed = [o for o in outs if not o.ok]
    assert [Path(o.path).parent.name for o in failed] == ["GLBX.MDP3"]
    assert "worker process died (exit code 7)" in failed[0].message
    assert sum(o.ok for o in outs) == 3


class DiesOnArrival:
    """A factory that ends the worker process as the worker unpickles it: every worker dies as it
    starts, as they do when a script without a ``__main__`` guard (or read from stdin) runs the ingest."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return os._exit, (9,)

    def __call__(self, path: Path) -> FileSink:
        raise AssertionError("unreachable")


def test_workers_that_die_as_they_start_stop_the_run_with_one_clear_error() -> None:
    paths = [sample_path(s) for s in SAMPLES]
    outs = run_pipeline(paths, [DiesOnArrival()], jobs=2)  # before: replaced forever
    assert [o.path for o in outs] == [str(p) for p in paths] and not any(o.ok for o in outs)
    for o in outs:
        assert "the file workers exit as they start (3 in a row, exit code 9" in o.message
        assert "__main__" in o.message


def test_sink_error_is_reported_with_the_file() -> None:
    paths = [sample_path(s) for s in SAMPLES]
    outs = run_pipeline(paths, [CountFactory(fail_on="IFEU")], jobs=1)
    assert [o.ok for o in outs] == [True, True, False, True]
    assert outs[2].message == "test_data.mbo.dbn.zst: refused by the test sink"


def _dying_job(arrays: dict, job: encode.StripeJob) -> None:
    """Runs in the encoder process: dies on the stripes of 2020-12-28."""
    if job.day == "2020-12-28":
        os._exit(9)
    encode.encode_job(arrays, job)


@dataclass(frozen=True)
class DyingEncoderFactory(ParquetSinkFactory):
    """The lake's factory whose encoder process dies on one day (children import this module)."""

    @property
    def offload(self) -> OffloadSpec | None:
        spec = super().offload
        return None if spec is None else replace(spec, handler=_dying_job)


def test_encoder_death_fails_its_file_and_a_new_encoder_takes_over(tmp_path: Path) -> None:
    paths = [sample_path(SAMPLES[3]), sample_path(SAMPLES[2])]  # 2020-12-28, then 2024-01-18
    outs = run_pipeline(paths, [DyingEncoderFactory(str(tmp_path))], jobs=1)
    assert not outs[0].ok and "encoder process died" in outs[0].message
    assert outs[1].ok and [Path(o).name for o in outs[1].outputs] == ["mbo_2024-01-18.parquet"]
    assert [f.path.name for f in list_lake(tmp_path)] == ["mbo_2024-01-18.parquet"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_children_start_clean_and_die_with_their_parent(tmp_path: Path) -> None:
    """Workers come from the forkserver (no inherited threads or files) and exit with the run."""
    outs = run_pipeline([sample_path(SAMPLES[3])], [ProbeFactory(str(tmp_path / "probe.json"))], jobs=1)
    assert outs[0].ok, outs[0].message
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["threads"] == 2  # the worker's own thread and its run watchdog: nothing inherited
    assert probe["parent"] != os.getpid()  # forked by the forkserver, not by us
    assert probe["pdeathsig"] == signal.SIGKILL
    assert not psutil_alive(probe["pid"])


def test_workers_die_when_the_run_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "worker.pid"
    script = (
        "import sys; from engine.pipeline.pool import run_pipeline; "
        "from tests.support.blocking import BlockingFactory; "
        f"run_pipeline([sys.argv[1]], [BlockingFactory({str(out)!r})], jobs=1)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(sample_path(SAMPLES[3]))], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.exists(), "the worker never started"
        worker = int(out.read_text())
        assert psutil_alive(worker)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 60
    while psutil_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil_alive(worker), "a worker outlived its killed run"


def test_slot_views_do_not_overlap() -> None:
    buf = bytearray(10 << 20)
    opts = ParquetOptions(stripe_rows=1000, slots=3)
    slots = slot_views(buf, offload_spec(opts))
    for i, s in enumerate(slots):
        for j, a in enumerate(s.values()):
            a[:] = i * 20 + j
    for i, s in enumerate(slots):
        for j, a in enumerate(s.values()):
            assert len(a) == 1000 and (a == i * 20 + j).all()


def _no_job(columns: object, job: object) -> None:
    pass


def test_an_offload_spec_names_its_functions_and_their_modules() -> None:
    """The lake's encoder spec names its functions as "module:function": the planning process
    never imports them, the forkserver preloads their module, the worker and helper resolve them."""
    spec = offload_spec(ParquetOptions())
    assert spec.modules() == {"engine.lake.encode"}
    assert all(isinstance(f, str) for f in (spec.handler, spec.install, spec.warm))
    installed: list[object] = []
    calls = replace(spec, handler=_no_job, install=installed.append, warm=None)
    assert calls.modules() == {__name__}  # a builtin method has no module to preload
    calls.install_channel(None)
    spec.install_channel(None)  # resolves engine.lake.encode:set_worker_encoder
    assert installed == [None] and encode.worker_encoder() is None
