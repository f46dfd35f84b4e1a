"""Load DBN files into QuestDB on their own (``datapair-ingest --questdb`` without ``--parquet``).

:func:`ingest_questdb` loads several files at once in processes (``--jobs`` /
``QDB_CONCURRENCY``), each decoding in one thread and sending from the sink's thread, skipping
files whose completion record says they are already loaded. :func:`ingest_file` is one file.
"""

from __future__ import annotations

import os
import queue
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.cli import Interrupted
from engine.dbn.columns import FileColumns, iter_column_blocks
from engine.dbn.metadata import DEFAULT_BLOCK_BYTES
from engine.errors import DatapairError
from engine.inputs import find_inputs
from engine.pipeline.forkserver import context, preload
from engine.pipeline.pool import child_setup
from engine.progress import ProgressBoard, RateClock, RunSummary, show_progress
from engine.questdb.conf import QuestDBOptions
from engine.questdb.resume import CountMismatchError
from engine.questdb.sink import QuestDBSink, QuestDBSinkFactory, prepare_server

__all__ = [
    "QuestDBFileResult",
    "QuestDBSummary",
    "ingest_file",
    "ingest_questdb",
    "questdb_sink_factory",
]


def questdb_sink_factory(options: QuestDBOptions, symbols: set[str] | None = None) -> QuestDBSinkFactory:
    """Prepare the server once in this process (tables, protocol) and return the workers' factory."""
    return QuestDBSinkFactory(
        prepare_server(options), tuple(sorted(symbols)) if symbols is not None else None
    )


@dataclass
class QuestDBFileResult:
    """What happened to one file."""

    path: str
    ok: bool = False
    skipped: bool = False
    rows: int = 0
    """Rows confirmed in the table (for a skipped file: those of its completion record)."""
    nbytes: int = 0
    seconds: float = 0.0
    message: str = ""
    attempts: int = 0


@dataclass
class QuestDBSummary(RunSummary):
    """What :func:`ingest_questdb` did; ``rows`` are rows confirmed visible by ``count()``."""

    protocol: str = ""
    table: str = ""
    results: list[QuestDBFileResult] = field(default_factory=list)

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"questdb {self.table} via {self.protocol}"


Report = Callable[[int, str, int, int, int, bool], None]


def ingest_file(
    path: str | os.PathLike[str],
    options: QuestDBOptions,
    symbols: set[str] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    *,
    index: int = 0,
    report: Report | None = None,
    skip_bad_records: bool = False,
) -> QuestDBFileResult:
    """Load one file (decode in this thread, send in the sink's thread); never raises for bad input."""
    p = Path(path)
    res = QuestDBFileResult(str(p))
    t0 = time.perf_counter()
    try:
        res.nbytes = p.stat().st_size
        opts = options
        attempts = 2 if options.protocol == "ilp-tcp" else 1  # TCP has no acks: one more full pass
        for attempt in range(attempts):
            res.attempts = attempt + 1
            sink = QuestDBSink(p, opts, symbols)
            if sink.skipped:
                res.ok, res.skipped, res.rows = True, True, sink.previous_rows
                return res
            state: list[FileColumns] = []
            last = 0.0
            try:
                for block in iter_column_blocks(p, block_bytes, symbols, state, skip_bad_records):
                    sink.write(block)
                    now = time.perf_counter()
                    if report is not None and state and now - last > 0.1:
                        last = now
                        r = state[0].reader
                        report(index, str(p), res.nbytes, r.bytes_read, r.records_read, False)
                sink.close()
            except CountMismatchError:
                sink.abort()
                if attempt + 1 < attempts:
                    opts = replace(options, force=True)
                    continue
                raise
            except BaseException:
                sink.abort()
                raise
            res.ok, res.rows = True, sink.confirmed
            break
    except DatapairError as exc:
        res.message = str(exc)
    except (OSError, ValueError) as exc:
        res.message = f"{p}: {exc}"
    except Exception as exc:  # a bug: keep the other files going, show where
        res.message = f"{p}: unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    finally:
        res.seconds = time.perf_counter() - t0
        if report is not None:
            report(index, str(p), res.nbytes, res.nbytes if res.ok else 0, res.rows, True)
    return res


_WORKER_QUEUE: Any = None


def _init_worker(q: Any, run_pid: int) -> None:
    """A loader process: ignores Ctrl-C (the parent stops it) and dies with the run, as every
    child of the pipeline does (:func:`engine.pipeline.pool.child_setup`)."""
    global _WORKER_QUEUE
    _WORKER_QUEUE = q
    child_setup(run_pid)


def _worker(
    path: str, options: QuestDBOptions, symbols: set[str] | None, block_bytes: int, index: int,
    skip_bad_records: bool = False,
) -> QuestDBFileResult:  # fmt: skip
    q = _WORKER_QUEUE

    def report(i: int, p: str, total: int, done: int, records: int, finished: bool) -> None:
        if q is not None:
            q.put((i, p, total, done, records, finished))

    return ingest_file(
        path, options, symbols, block_bytes, index=index, report=report, skip_bad_records=skip_bad_records
    )


def ingest_questdb(
    paths: Sequence[str | os.PathLike[str]],
    *,
    url: str | None = None,
    protocol: str = "auto",
    partition: str = "day",
    table: str = "mbo_ticks",
    symbols: set[str] | None = None,
    jobs: int | None = None,
    force: bool = False,
    quiet: bool = True,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    options: QuestDBOptions | None = None,
    skip_bad_records: bool = False,
) -> QuestDBSummary:
    """Load DBN MBO files into QuestDB, exactly once each, and confirm the rows with ``count()``.

    Parameters
    ----------
    paths : sequence of path-like
        DBN files (``.dbn`` / ``.dbn.zst``) or directories of them.
    url : str, optional
        Server (URL, host:port or conf string); default ``QUESTDB_URL`` or http://localhost:9000.
    protocol : str
        ``auto`` (QWP when the server offers it, else ILP/HTTP), ``qwp``, ``ilp-http``, ``ilp-tcp``.
    partition : str
        ``day`` or ``hour``: partitioning of the table when it has to be created.
    table : str
        Target table (created when missing, refused when its schema differs).
    symbols : set of str, optional
        Keep only these symbols.
    jobs : int, optional
        Files loaded at once (default ``QDB_CONCURRENCY`` or 2), each in its own process.
    force : bool
        Load files even when their completion record says they are complete.
    quiet : bool
        No progress bars (drawn only on a TTY anyway).
    block_bytes : int
        Decompressed bytes per read block.
    options : QuestDBOptions, optional
        Every setting at once (then ``url`` ... ``force`` are ignored).

    Returns
    -------
    QuestDBSummary
        Never raises for a bad input file: it is listed in ``failed``. Raises
        :class:`~engine.errors.DatapairError` when the server or the table cannot be used at all.
    """
    clock = RateClock()
    opts = options or QuestDBOptions.from_env(
        url=url, protocol=protocol, partition=partition, table=table, force=force
    )
    inputs = find_inputs(paths)
    opts = prepare_server(opts)
    summary = QuestDBSummary(files=len(inputs), protocol=opts.protocol, table=opts.table)
    n_jobs = max(1, min(jobs or opts.concurrency or 2, len(inputs) or 1))
    board = ProgressBoard(show_progress(quiet))

    def report(i: int, p: str, total: int, done: int, records: int, finished: bool) -> None:
        if finished:
            board.finish(i)
            return
        board.start(i, Path(p).name, total)
        board.update(i, done, records)

    results: list[QuestDBFileResult | None] = [None] * len(inputs)
    pool: ProcessPoolExecutor | None = None
    try:
        with board:
            if n_jobs == 1:
                for i, p in enumerate(inputs):
                    results[i] = ingest_file(
                        p,
                        opts,
                        symbols,
                        block_bytes,
                        index=i,
                        report=report,
                        skip_bad_records=skip_bad_records,
                    )
            else:
                # the pipeline's one process model: children forked by the forkserver, which has
                # imported this module (and so the decoder and the client) before the first fork
                preload([__name__])
                ctx = context()
                q = ctx.Queue()
                pool = ProcessPoolExecutor(
                    n_jobs, mp_context=ctx, initializer=_init_worker, initargs=(q, os.getpid())
                )
                futs: dict[Future[QuestDBFileResult], int] = {
                    pool.submit(_worker, str(p), opts, symbols, block_bytes, i, skip_bad_records): i
                    for i, p in enumerate(inputs)
                }
                pending = set(futs)
                while pending:
                    done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    _drain(q, report)
                    for f in done:
                        i = futs[f]
                        try:
                            results[i] = f.result()
                        except Exception as exc:  # a worker died (e.g. killed): report, go on
                            results[i] = QuestDBFileResult(
                                str(inputs[i]), message=f"{inputs[i]}: worker failed: {exc}"
                            )
                _drain(q, report)
                pool.shutdown(wait=True)
    except KeyboardInterrupt:
        if pool is not None:  # stop the loaders now; a file without its completion record loads again
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted(sum(r is not None and r.ok for r in results), len(inputs)) from None
    for r in results:
        assert r is not None
        summary.results.append(r)
        if not r.ok:
            summary.failed.append((r.path, r.message))
        elif r.skipped:
            summary.skipped += 1
        else:
            summary.rows += r.rows
            summary.bytes += r.nbytes
    summary.seconds = clock.seconds
    return summary


def _drain(q: Any, report: Report) -> None:
    while True:
        try:
            ev = q.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return
        report(*ev)
