"""Helpers for tests and benchmarks of the service (in the spirit of ``falcon.testing``).

- :func:`make_lake`: generate days with :mod:`engine.synth.day` and ingest them into a lake.
- :func:`serve`: the app on waitress on a free loopback port, in a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["lake_table", "make_lake", "serve"]


def make_lake(
    out_dir: str | Path,
    records: int,
    symbols: Sequence[str] = ("NVDA", "AAPL", "MSFT", "TSLA"),
    dates: Sequence[str] = ("2025-10-22",),
    seed: int = 7,
    *,
    by_symbol: bool = False,
) -> tuple[Path, list[Path]]:
    """Generate one DBN day per date and ingest them all into ``out_dir/lake``.

    Returns the lake directory and the DBN files (the oracle's input).
    """
    from engine.lake.ingest import ingest_parquet
    from engine.synth.day import write_day

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, d in enumerate(dates):
        p = out / f"XNAS.ITCH-{d}.dbn.zst"
        if not p.exists():
            write_day(p, records, tuple(symbols), d, seed=seed + i)
        files.append(p)
    lake = out / "lake"
    summary = ingest_parquet(files, lake, by_symbol=by_symbol, quiet=True, jobs=1)
    if summary.failed:
        msg = f"ingest failed: {summary.failed}"
        raise RuntimeError(msg)
    return lake, files


def lake_table(lake_dir: str | Path) -> pa.Table:
    """Every row of a lake's day files, in file order."""
    files = sorted(Path(lake_dir).glob("mbo_????-??-??.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).combine_chunks()


@contextmanager
def serve(app: object, host: str = "127.0.0.1", threads: int = 4) -> Iterator[str]:
    """Run ``app`` on waitress at a free port of ``host`` in a thread; yield its base URL."""
    from service.serving import ServeLimits, create_server, stop_server

    server = create_server(app, host, 0, ServeLimits(threads=threads))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.effective_port}"
    finally:
        stop_server(server, thread)
