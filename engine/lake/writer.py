"""Write a lake file from batches already in (symbol, ...) order, row groups cut at symbol runs.

The QuestDB export feeds it rows sorted by symbol; small symbols are packed together into row
groups, a busy symbol's rows fill row groups of their own, as the ingest lays them out.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.dbn.columns import MBO_SCHEMA
from engine.lake.options import ParquetOptions

__all__ = ["RunWriter"]


class RunWriter:
    """Writes batches sorted by symbol (each symbol's rows in feed order) as row groups cut at symbol boundaries.

    Small symbols are packed together up to ``row_group_rows``; a busy symbol's rows fill row
    groups of its own of at most ``max_row_group_rows``, as the ingest lays them out.
    """

    def __init__(self, path: Path, options: ParquetOptions) -> None:
        self.options = options
        self.writer = pq.ParquetWriter(path, MBO_SCHEMA, **options.writer_kwargs())
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_symbols: set[str] = set()
        self.pending_last = ""
        self.rows = 0
        self.row_groups = 0

    def flush(self, limit: int | None = None) -> None:
        """Write the pending rows as one row group (only the first ``limit`` rows, if given).

        Rows left over by ``limit`` are the tail of the last run (one symbol) and stay pending.
        """
        if not self.pending_rows:
            return
        table = pa.Table.from_batches(self.pending, schema=MBO_SCHEMA)
        rest = None
        if limit is not None and table.num_rows > limit:
            table, rest = table.slice(0, limit), table.slice(limit)
        self.writer.write_table(table.unify_dictionaries(), row_group_size=max(table.num_rows, 1))
        self.rows += table.num_rows
        self.row_groups += 1
        last = self.pending_last
        self.pending, self.pending_rows, self.pending_symbols = [], 0, set()
        if rest is not None and rest.num_rows:
            self.pending = rest.to_batches()
            self.pending_rows = rest.num_rows
            self.pending_symbols = {last}

    def _add_run(self, run: pa.RecordBatch, symbol: str) -> None:
        o = self.options
        if (
            self.pending_rows
            and symbol not in self.pending_symbols
            and self.pending_rows + run.num_rows > o.row_group_rows
        ):
            self.flush()
        self.pending.append(run)
        self.pending_rows += run.num_rows
        self.pending_symbols.add(symbol)
        self.pending_last = symbol
        while self.pending_rows >= o.max_row_group_rows:
            self.flush(o.max_row_group_rows)

    def write(self, batch: pa.RecordBatch) -> None:
        """Add rows; ``batch`` must continue the symbol order of the previous ones."""
        if batch.num_rows == 0:
            return
        sym = batch.column(1)
        codes = sym.indices.to_numpy(zero_copy_only=False)
        cuts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        bounds = [0, *cuts.tolist(), len(codes)]
        names = sym.dictionary.to_pylist()
        for lo, hi in itertools.pairwise(bounds):
            self._add_run(batch.slice(lo, hi - lo), names[codes[lo]])

    def close(self, metadata: dict[str, str]) -> None:
        self.flush()
        self.writer.add_key_value_metadata(metadata)
        self.writer.close()

    def discard(self) -> None:
        with contextlib.suppress(Exception):  # the file is thrown away
            self.writer.close()
