"""``datapair-ingest``: DBN MBO day files -> the Parquet lake.

``python -m engine.ingest DAY.dbn.zst [MORE.dbn.zst | DIR ...] --parquet DIR`` converts each file
straight from its record arrays (no pandas, no per-row Python) into ``mbo_YYYY-MM-DD.parquet``
files, one per UTC day of ts_recv (see :mod:`engine.lake` for the layout). With no path, the
directory in ``DATA_DIR`` is scanned for ``*.dbn.zst``. Files run in parallel (``--jobs``); a
bad file fails alone; a rerun skips files whose days are all complete in the lake.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.columns import ColumnBlock
from engine.dbn import DEFAULT_BLOCK_BYTES
from engine.errors import ConfigError, DatapairError
from engine.inputs import find_inputs, parse_symbols, read_symbol_filter
from engine.lake import LakeFile, LakeInfo, SourceEntry, list_lake, read_lake_info, remove_stale_temps
from engine.pipeline import ProgressEvent, SinkFactory, run_pipeline
from engine.progress import ProgressBoard, RateClock, show_progress, summary_line
from engine.sinks.base import FileSink, SinkResult
from engine.sinks.parquet import ParquetOptions, ParquetSink
from engine.sinks.questdb import (
    add_questdb_arguments,
    ingest_questdb,
    questdb_options_from_args,
    questdb_sink_factory,
)

__all__ = [
    "CompleteSink",
    "IngestSummary",
    "ParquetSinkFactory",
    "default_jobs",
    "find_inputs",
    "ingest_parquet",
    "is_complete",
    "main",
    "make_parser",
    "parse_symbols",
    "read_symbol_filter",
]

DEFAULT_DATA_DIR = "data/dbn"
DEFAULT_LAKE = "data/parquet"


@dataclass
class IngestSummary:
    """What :func:`ingest_parquet` did.

    ``files`` counts the input files (written, skipped and failed); ``rows`` and ``bytes`` are
    the rows written and the source bytes read by this run; ``skipped`` counts files whose days
    were already complete; ``failed`` lists ``(path, message)``; ``outputs`` the lake files written.
    """

    files: int = 0
    rows: int = 0
    seconds: float = 0.0
    bytes: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    skipped_paths: list[str] = field(default_factory=list)
    unmapped: int = 0
    """Rows whose instrument_id had no symbol mapping (kept, with the id as the symbol)."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        """The closing summary line."""
        return summary_line(
            self.rows,
            self.seconds,
            nbytes=self.bytes,
            files=self.files,
            skipped=self.skipped,
            failed=len(self.failed),
            unmapped=self.unmapped,
            label="ingest",
        )


@dataclass(frozen=True)
class ParquetSinkFactory:
    """Picklable factory of the :class:`ParquetSink` of one source file (built in the worker)."""

    out_dir: str
    day_files: bool = True
    by_symbol: bool = False
    symbols: tuple[str, ...] | None = None
    options: ParquetOptions | None = None
    skip_complete: bool = False
    """Give a no-op sink for a file the lake already holds (when other sinks still need it)."""

    @property
    def encoder_options(self) -> ParquetOptions | None:
        """Options of the encoder process the pipeline pairs with each file worker (day files only)."""
        return (self.options or ParquetOptions()) if self.day_files else None

    def __call__(self, path: Path) -> FileSink:
        wanted = set(self.symbols) if self.symbols is not None else None
        if self.skip_complete and is_complete(
            path, self.out_dir, day_files=self.day_files, by_symbol=self.by_symbol, symbols=wanted
        ):
            return CompleteSink()
        source = SourceEntry.of_file(path, self.symbols)
        return ParquetSink(
            self.out_dir, source, day_files=self.day_files, by_symbol=self.by_symbol, options=self.options
        )  # the pipeline's encoder process, if any, is found through engine.sinks.parquet.worker_encoder()


class CompleteSink(FileSink):
    """The sink of a file a store already holds: takes the blocks, writes nothing."""

    def write(self, block: ColumnBlock) -> None:
        pass

    def close(self) -> SinkResult:
        return SinkResult(skipped=True)

    def abort(self) -> None:
        pass


def default_jobs() -> int:
    """Worker processes by default: the number of cores."""
    return max(1, os.cpu_count() or 1)


def files_at_once(jobs: int) -> int:
    """Files converted in parallel by ``jobs`` worker processes: each file keeps two busy.

    One process decompresses, decodes and sorts; its paired encoder process writes Parquet. So
    ``--jobs`` (default: the cores) uses every core, and on a 2-core machine one file at a time
    keeps the process tree within the 512 MiB budget.
    """
    return max(1, jobs // 2)


def _lake_infos(out_dir: str | os.PathLike[str], by_symbol: bool) -> list[tuple[LakeFile, LakeInfo]]:
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
        infos = _infos[by_sym] if _infos is not None else _lake_infos(out_dir, by_sym)
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
) -> IngestSummary:
    """Convert DBN MBO files into the Parquet lake in ``out_dir``.

    Parameters
    ----------
    paths : sequence of path-like
        DBN files (``.dbn`` or ``.dbn.zst``, v1-v3) or directories to scan for ``*.dbn.zst``.
    out_dir : path-like
        The lake directory (created if missing).
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
        ``engine.sinks.questdb.QuestDBSinkFactory``). With extra sinks no file is skipped up
        front; the Parquet sink of a file the lake already holds does nothing (unless ``force``)
        and each extra sink decides for itself.

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
    lake = Path(out_dir)
    lake.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(lake)
    summary = IngestSummary(files=len(inputs))
    todo = []
    skip_up_front = not force and not extra_sinks
    infos = {k: _lake_infos(lake, k) for k in (False, True)} if skip_up_front else {}
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
        options or ParquetOptions(), skip_complete=bool(extra_sinks) and not force,
    )  # fmt: skip
    factories: list[SinkFactory] = [factory, *extra_sinks]
    board = ProgressBoard(show_progress(quiet))

    def report(ev: ProgressEvent) -> None:
        board.start(ev.index, Path(ev.path).name, ev.total_bytes)
        board.update(ev.index, ev.bytes_done, ev.records, ev.seconds or None)
        if ev.done:
            board.finish(ev.index, None if ev.ok else "FAILED")

    with board:
        outcomes = run_pipeline(
            todo,
            factories,
            symbols=symbols,
            block_bytes=block_bytes,
            jobs=files_at_once(jobs or default_jobs()),
            report=report,
        )
    for o in outcomes:
        if o.ok:
            summary.rows += o.rows
            summary.bytes += o.nbytes
            summary.outputs.extend(o.outputs)
            summary.unmapped += o.unmapped
        else:
            summary.failed.append((o.path, o.message))
    summary.seconds = clock.seconds
    return summary


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="datapair-ingest",
        description=(
            "Convert Databento MBO files (DBN v1-v3, .dbn or .dbn.zst) into a Parquet lake: one "
            "mbo_YYYY-MM-DD.parquet per UTC day of ts_recv, rows clustered by symbol then ts_event."
        ),
        epilog=(
            "examples:\n"
            "  python -m engine.ingest data/dbn/XNAS.ITCH-2025-10-22.dbn.zst --parquet data/parquet\n"
            "  DATA_DIR=data/dbn datapair-ingest --parquet data/parquet --jobs 2\n"
            "  datapair-ingest day1.dbn.zst day2.dbn.zst --by-symbol --symbols NVDA,AAPL\n"
            "  SYMBOL_FILTER=symbols.txt datapair-ingest data/dbn --force --quiet\n"
            "\nenvironment: DATA_DIR (inputs when no path is given, default data/dbn), "
            "DATAPAIR_LAKE (default --parquet, data/parquet), SYMBOL_FILTER (a file of symbols)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", help="DBN files or directories of *.dbn.zst (default: $DATA_DIR)")
    p.add_argument(
        "--parquet",
        metavar="DIR",
        default=None,
        help=f"lake directory to write (default: $DATAPAIR_LAKE or {DEFAULT_LAKE}, unless --questdb "
        "is given alone)",
    )
    p.add_argument(
        "--by-symbol", action="store_true", help="also write mbo_SYMBOL_YYYY-MM-DD.parquet per symbol"
    )
    p.add_argument(
        "--no-day-files", action="store_true", help="with --by-symbol: write only the per-symbol files"
    )
    p.add_argument("--symbols", metavar="A,B", help="keep only these symbols (overrides SYMBOL_FILTER)")
    p.add_argument(
        "--symbol-filter",
        metavar="FILE",
        default=os.environ.get("SYMBOL_FILTER"),
        help="keep only the symbols in FILE, one per line, # comments (default: $SYMBOL_FILTER)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        help=f"worker processes (default: the cores, {default_jobs()} here); each file takes two "
        "(decode, encode), so JOBS // 2 files run at once (at least one). With --questdb alone: "
        "files loaded at once (default $QDB_CONCURRENCY or 2)",
    )
    p.add_argument("--force", action="store_true", help="rewrite days that are already complete in the lake")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_questdb_arguments(p)
    p.add_argument(
        "--block-mb",
        type=float,
        default=DEFAULT_BLOCK_BYTES / (1 << 20),
        help="decompressed MiB per read block",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``datapair-ingest`` / ``python -m engine.ingest``; returns the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.no_day_files and not args.by_symbol:
        parser.error("--no-day-files needs --by-symbol")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.block_mb <= 0:
        parser.error("--block-mb must be positive")
    try:
        symbols: set[str] | None = None
        if args.symbols is not None:
            symbols = parse_symbols(args.symbols)
            if not symbols:
                parser.error("--symbols names no symbol")
        elif args.symbol_filter:
            symbols = read_symbol_filter(args.symbol_filter)
        paths = args.paths or [os.environ.get("DATA_DIR", DEFAULT_DATA_DIR)]
        qdb = questdb_options_from_args(args)
        if qdb is not None and args.parquet is None:  # QuestDB alone
            qsummary = ingest_questdb(
                paths,
                options=qdb,
                symbols=symbols,
                quiet=args.quiet,
                block_bytes=int(args.block_mb * (1 << 20)),
            )
            print(qsummary.line())
            return qsummary.exit_code
        extra = [questdb_sink_factory(qdb, symbols)] if qdb is not None else []
        summary = ingest_parquet(
            paths,
            args.parquet or os.environ.get("DATAPAIR_LAKE", DEFAULT_LAKE),
            by_symbol=args.by_symbol,
            day_files=not args.no_day_files,
            symbols=symbols,
            jobs=args.jobs,
            force=args.force,
            quiet=args.quiet,
            block_bytes=int(args.block_mb * (1 << 20)),
            extra_sinks=extra,
        )
    except DatapairError as exc:
        print(f"datapair-ingest: error: {exc}", file=sys.stderr)
        return 1
    for path, message in summary.failed:
        what = message if path in message else f"{path}: {message}"
        print(f"datapair-ingest: FAILED {what}", file=sys.stderr)
    print(summary.line())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
