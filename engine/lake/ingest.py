"""Ingest DBN files into the lake: skip what is complete, run the pipeline, sum up.

:func:`ingest_parquet` is what ``datapair-ingest --parquet`` runs: it finds the inputs, skips
files whose days the lake already holds exactly (footers only, no decoding), and runs the rest
through :func:`engine.pipeline.pool.run_pipeline` with a :class:`ParquetSinkFactory` (plus any
extra sinks, e.g. QuestDB, fed from the same decoded blocks).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from engine.cli import Interrupted
from engine.defaults import DEFAULT_BLOCK_BYTES, default_jobs
from engine.errors import ConfigError, DatapairError
from engine.inputs import find_inputs
from engine.lake import SINK_MODULES
from engine.lake.groups import day_groups
from engine.lake.layout import LakeFile, LakeInfo, SourceEntry, list_lake, read_lake_info, remove_stale_temps
from engine.lake.options import ParquetOptions, offload_spec
from engine.lake.store import LakeDir, resolve
from engine.pipeline.offload import OffloadSpec
from engine.pipeline.pool import run_pipeline
from engine.pipeline.process import FileOutcome, ProgressEvent, Report
from engine.pipeline.sinks import CompleteSink, FileSink, SinkFactory
from engine.progress import ProgressBoard, RateClock, RunSummary, show_progress
from engine.stages import merge as merge_stages

__all__ = [
    "IngestSummary",
    "ParquetSinkFactory",
    "default_jobs",
    "files_at_once",
    "ingest_parquet",
    "is_complete",
    "lake_infos",
]


@dataclass
class IngestSummary(RunSummary):
    """What :func:`ingest_parquet` did.

    ``files`` counts the input files (written, skipped and failed); ``rows`` and ``bytes`` are
    the rows written and the source bytes read by this run; ``skipped`` counts files whose days
    were already complete; ``failed`` lists ``(path, message)``; ``outputs`` the lake files written.
    """

    label = "ingest"
    outputs: list[str] = field(default_factory=list)
    skipped_paths: list[str] = field(default_factory=list)
    unmapped: int = 0
    """Rows whose instrument_id had no symbol mapping (kept, with the id as the symbol)."""
    symbols_matched: set[str] = field(default_factory=set)
    """With a symbol filter: the wanted symbols that had rows in the files this run read."""
    symbols_known: set[str] = field(default_factory=set)
    """With a symbol filter: every symbol the files this run read name."""
    bad_records: int = 0
    """Corrupt records skipped (``skip_bad_records``)."""
    outcomes: list[FileOutcome] = field(default_factory=list)
    """Each converted (not skipped) file's outcome: rows, seconds, outputs, message."""
    stages: dict[str, list[float]] = field(default_factory=dict)
    """CPU and wall seconds per stage, summed over the files (:mod:`engine.stages`)."""
    file_seconds: float = 0.0
    """Wall seconds the file workers held files, summed (the rest of their time is start-up or idle)."""

    def line(self) -> str:  # type: ignore[override]
        """The closing summary line."""
        return super().line(unmapped=self.unmapped, bad_records=self.bad_records)


@dataclass(frozen=True)
class ParquetSinkFactory:
    """Picklable factory of the :class:`~engine.lake.sink.ParquetSink` of one source file (built in
    the worker: the sink's module, with pyarrow and Numba, loads in the workers, never here)."""

    modules: ClassVar[tuple[str, ...]] = SINK_MODULES

    out_dir: str
    day_files: bool = True
    by_symbol: bool = False
    symbols: tuple[str, ...] | None = None
    options: ParquetOptions | None = None
    skip_complete: bool = False
    """Give a no-op sink for a file the lake already holds (when other sinks still need it)."""
    replace_damaged: bool = False
    """Replace unreadable or incomplete day files (``--force``) instead of refusing."""
    lake: str | None = None
    """The lake the skip check reads when ``out_dir`` is a local staging directory (a remote lake)."""

    @property
    def offload(self) -> OffloadSpec | None:
        """The encoder process the pipeline pairs with each file worker (day files only)."""
        return offload_spec(self.options or ParquetOptions()) if self.day_files else None

    def __call__(self, path: Path) -> FileSink:
        wanted = set(self.symbols) if self.symbols is not None else None
        if self.skip_complete and is_complete(
            path,
            self.lake or self.out_dir,
            day_files=self.day_files,
            by_symbol=self.by_symbol,
            symbols=wanted,
        ):
            return CompleteSink()
        source = SourceEntry.of_file(path, self.symbols)
        from engine.lake.sink import ParquetSink

        return ParquetSink(
            self.out_dir, source, day_files=self.day_files, by_symbol=self.by_symbol, options=self.options,
            replace_damaged=self.replace_damaged,
        )  # fmt: skip  # the pipeline's encoder process, if any, is found through engine.lake.encode.worker_encoder()


def files_at_once(jobs: int) -> int:
    """Files converted in parallel by ``jobs`` worker processes: each file keeps two busy.

    One process decompresses, decodes and sorts; its paired encoder process writes Parquet. So
    ``--jobs`` (default: the cores) uses every core, and on a 2-core machine one file at a time
    keeps the process tree within the 512 MiB budget.
    """
    return max(1, jobs // 2)


def lake_infos(out_dir: str | os.PathLike[str], by_symbol: bool) -> list[tuple[LakeFile, LakeInfo]]:
    """Every lake file of one kind (day or per-symbol) with its footer info; unreadable ones are left out."""
    out = []
    for f in list_lake(out_dir, by_symbol=by_symbol):
        try:
            out.append((f, read_lake_info(f.path)))
        except DatapairError:
            continue  # not ours or damaged: never counts as complete
    return out


def is_complete(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    day_files: bool = True,
    by_symbol: bool = False,
    symbols: set[str] | None = None,
    _infos: dict[bool, list[tuple[LakeFile, LakeInfo]]] | None = None,
) -> bool:
    """True if the lake already holds every row of this source file (same size, mtime, filter).

    Exact and cheap: reads only lake footers. For each UTC day the source gave rows to (as stored
    in the footers), the rows this source put in that day's file(s) must equal that count, and
    each file's stored row count must equal its footer's.
    """
    me = SourceEntry.of_file(path, symbols)
    kinds = [k for k, on in ((False, day_files), (True, by_symbol)) if on]
    for by_sym in kinds:
        infos = _infos[by_sym] if _infos is not None else lake_infos(out_dir, by_sym)
        expected: dict[str, int] | None = None
        got: dict[str, int] = {}
        for f, info in infos:
            for s in info.sources:
                if s.same_source(me):
                    if not info.complete:
                        return False
                    if expected is None:
                        expected = s.rows_by_day
                    elif expected != s.rows_by_day:
                        return False
                    day = f.day.isoformat()
                    got[day] = got.get(day, 0) + s.rows
        if not expected or got != expected:
            return False
    return True


def ingest_parquet(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    by_symbol: bool = False,
    day_files: bool = True,
    symbols: set[str] | None = None,
    jobs: int | None = None,
    force: bool = False,
    quiet: bool = True,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    options: ParquetOptions | None = None,
    extra_sinks: Sequence[SinkFactory] = (),
    skip_bad_records: bool = False,
    inline: bool = False,
) -> IngestSummary:
    """Convert DBN MBO files into the Parquet lake in ``out_dir``.

    Parameters
    ----------
    paths : sequence of path-like
        DBN files (``.dbn`` or ``.dbn.zst``, v1-v3) or directories to scan for ``*.dbn.zst``.
    out_dir : path-like or URL
        The lake directory (created if missing), or an object-store prefix (``s3://bucket/lake``,
        see :mod:`engine.lake.store`): then each day group (:mod:`engine.lake.groups`) is written
        to a local staging lake and published (:mod:`engine.lake.publish`).
    by_symbol : bool
        Also (or, with ``day_files=False``, only) write ``mbo_SYMBOL_YYYY-MM-DD.parquet``.
    day_files : bool
        Write ``mbo_YYYY-MM-DD.parquet``.
    symbols : set of str, optional
        Keep only these symbols.
    jobs : int, optional
        Worker processes (default: :func:`default_jobs`, the cores). Each file is converted by
        a decoding process and an encoding process, so ``jobs // 2`` files run at once (at
        least one): see :func:`files_at_once`.
    force : bool
        Rewrite days that are already complete.
    quiet : bool
        No progress bars (they are drawn only on a TTY anyway).
    block_bytes : int
        Decompressed bytes per read block.
    options : ParquetOptions, optional
        Layout and encoding of the files.
    extra_sinks : sequence of SinkFactory
        More sinks fed from the same decoded blocks (the hook for ``--questdb``:
        ``engine.questdb.sink.QuestDBSinkFactory``). With extra sinks no file is skipped up
        front; the Parquet sink of a file the lake already holds does nothing (unless ``force``)
        and each extra sink decides for itself.
    skip_bad_records : bool
        Skip and count corrupt records (another rtype where the metadata says MBO) instead of
        failing their file; the count is in the summary and in each file's footer.
    inline : bool
        Convert in this process, one file after the other, with no worker process (a cluster
        task: :mod:`engine.cluster` runs one per worker process).

    Returns
    -------
    IngestSummary
        Never raises for a bad input file: it is listed in ``failed``.
    """
    if not (day_files or by_symbol):
        msg = "nothing to write: day_files and by_symbol are both off"
        raise ConfigError(msg)
    clock = RateClock()
    inputs = find_inputs(paths)
    where = resolve(out_dir)
    lake: Path | str = where.uri
    if where.local:
        lake = Path(where.root)
        lake.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(lake)
    summary = IngestSummary(files=len(inputs))
    todo = []
    skip_up_front = not force and not extra_sinks
    infos = {k: lake_infos(lake, k) for k in (False, True)} if skip_up_front else {}
    for p in inputs:
        if skip_up_front and is_complete(
            p, lake, day_files=day_files, by_symbol=by_symbol, symbols=symbols, _infos=infos
        ):
            summary.skipped += 1
            summary.skipped_paths.append(str(p))
        else:
            todo.append(p)
    factory = ParquetSinkFactory(
        str(lake), day_files, by_symbol, tuple(sorted(symbols)) if symbols is not None else None,
        options or ParquetOptions(), skip_complete=bool(extra_sinks) and not force, replace_damaged=force,
    )  # fmt: skip
    board = ProgressBoard(show_progress(quiet))

    def report(ev: ProgressEvent) -> None:
        board.start(ev.index, Path(ev.path).name, ev.total_bytes)
        board.update(ev.index, ev.bytes_done, ev.records, ev.seconds or None)
        if ev.done:
            board.finish(ev.index, None if ev.ok else "FAILED")

    def run(paths: Sequence[Path], facs: Sequence[SinkFactory], rep: Report) -> list[FileOutcome]:
        return run_pipeline(
            paths, facs, symbols=symbols, block_bytes=block_bytes, skip_bad_records=skip_bad_records,
            jobs=files_at_once(jobs or default_jobs()), report=rep, inline=inline,
        )  # fmt: skip

    with board:
        try:
            if where.local:
                outcomes = run(todo, [factory, *extra_sinks], report)
            else:
                outcomes = _ingest_remote(todo, where, factory, extra_sinks, run, report, force)
        except Interrupted as exc:
            if where.local:
                remove_stale_temps(lake)  # the workers are stopped: their temporary files go
            exc.done = (exc.done or 0) + summary.skipped
            exc.total = summary.files
            raise
    summary.outcomes = outcomes
    for o in outcomes:
        merge_stages(summary.stages, o.stages)
        summary.file_seconds += o.seconds
        if o.ok:
            summary.rows += o.rows
            summary.bytes += o.nbytes
            summary.outputs.extend(o.outputs)
            summary.unmapped += o.unmapped
            summary.symbols_matched.update(o.symbols_matched)
            summary.bad_records += o.bad_records
            summary.symbols_known.update(o.symbols_known)
        else:
            summary.failed.append((o.path, o.message))
    summary.seconds = clock.seconds
    return summary


def _ingest_remote(
    todo: Sequence[Path],
    where: LakeDir,
    factory: ParquetSinkFactory,
    extra_sinks: Sequence[SinkFactory],
    run: Any,
    report: Report,
    force: bool,
) -> list[FileOutcome]:
    """Each day group through a local staging lake, then published into the remote lake."""
    outcomes: list[FileOutcome] = []
    for group in day_groups(todo):
        base = len(outcomes)

        def shifted(ev: ProgressEvent, base: int = base) -> None:
            report(replace(ev, index=ev.index + base))

        with tempfile.TemporaryDirectory(prefix="datapair-stage-") as staging:
            staged = replace(factory, out_dir=staging, lake=where.uri)
            got = run(group, [staged, *extra_sinks], shifted)
            try:
                from engine.lake.publish import publish_staged

                published = publish_staged(Path(staging), where, replace_damaged=force)
            except (DatapairError, OSError) as exc:
                for o in got:
                    if o.ok:
                        o.ok, o.message = False, f"{o.path}: publishing into {where.uri} failed: {exc}"
                published = []
        names = {Path(u).name: u for u in published}
        for o in got:
            o.index += base
            o.outputs = [names.get(Path(x).name, x) for x in o.outputs]
        outcomes.extend(got)
    return outcomes
