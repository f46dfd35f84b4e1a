"""What a Dask worker runs: one unit of ingest work, in the worker's own process.

A *unit* is the lake's unit of atomic output, a day group (:mod:`engine.lake.groups`: the input
files that may write the same day file; one file for a plain day file), or one file when only
QuestDB is loaded. The unit runs today's per-file work (decode, convert, sinks) through
:func:`engine.lake.ingest.ingest_parquet` with ``inline=True``: in the worker process, one file
after the other, no process pool inside the worker (a Dask worker is a daemon process, and the
cluster already gives every core a worker). QuestDB senders take a lease of a cluster-wide
:class:`distributed.Semaphore` first (``QDB_CONCURRENCY``), so N workers never overrun the server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.dbn.metadata import DEFAULT_BLOCK_BYTES
from engine.lake.ingest import ingest_parquet
from engine.lake.options import ParquetOptions
from engine.questdb.conf import QuestDBOptions
from engine.questdb.ingest import ingest_file
from engine.questdb.sink import QuestDBSinkFactory

__all__ = ["QDB_SEMAPHORE", "FileReport", "IngestJob", "run_unit"]

QDB_SEMAPHORE = "datapair-questdb-senders"
"""Name of the cluster-wide semaphore that caps concurrent QuestDB senders."""


@dataclass(frozen=True)
class IngestJob:
    """Everything a unit needs besides its files (pickled to the workers once per task)."""

    lake: str | None = None
    """The lake (directory or object-store URL); None: QuestDB only."""
    questdb: QuestDBOptions | None = None
    """Prepared QuestDB options (protocol resolved, tables created by the client)."""
    qdb_concurrency: int = 2
    day_files: bool = True
    by_symbol: bool = False
    symbols: tuple[str, ...] | None = None
    force: bool = False
    block_bytes: int = DEFAULT_BLOCK_BYTES
    skip_bad_records: bool = False
    options: ParquetOptions | None = None


@dataclass
class FileReport:
    """One input file's outcome, sent back to the client."""

    path: str
    ok: bool
    rows: int = 0
    nbytes: int = 0
    seconds: float = 0.0
    skipped: bool = False
    message: str = ""
    outputs: list[str] = field(default_factory=list)
    worker: str = ""


@contextlib.contextmanager
def _questdb_lease(job: IngestJob) -> Iterator[None]:
    if job.questdb is None:
        yield
        return
    from distributed import Semaphore

    with Semaphore(max_leases=max(1, job.qdb_concurrency), name=QDB_SEMAPHORE):
        yield


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # not inside a worker (a direct call, e.g. a test)
        return ""


def run_unit(paths: list[str], job: IngestJob) -> list[FileReport]:
    """Ingest one unit's files in this process; one :class:`FileReport` per file, in order.

    A bad file is reported (``ok=False``) without raising; an exception here means the unit could
    not run at all (the client reports every file of it as failed, after Dask's retries).
    """
    symbols = set(job.symbols) if job.symbols is not None else None
    where = _worker_name()
    with _questdb_lease(job):
        if job.lake is None:
            assert job.questdb is not None
            out = []
            for p in paths:
                r = ingest_file(
                    p, job.questdb, symbols, job.block_bytes, skip_bad_records=job.skip_bad_records
                )
                out.append(FileReport(p, r.ok, r.rows, r.nbytes, r.seconds, r.skipped, r.message, [], where))
            return out
        extra = [QuestDBSinkFactory(job.questdb, job.symbols)] if job.questdb is not None else []
        t0 = time.perf_counter()
        s = ingest_parquet(
            paths, job.lake, by_symbol=job.by_symbol, day_files=job.day_files, symbols=symbols, jobs=1,
            force=job.force, quiet=True, block_bytes=job.block_bytes, options=job.options,
            extra_sinks=extra, skip_bad_records=job.skip_bad_records, inline=True,
        )  # fmt: skip
        done = {Path(o.path).resolve(): o for o in s.outcomes}
        out = []
        for p in paths:
            o = done.get(Path(p).resolve())
            if o is None:  # complete already (checked again here: a retried unit may have landed)
                out.append(FileReport(p, True, 0, Path(p).stat().st_size, 0.0, True, "", [], where))
            else:
                out.append(
                    FileReport(p, o.ok, o.rows, o.nbytes, o.seconds, False, o.message, o.outputs, where)
                )
        if not s.outcomes and paths:
            out[0].seconds = time.perf_counter() - t0
        return out
