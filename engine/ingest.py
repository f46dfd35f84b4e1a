"""``datapair-ingest``: DBN MBO day files -> the Parquet lake.

``python -m engine.ingest DAY.dbn.zst [MORE.dbn.zst | DIR ...] --parquet DIR`` converts each file
straight from its record arrays (no pandas, no per-row Python) into ``mbo_YYYY-MM-DD.parquet``
files, one per UTC day of ts_recv (see :mod:`engine.lake.layout` for the layout). With no path, the
directory in ``DATA_DIR`` is scanned for ``*.dbn.zst``. Files run in parallel (``--jobs``); a
bad file fails alone; a rerun skips files whose days are all complete in the lake.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.cli import ArgumentParser, exit_now, run_cli
from engine.defaults import DEFAULT_BLOCK_BYTES, default_jobs
from engine.inputs import find_inputs, nearest, parse_symbols, read_symbol_filter
from engine.lake import SINK_MODULES
from engine.pipeline.forkserver import preload
from engine.questdb.args import add_questdb_arguments, questdb_options_from_args
from engine.questdb.conf import QuestDBOptions

__all__ = ["main", "make_parser"]

DEFAULT_DATA_DIR = "data/dbn"
DEFAULT_LAKE = "data/parquet"


def make_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
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
            "  datapair-ingest /shared/dbn --parquet s3://bucket/lake --cluster tcp://scheduler:8786\n"
            "  datapair-ingest data/dbn --parquet data/parquet --cluster local:2\n"
            "\nenvironment: DATA_DIR (inputs when no path is given, default data/dbn), "
            "DATAPAIR_LAKE (default --parquet, data/parquet), SYMBOL_FILTER (a file of symbols), "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION / AWS_ENDPOINT_URL (an s3:// lake)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths", nargs="*", help="DBN files, or directories of *.dbn.zst and *.dbn files (default: $DATA_DIR)"
    )
    p.add_argument(
        "--recursive", "-r", action="store_true", help="search directories below the given ones too"
    )
    p.add_argument(
        "--parquet",
        metavar="DIR",
        default=None,
        help=f"lake directory or object-store URL (s3://bucket/prefix) to write (default: $DATAPAIR_LAKE "
        f"or {DEFAULT_LAKE}, unless --questdb is given alone)",
    )
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        default=None,
        help="run on a Dask cluster: a scheduler address (tcp://host:8786), or local[:N] for a LocalCluster "
        "of N worker processes here (default: the cores). One task per day group of files; inputs and "
        "lake must be reachable from every worker",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="with --cluster: times a task is run again after its worker died or it raised (default 2)",
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
        default=None,
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
    p.add_argument(
        "--skip-bad-records",
        action="store_true",
        help="skip and count corrupt records (another record type where the metadata says MBO) instead of "
        "failing the file; the count goes to the summary and the lake footers",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument(
        "--book-index",
        action="store_true",
        help="after the lake days are written, write their book checkpoints (as `datapair-book index`)",
    )
    add_questdb_arguments(p)
    p.add_argument(
        "--block-mb",
        type=float,
        default=DEFAULT_BLOCK_BYTES / (1 << 20),
        help="decompressed MiB per read block",
    )
    return p


def _symbols(args: argparse.Namespace, parser: argparse.ArgumentParser) -> set[str] | None:
    if args.symbols is not None:
        symbols = parse_symbols(args.symbols)
        if not symbols:
            parser.error("--symbols names no symbol")
        return symbols
    if args.symbol_filter:
        return read_symbol_filter(args.symbol_filter, "--symbol-filter")
    if os.environ.get("SYMBOL_FILTER"):
        return read_symbol_filter(os.environ["SYMBOL_FILTER"], "SYMBOL_FILTER")
    return None


def _warn_unmatched(wanted: set[str], matched: set[str], known: set[str]) -> None:
    missing = sorted(wanted - matched)
    if not missing:
        return
    hints = []
    for s in missing:
        near = nearest(s, sorted(known))
        hints.append(f"{s} (nearest: {', '.join(near)})" if near else s)
    print(f"datapair-ingest: warning: no rows for {', '.join(hints)}", file=sys.stderr)


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
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    return run_cli("datapair-ingest", lambda: _run(args, parser))


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    symbols = _symbols(args, parser)
    inputs = find_inputs(args.paths or [os.environ.get("DATA_DIR", DEFAULT_DATA_DIR)], args.recursive)
    block_bytes = int(args.block_mb * (1 << 20))
    qdb = questdb_options_from_args(args)
    if args.cluster is not None:
        return _run_cluster(args, inputs, symbols, qdb, block_bytes)
    # imported here, once the arguments and inputs are good: --help and usage errors need none of
    # it, and each path loads only its own (the lake path no QuestDB client or pandas). The
    # workers' forkserver starts first, importing their modules on the other core meanwhile.
    if qdb is None or args.parquet is not None:
        preload(["engine.lake.ingest", *SINK_MODULES] + (["engine.questdb.ingest"] if qdb is not None else []))
    elif len(inputs) > 1:  # QuestDB alone loads several files in processes of the same forkserver
        preload(["engine.questdb.ingest"])
    if qdb is not None:
        from engine.questdb.ingest import ingest_questdb, questdb_sink_factory
    if qdb is not None and args.parquet is None:  # QuestDB alone
        qsummary = ingest_questdb(
            inputs, options=qdb, symbols=symbols, quiet=args.quiet, block_bytes=block_bytes,
            skip_bad_records=args.skip_bad_records,
        )  # fmt: skip
        _say_failed(qsummary.failed)
        print(qsummary.line())
        return qsummary.exit_code
    from engine.lake.ingest import ingest_parquet

    extra = [questdb_sink_factory(qdb, symbols)] if qdb is not None else []
    summary = ingest_parquet(
        inputs,
        args.parquet or os.environ.get("DATAPAIR_LAKE", DEFAULT_LAKE),
        by_symbol=args.by_symbol,
        day_files=not args.no_day_files,
        symbols=symbols,
        jobs=args.jobs,
        force=args.force,
        quiet=args.quiet,
        block_bytes=block_bytes,
        extra_sinks=extra,
        skip_bad_records=args.skip_bad_records,
    )
    _say_failed(summary.failed)
    if symbols is not None and not summary.skipped:
        _warn_unmatched(symbols, summary.symbols_matched, summary.symbols_known)
    print(summary.line())
    if args.book_index and summary.outputs:
        _book_index(args.parquet or os.environ.get("DATAPAIR_LAKE", DEFAULT_LAKE), summary.outputs)
    return 0 if summary.ok else 1


def _run_cluster(
    args: argparse.Namespace, inputs: Sequence[Path], symbols: set[str] | None, qdb: QuestDBOptions | None,
    block_bytes: int,
) -> int:  # fmt: skip
    from engine.cluster import IngestJob, ingest_cluster, parse_cluster

    cluster = parse_cluster(args.cluster)
    lake = (
        None
        if (qdb is not None and args.parquet is None)
        else args.parquet or os.environ.get("DATAPAIR_LAKE", DEFAULT_LAKE)
    )
    job = IngestJob(
        lake=lake, questdb=qdb, qdb_concurrency=(qdb.concurrency or 2) if qdb is not None else 2,
        day_files=not args.no_day_files, by_symbol=args.by_symbol,
        symbols=tuple(sorted(symbols)) if symbols is not None else None, force=args.force,
        block_bytes=block_bytes, skip_bad_records=args.skip_bad_records,
    )  # fmt: skip
    summary = ingest_cluster(inputs, cluster, job, retries=args.retries, quiet=args.quiet)
    _say_failed(summary.failed)
    print(summary.line())
    return 0 if summary.ok else 1


def _say_failed(failed: Sequence[tuple[str, str]]) -> None:
    """One line on stderr per failed file: what went wrong (the message names the file)."""
    for path, message in failed:
        what = message if path in message else f"{path}: {message}"
        print(f"datapair-ingest: FAILED {what}", file=sys.stderr)


def _book_index(lake: str, outputs: list[str]) -> None:
    """Book checkpoints of the days this run wrote (``--book-index``)."""
    from engine.book.index import index_lake
    from engine.lake.layout import parse_lake_name
    from engine.progress import RateClock, summary_line

    days = sorted({f.day for o in outputs if (f := parse_lake_name(o)) is not None})
    clock = RateClock()
    s = index_lake(lake, days)
    print(summary_line(s.rows, clock.seconds, label=f"book index: {s.checkpoints:,} checkpoints"))


def run() -> None:
    """The ``datapair-ingest`` program: :func:`main`, then :func:`~engine.cli.exit_now`."""
    exit_now(main())


if __name__ == "__main__":
    run()
