"""``python -m service`` / ``datapair-serve``: the HTTP service on waitress."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.errors import DatapairError, StoreUnavailableError

if TYPE_CHECKING:
    from service.stores.base import Store

__all__ = ["main", "make_parser", "tune_memory", "warm_up"]


def make_parser() -> argparse.ArgumentParser:
    """The ``datapair-serve`` argument parser (flags override the environment)."""
    env = os.environ
    p = argparse.ArgumentParser(
        prog="datapair-serve",
        description="Serve MBO records over HTTP (Falcon on waitress): the seed's POST /data and /time "
        "endpoints, /api/mbo chart API, /health, /openapi.json. Reads the Parquet lake at "
        "DATAPAIR_LAKE unless --store questdb or QUESTDB_URL selects QuestDB.",
        epilog="examples:\n"
        "  python -m service                                   # lake at ./data/parquet on 127.0.0.1:8080\n"
        "  python -m service --lake data/parquet --port 8081 --threads 8\n"
        "  QUESTDB_URL=http://127.0.0.1:9000 python -m service  # the mbo_ticks table in QuestDB\n"
        '  curl -s -X POST localhost:8080/data -d \'{"start_ts": 1761130860000000000, "end_ts": 1761130920000000000}\'\n'
        "exit codes: 0 stopped cleanly, 1 failure (bad configuration, port in use), 2 bad arguments",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--host",
        default=env.get("DATAPAIR_HOST", "127.0.0.1"),
        help="address to listen on (default 127.0.0.1, env DATAPAIR_HOST)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(env.get("DATAPAIR_PORT", "8080")),
        help="port (default 8080, env DATAPAIR_PORT)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=int(env.get("DATAPAIR_THREADS", "8")),
        help="waitress worker threads (default 8)",
    )
    p.add_argument(
        "--store",
        choices=("auto", "lake", "questdb"),
        default=env.get("DATAPAIR_STORE", "auto"),
        help="where rows come from (default auto: QuestDB if QUESTDB_URL is set, else the lake)",
    )
    p.add_argument(
        "--lake", default=None, help="lake directory (default env DATAPAIR_LAKE or ./data/parquet)"
    )
    p.add_argument(
        "--lake-cache-mb",
        type=int,
        default=None,
        help="MiB of decoded lake row groups kept in memory (default env DATAPAIR_LAKE_CACHE_MB or 256; 0: off)",
    )
    p.add_argument(
        "--questdb-url",
        default=None,
        help="QuestDB HTTP address (default env QUESTDB_URL), e.g. http://127.0.0.1:9000",
    )
    p.add_argument(
        "--questdb-table", default=None, help="QuestDB table (default env QUESTDB_TABLE or mbo_ticks)"
    )
    p.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="row cap of one /data answer; above it 413 asks to page (default env DATAPAIR_MAX_ROWS or 5000000)",
    )
    p.add_argument("--default-symbol", default=None, help="symbol of requests that name none (default NVDA)")
    p.add_argument("--quiet", action="store_true", help="no start-up line")
    return p


def tune_memory() -> None:
    """Keep the server's resident memory near what it uses (call before threads start).

    Every waitress thread decodes row groups and encodes answers of a few MB; with glibc's default
    of up to 8 arenas per core and Arrow's mimalloc pool, memory freed by one request stays mapped
    in per-thread heaps (measured: ~670 MiB after 200 one-minute requests, no cache). Arrow on the
    system allocator and two malloc arenas keep it near 400 MiB at the same latency.
    """
    import ctypes

    import pyarrow as pa

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
    pa.set_memory_pool(pa.system_memory_pool())


def warm_up(store: Store) -> None:
    """Check the store answers and warm its symbol listing (footers, symbol columns); warn if not."""
    try:
        store.ping()
        store.symbols()
    except StoreUnavailableError as exc:
        print(
            f"datapair-serve: warning: {exc} (serving anyway; /health answers 503 until it is fixed)",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted; return the exit code."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    import waitress

    from service.app import Settings, create_app, store_from_env

    env = dict(os.environ)
    if args.lake:
        env["DATAPAIR_LAKE"] = args.lake
    if args.lake_cache_mb is not None:
        env["DATAPAIR_LAKE_CACHE_MB"] = str(args.lake_cache_mb)
    if args.questdb_url:
        env["QUESTDB_URL"] = args.questdb_url
    if args.questdb_table:
        env["QUESTDB_TABLE"] = args.questdb_table
    if args.max_rows is not None:
        env["DATAPAIR_MAX_ROWS"] = str(args.max_rows)
    if args.default_symbol:
        env["DATAPAIR_DEFAULT_SYMBOL"] = args.default_symbol
    tune_memory()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        store = store_from_env(env, args.store, threads=args.threads)
        app = create_app(store, Settings.from_env(env))
    except DatapairError as exc:
        print(f"datapair-serve: {exc}", file=sys.stderr)
        return 1
    if args.quiet:
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    info = store.info()
    # Start-up never waits on the store: the check and the warm-up run beside the server.
    threading.Thread(target=warm_up, args=(store,), name="datapair-warm-up", daemon=True).start()
    if not args.quiet:
        print(
            f"datapair-serve: http://{args.host}:{args.port} store={info.kind} {info.location} threads={args.threads}",
            file=sys.stderr,
        )
    try:
        # Responses stream: keep up to 16 MiB per connection in memory (the app waits when a client
        # reads slower) instead of spilling to temporary files past 1 MiB.
        waitress.serve(
            app, host=args.host, port=args.port, threads=args.threads, ident="datapair", _quiet=args.quiet,
            outbuf_overflow=32 * 2**20, outbuf_high_watermark=16 * 2**20,
        )  # fmt: skip
    except OSError as exc:
        print(f"datapair-serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
