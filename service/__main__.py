"""``python -m service`` / ``datapair-serve``: the HTTP service on waitress."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.cli import ArgumentParser, sigterm_as_interrupt
from engine.errors import ConfigError, DatapairError, StoreUnavailableError
from service.serving import ServeLimits, create_server

if TYPE_CHECKING:
    from service.stores.base import Store

__all__ = [
    "QueueLogLimiter",
    "check_host",
    "default_threads",
    "main",
    "make_parser",
    "tune_memory",
    "warm_up",
]


MAX_THREADS = 256


def default_threads() -> int:
    """Worker threads by default: 4 per core (answers stream, so threads mostly wait on sockets), 4 to 64."""
    return max(4, min(64, 4 * (os.cpu_count() or 1)))


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        msg = f"expected a port from 0 to 65535, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return port


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_THREADS:
        msg = f"expected 1 to {MAX_THREADS} threads, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return n


def check_host(host: str, port: int) -> str | None:
    """Why ``host`` cannot be listened on (None if it resolves to an address)."""
    import socket

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        return f"--host {host!r} is not an address this machine can listen on ({reason})"
    return None


def serve_limits(env: dict[str, str], threads: int) -> ServeLimits:
    """Bounds on slow clients from the environment (``DATAPAIR_STALL_SECONDS``, ``DATAPAIR_OUTBUF_MB``)."""
    try:
        stall = float(env.get("DATAPAIR_STALL_SECONDS") or 30)
        outbuf = int(float(env.get("DATAPAIR_OUTBUF_MB") or 4) * 2**20)
    except ValueError as exc:
        msg = f"DATAPAIR_STALL_SECONDS / DATAPAIR_OUTBUF_MB must be numbers ({exc})"
        raise ConfigError(msg) from None
    if stall <= 0 or outbuf < 65_536:
        msg = "DATAPAIR_STALL_SECONDS must be > 0 and DATAPAIR_OUTBUF_MB at least 0.0625"
        raise ConfigError(msg)
    return ServeLimits(threads=threads, stall_seconds=stall, outbuf_bytes=outbuf)


class QueueLogLimiter(logging.Filter):
    """Let through at most one waitress "Task queue depth" warning per ``seconds`` (with a count)."""

    def __init__(self, seconds: float = 1.0) -> None:
        super().__init__()
        self.seconds = seconds
        self.last = -float("inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        import time

        now = time.monotonic()
        if now - self.last < self.seconds:
            self.suppressed += 1
            return False
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more such warnings in the last {self.seconds:g} s)"
        self.last, self.suppressed = now, 0
        return True


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


def make_parser() -> argparse.ArgumentParser:
    """The ``datapair-serve`` argument parser (flags override the environment)."""
    env = os.environ
    p = ArgumentParser(
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
        type=_port,
        default=env.get("DATAPAIR_PORT", "8080"),
        help="port, 0 for any free one (default 8080, env DATAPAIR_PORT)",
    )
    p.add_argument(
        "--threads",
        type=_threads,
        default=env.get("DATAPAIR_THREADS", str(default_threads())),
        help=f"waitress worker threads, 1 to {MAX_THREADS} (default 4 per core, {default_threads()} here; "
        "env DATAPAIR_THREADS)",
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


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted (SIGINT or SIGTERM: exit 0); return the exit code."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    problem = check_host(args.host, args.port)
    if problem is not None:
        print(f"datapair-serve: error: {problem}", file=sys.stderr)
        return 2

    from service.app import Settings, create_app, store_from_env

    flags = {
        "DATAPAIR_LAKE": args.lake, "QUESTDB_URL": args.questdb_url, "QUESTDB_TABLE": args.questdb_table,
        "DATAPAIR_DEFAULT_SYMBOL": args.default_symbol,
    }  # fmt: skip
    env = dict(os.environ) | {name: value for name, value in flags.items() if value}
    if args.lake_cache_mb is not None:
        env["DATAPAIR_LAKE_CACHE_MB"] = str(args.lake_cache_mb)
    if args.max_rows is not None:
        env["DATAPAIR_MAX_ROWS"] = str(args.max_rows)
    tune_memory()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("waitress.queue").addFilter(QueueLogLimiter())
    try:
        limits = serve_limits(env, args.threads)
        settings = Settings.from_env(env)
        if not env.get("DATAPAIR_STREAM_SLOTS"):
            settings.stream_slots = limits.slots
        store = store_from_env(env, args.store, threads=args.threads)
        app = create_app(store, settings)
    except DatapairError as exc:
        print(f"datapair-serve: error: {exc}", file=sys.stderr)
        return 1
    if args.quiet:
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    with sigterm_as_interrupt():  # from here SIGTERM stops the server as Ctrl-C does
        code = _listen_and_serve(app, args, store, limits)
    if code == 0 and not args.quiet:
        print("datapair-serve: stopped", file=sys.stderr)
    return code


def _listen_and_serve(app: object, args: argparse.Namespace, store: Store, limits: ServeLimits) -> int:
    cores = os.cpu_count() or 1
    try:
        server = create_server(
            app, args.host, args.port, limits, ident="datapair", backlog=max(128, 128 * cores),
            connection_limit=max(100, 50 * args.threads),
        )  # fmt: skip
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"datapair-serve: error: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    try:
        if not args.quiet:
            host = f"[{args.host}]" if ":" in args.host else args.host
            port = getattr(server, "effective_port", args.port)
            info = store.info()
            print(
                f"datapair-serve: http://{host}:{port} store={info.kind} {info.location} threads={args.threads}",
                file=sys.stderr,
                flush=True,
            )
        # Start-up never waits on the store: the check and the warm-up run beside the server.
        threading.Thread(target=warm_up, args=(store,), name="datapair-warm-up", daemon=True).start()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
