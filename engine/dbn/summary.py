"""A whole-file decode summary: metadata, counts per symbol and action, unmapped ids, time range.

Streams every record through the same reader and kernels as the ingest, so it doubles as a quick
check that a file is whole.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.dbn.columns import FileColumns, iter_column_blocks
from engine.dbn.kernels import ACTIONS
from engine.dbn.metadata import DEFAULT_BLOCK_BYTES

__all__ = ["inspect_file"]


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns")) + "Z"


def inspect_file(
    path: str | Path,
    block_bytes: int | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> dict:
    """Decode ``path`` completely and return its summary as a plain dict.

    ``progress(bytes_read, file_bytes, records)`` is called after each block.
    """
    state: list[FileColumns] = []
    by_symbol: Counter[str] = Counter()
    by_action = np.zeros(len(ACTIONS), dtype=np.int64)
    rows = 0
    first = last = None
    t0 = time.perf_counter()
    for block in iter_column_blocks(path, block_bytes or DEFAULT_BLOCK_BYTES, state=state):
        rows += len(block)
        codes = np.bincount(block.arrays["symbol"], minlength=len(block.symbols))
        for code in np.nonzero(codes)[0]:
            by_symbol[block.symbols[code]] += int(codes[code])
        by_action += np.bincount(block.arrays["action"], minlength=len(ACTIONS))
        ts = block.arrays["ts_recv"]
        first = int(ts[0]) if first is None else first
        last = int(ts[-1])
        if progress is not None:
            reader = state[0].reader
            progress(reader.bytes_read, reader.file_size, reader.records_read)
    seconds = time.perf_counter() - t0
    reader, symbology = state[0].reader, state[0].symbology
    md = reader.metadata
    return {
        "file": str(path),
        "version": md.version,
        "dataset": md.dataset,
        "schema": md.schema or "mixed",
        "start": _iso(md.start),
        "end": _iso(md.end) if md.end is not None else None,
        "ts_out": md.ts_out,
        "symbols_requested": len(md.symbols),
        "mappings": len(md.mappings),
        "records": rows,
        "other_records_skipped": reader.records_skipped,
        "unmapped_records": symbology.unmapped_records,
        "unmapped_ids": sorted(symbology.unmapped_ids),
        "first_ts_recv": _iso(first) if first is not None else None,
        "last_ts_recv": _iso(last) if last is not None else None,
        "by_symbol": dict(by_symbol.most_common()),
        "by_action": {a: int(n) for a, n in zip(ACTIONS, by_action, strict=True) if n},
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds) if seconds else None,
    }
