"""The client side of ``datapair-ingest --cluster``: plan, submit, follow the futures, sum up.

1. Resolve what is already complete, from footers and completion records only: a file is skipped
   when the lake holds every row of it (:func:`engine.lake.ingest.is_complete`) and, with QuestDB,
   the server's ``ingest_log`` says it is loaded. Nothing else is submitted.
2. Group the rest into units (:func:`engine.lake.groups.day_groups` for a lake; one file each for
   QuestDB alone) and submit one task per unit (:func:`engine.cluster.tasks.run_unit`) with
   ``retries``: a unit whose worker dies or raises runs again on another worker.
3. Follow the futures with :func:`distributed.as_completed`: the progress bar counts files and rows
   as units land; each file's rows, seconds and outcome go into the summary; a unit that fails for
   good is reported, file by file, alone.

``--cluster local[:N]`` starts a :class:`distributed.LocalCluster` of N worker processes with one
thread each (default: the cores); anything else is a scheduler address (``tcp://host:8786``).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.cluster.tasks import FileReport, IngestJob, run_unit
from engine.errors import ConfigError, DatapairError
from engine.inputs import find_inputs
from engine.lake.groups import day_groups
from engine.lake.ingest import default_jobs, is_complete, lake_infos
from engine.lake.store import resolve
from engine.progress import ProgressBoard, RateClock, RunSummary, show_progress
from engine.questdb.resume import file_key, filter_key, find_completion
from engine.questdb.sink import http_client, prepare_server
from engine.tempfiles import remove_stale_temps

__all__ = ["ClusterSummary", "connect", "ingest_cluster", "parse_cluster"]

_LOCAL = re.compile(r"^local(?::(?P<n>\d+))?$")


def parse_cluster(text: str) -> int | str:
    """``local`` / ``local:N`` -> N workers (``local``: the cores); an address -> itself.

    Raises
    ------
    ConfigError
        ``local:0`` or an address that is not ``scheme://host:port`` / ``host:port``.
    """
    m = _LOCAL.match(text.strip())
    if m:
        n = int(m["n"]) if m["n"] else default_jobs()
        if n < 1:
            msg = f"--cluster {text}: a local cluster needs at least one worker"
            raise ConfigError(msg)
        return n
    if not re.match(r"^([a-z]+://)?[^\s/:]+:\d+$", text.strip()):
        msg = f"--cluster {text!r}: expected local, local:N or a scheduler address such as tcp://host:8786"
        raise ConfigError(msg)
    return text.strip()


@contextlib.contextmanager
def connect(cluster: int | str) -> Iterator[Any]:
    """A :class:`distributed.Client` of a new LocalCluster (N workers) or of a running scheduler."""
    from distributed import Client, LocalCluster

    if isinstance(cluster, int):
        with (
            LocalCluster(
                n_workers=cluster,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            ) as lc,  # fmt: skip
            Client(lc) as client,
        ):
            yield client
        return
    try:
        client = Client(cluster, timeout="20s")
    except OSError as exc:
        msg = f"no Dask scheduler answers at {cluster}: {exc}"
        raise ConfigError(msg) from None
    with client:
        yield client


@dataclass
class ClusterSummary(RunSummary):
    """What :func:`ingest_cluster` did; ``reports`` holds every submitted file's outcome."""

    units: int = 0
    workers: int = 0
    reports: list[FileReport] = field(default_factory=list)
    skipped_paths: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"cluster ingest ({self.units} tasks on {self.workers} workers)"


def _complete(paths: Sequence[Path], job: IngestJob) -> list[bool]:
    """Which files are complete already: lake footers, then QuestDB's ingest_log."""
    if job.force:
        return [False] * len(paths)
    symbols = set(job.symbols) if job.symbols is not None else None
    done = [True] * len(paths)
    if job.lake is not None:
        infos = {k: lake_infos(job.lake, k) for k in (False, True)}
        done = [
            is_complete(p, job.lake, day_files=job.day_files, by_symbol=job.by_symbol, symbols=symbols, _infos=infos)
            for p in paths
        ]  # fmt: skip
    if job.questdb is not None:
        http = http_client(job.questdb)
        skey = filter_key(symbols)
        done = [
            d and find_completion(http, job.questdb, file_key(p), skey) is not None
            for p, d in zip(paths, done, strict=True)
        ]
    return done


def ingest_cluster(
    paths: Sequence[str | os.PathLike[str]],
    cluster: int | str,
    job: IngestJob,
    *,
    retries: int = 2,
    quiet: bool = True,
    client: Any = None,
) -> ClusterSummary:
    """Ingest ``paths`` on a Dask cluster (see the module docstring).

    Parameters
    ----------
    paths : sequence of path-like
        DBN files or directories; every worker must see them at the same paths (a shared
        filesystem, or the same mount on every machine).
    cluster : int or str
        Workers of a new LocalCluster, or a scheduler address (:func:`parse_cluster`).
    job : IngestJob
        Sinks and options (the lake must be reachable by every worker: a shared directory or an
        object-store URL).
    retries : int
        Dask ``retries`` of each task (a unit whose worker died or raised runs again).
    client : distributed.Client, optional
        Use this client instead of connecting (tests, benchmarks).
    """
    clock = RateClock()
    inputs = find_inputs(paths)
    if job.questdb is not None:
        job = replace(job, questdb=prepare_server(job.questdb))  # tables and protocol, once
    summary = ClusterSummary(files=len(inputs))
    todo = []
    for p, done in zip(inputs, _complete(inputs, job), strict=True):
        if done:
            summary.skipped += 1
            summary.skipped_paths.append(str(p))
        else:
            todo.append(p)
    units = day_groups(todo) if job.lake is not None else [[p] for p in todo]
    summary.units = len(units)
    if not units:
        summary.seconds = clock.seconds
        return summary
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(connect(cluster))
        summary.workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        _follow(client, units, job, retries, summary, quiet)
    if job.lake is not None and resolve(job.lake).local:
        remove_stale_temps(resolve(job.lake).root)  # a worker killed mid-task left its temporary files
    summary.seconds = clock.seconds
    return summary


def _follow(
    client: Any, units: list[list[Path]], job: IngestJob, retries: int, summary: ClusterSummary, quiet: bool
) -> None:
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    futures = {}
    for i, unit in enumerate(units):
        names = [str(p) for p in unit]
        key = f"datapair-ingest-{run}-{i}"
        futures[client.submit(run_unit, names, job, key=key, retries=retries, pure=False)] = names
    total = sum(len(u) for u in units)
    files_done = rows = 0
    with ProgressBoard(show_progress(quiet), unit="file") as board:
        board.start("cluster", "files", total)
        for fut in as_completed(list(futures)):
            names = futures[fut]
            try:
                reports: list[FileReport] = fut.result()
            except (DatapairError, Exception) as exc:  # the unit never ran to the end (retries spent)
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                reports = [FileReport(n, False, message=f"{n}: its task failed: {why}") for n in names]
            for r in reports:
                summary.reports.append(r)
                if r.ok:
                    summary.rows += r.rows
                    summary.bytes += r.nbytes if not r.skipped else 0
                else:
                    summary.failed.append((r.path, r.message or "failed"))
                files_done += 1
                rows += r.rows
            board.update("cluster", files_done, rows, None)
        board.finish("cluster")
