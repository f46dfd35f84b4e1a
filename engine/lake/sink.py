"""The Parquet lake sink: column blocks of one source file -> ``mbo_YYYY-MM-DD.parquet`` files.

Rows are buffered in *stripes* (half a million rows, a file's first ones 64K, 128K and 256K so
the encoder starts early; in arrival order, inside one UTC day of ts_recv). A full stripe is
ordered by symbol with a stable Numba counting sort (each symbol's rows keep feed order) straight
into an encoder slot, and encoded as a standalone Parquet *part* whose row groups are cut at
symbol boundaries (:mod:`engine.lake.kernels`): a busy symbol gets row groups of its own whose
``symbol`` min equals max, and each stripe covers a short stretch of time, so row-group
statistics prune by symbol and by time. Parts are encoded in parallel (threads here, or an
encoder process: :mod:`engine.pipeline.pool`) and appended in order to the day's file by a
:class:`~engine.lake.footer.PartAssembler`. Memory is one stripe buffer plus a few slots, whatever the
size of the day.

Everything is written under temporary names (the files: :mod:`engine.lake.outputs`);
:meth:`ParquetSink.close` writes the footers (with
the row counts) and renames each file into place while holding the lake's lock. If a day file
already holds rows of *another* source file (two inputs that share a UTC day), those rows are
copied into the new file, so a day file always holds every row of its day.
:meth:`ParquetSink.abort` removes the temporary files.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.dbn.columns import ColumnBlock, string_array
from engine.errors import SinkError
from engine.lake.encode import (
    ROW_DTYPES,
    ParquetOptions,
    StripeEncoder,
    StripeJob,
    ThreadEncoder,
    encode_stripe,
    stripe_buffers,
    symbol_statistics,
    to_batch,
    worker_encoder,
)
from engine.lake.kernels import gather_rows, invert_permutation, scatter_rows, sort_by_symbol
from engine.lake.layout import SourceEntry, day_text, lake_file_name, lake_lock, temp_path
from engine.lake.outputs import DayFile, SymbolFile, commit_output
from engine.pipeline.sinks import FileSink, SinkResult
from engine.stages import add as add_stage
from engine.stages import stage

__all__ = ["ParquetSink", "commit_output"]  # commit_output: engine.lake.outputs (tests patch it here)

SCATTER_MAX_RUNS = 1024
"""A stripe of at most this many symbol runs is put in symbol order by scattering its rows (read in
arrival order, one sequential write stream per run), a larger one by gathering them. 14 columns of
512K rows: 8 symbols 8.6 vs 13.0 ms, 512 symbols 15.7 vs 32.1 ms, 2,048 22.0 vs 21.9 ms, 11,000
(Zipf, a full XNAS day) 20.2 vs 17.1 ms (scatter vs gather)."""

MIN_SPLIT_ROWS = 16 * 1024
"""A file's last stripe, with the encoder idle, is split between it and this process only when
each half has at least this many rows (below, the split costs more than it saves)."""


def _reorder(perm: np.ndarray, runs: int) -> Callable[[np.ndarray, np.ndarray], object]:
    """``move(src, dst)``: ``dst = src[perm]``, by scatter or gather (:data:`SCATTER_MAX_RUNS`)."""
    if runs > SCATTER_MAX_RUNS:
        return lambda src, dst: gather_rows(src, perm, dst)
    dest = np.empty(len(perm), dtype=np.int64)
    invert_permutation(perm, dest)
    return lambda src, dst: scatter_rows(src, dest, dst)


class ParquetSink(FileSink):
    """Writes the column blocks of one source file into the lake.

    Parameters
    ----------
    out_dir : path-like
        The lake directory (created if missing).
    source : SourceEntry
        The source file's identity (name, size, mtime_ns, symbol filter), stored in every footer.
    day_files : bool
        Write ``mbo_YYYY-MM-DD.parquet``.
    by_symbol : bool
        Write ``mbo_SYMBOL_YYYY-MM-DD.parquet``.
    options : ParquetOptions
        Layout and encoding.
    encoder : StripeEncoder, optional
        Where stripes are encoded (shared, e.g. an encoder process); by default the one set by
        :func:`set_worker_encoder`, else a private :class:`ThreadEncoder`.
    replace_damaged : bool
        Replace a day file that cannot be read or is incomplete (``--force``); otherwise that is
        refused, since the rows of its other sources would be lost.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        source: SourceEntry,
        *,
        day_files: bool = True,
        by_symbol: bool = False,
        options: ParquetOptions | None = None,
        encoder: StripeEncoder | None = None,
        replace_damaged: bool = False,
    ) -> None:
        if not (day_files or by_symbol):
            msg = "ParquetSink needs day_files or by_symbol (or both)"
            raise ValueError(msg)
        self.replace_damaged = replace_damaged
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.day_files = day_files
        self.by_symbol = by_symbol
        self.options = options or ParquetOptions()
        enc = encoder or worker_encoder()
        if enc is not None and enc.rows < self.options.stripe_rows:
            msg = f"encoder slots hold {enc.rows} rows, the sink needs {self.options.stripe_rows}"
            raise ValueError(msg)
        self._own_encoder = enc is None
        self.encoder: StripeEncoder = enc or ThreadEncoder(self.options)
        # With an encoder in another process, a stripe that finds every slot busy is encoded here
        # instead of waiting, so both cores stay busy whichever stage is the slower one.
        self._may_steal = not self._own_encoder and self.options.steal
        self.stolen = 0
        """Stripes encoded in this process because the encoder's slots were all busy."""
        self._scratch: np.ndarray | None = None  # one column, for stripes encoded here (work stealing)
        self._buf = stripe_buffers(self.options.stripe_rows)  # arrival order, then sorted into a slot
        self._fill = 0
        self._cap = min(self.options.first_stripe_rows, self.options.stripe_rows)  # this stripe's rows
        self._day: int | None = None
        self._symbols: list[str] = []
        self._rank_len = -1
        self._order = np.empty(0, np.int64)
        self._rank = np.empty(0, np.int32)
        self._days: dict[str, DayFile] = {}
        self._inflight: dict[int, StripeJob] = {}
        self._done: dict[int, tuple[str, list[tuple[bytes, bytes]]]] = {}  # seq -> (part, symbol min/max per row group)
        self._seq = 0
        self._symbol_files: dict[tuple[str, str], SymbolFile] = {}
        self._pending: dict[tuple[str, str], list[dict[str, np.ndarray]]] = {}
        self._pending_count: dict[tuple[str, str], int] = {}
        self._pending_rows = 0
        self.rows_by_day: dict[str, int] = {}
        self.rows = 0
        self._closed = False

    # -- FileSink --------------------------------------------------------------------------------
    def write(self, block: ColumnBlock) -> None:
        n = len(block)
        if n == 0:
            return
        self._symbols = block.symbols
        day = block.day
        if self._day is not None and day != self._day:
            self._flush_stripe()
        self._day = day
        done = 0
        while done < n:
            take = min(n - done, self._cap - self._fill)
            for name, dst in self._buf.items():
                dst[self._fill : self._fill + take] = block.arrays[name][done : done + take]
            self._fill += take
            done += take
            if self._fill == self._cap:
                self._flush_stripe()
        d = day_text(day)
        self.rows_by_day[d] = self.rows_by_day.get(d, 0) + n
        self.rows += n

    def source_done(self, bad_records: int) -> None:
        self.source = replace(self.source, bad_records=bad_records)

    def close(self) -> SinkResult:
        try:
            self._flush_stripe(last=True)
            while self._inflight:
                self._collect(block=True)
            for key in list(self._pending):
                self._flush_pending(key)
            source = replace(self.source, rows_by_day=dict(self.rows_by_day))
            with stage("write"), lake_lock(self.out_dir):
                outs: list[DayFile | SymbolFile] = [*self._days.values(), *self._symbol_files.values()]
                outputs = [str(commit_output(out, source, self.replace_damaged)) for out in outs]
        except BaseException:
            self.abort()
            raise
        self._days.clear()
        self._symbol_files.clear()
        self._release()
        return SinkResult(rows=self.rows, rows_by_day=dict(self.rows_by_day), outputs=outputs)

    def abort(self) -> None:
        while self._inflight:
            with contextlib.suppress(SinkError):
                self._collect(block=True)
        for part, _ in self._done.values():
            Path(part).unlink(missing_ok=True)
        self._done.clear()
        outs: list[DayFile | SymbolFile] = [*self._days.values(), *self._symbol_files.values()]
        for out in outs:
            out.discard()
        self._days.clear()
        self._symbol_files.clear()
        self._pending.clear()
        self._release()

    def _release(self) -> None:
        if self._own_encoder and not self._closed:
            self.encoder.close()
        self._closed = True

    # -- stripes ---------------------------------------------------------------------------------
    def _ranks(self) -> np.ndarray:
        if self._rank_len != len(self._symbols):
            m = len(self._symbols)
            self._order = np.argsort(np.array(self._symbols, dtype=object), kind="stable").astype(np.int64)
            self._rank = np.empty(m, dtype=np.int32)
            self._rank[self._order] = np.arange(m, dtype=np.int32)
            self._rank_len = m
        return self._rank

    def _collect(self, block: bool) -> None:
        """Take finished parts from the encoder and append the ready ones to their day files."""
        failed = None
        with stage("wait") if block else contextlib.nullcontext():
            finished = self.encoder.completed(block=block)
        for seq, error in finished:
            job = self._inflight.pop(seq, None)
            if job is None:
                continue
            if error is not None:
                Path(job.part).unlink(missing_ok=True)
                failed = failed or f"{self.source.name}: encoding a stripe of {job.day} failed: {error}"
                continue
            self._part_done(job)
            if failed is None:
                self._days[job.day].append_ready(self._done)
        if failed is not None:
            raise SinkError(failed)

    def _part_done(self, job: StripeJob) -> None:
        """A stripe's part is written: keep it, with the symbol statistics its day file gets for it."""
        self._done[job.seq] = (job.part, symbol_statistics(job, job.options or self.options))

    def _flush_stripe(self, last: bool = False) -> None:
        """Sort the buffered stripe by symbol and encode it: in the encoder, or here when the
        encoder has no free slot. A file's ``last`` stripe is encoded here while the encoder is
        still busy with the one before; with the encoder idle, each takes half of it."""
        n = self._fill
        if n == 0:
            return
        self._collect(block=False)
        steal = self.day_files and self._may_steal
        if steal and last and not self._inflight and n >= 2 * MIN_SPLIT_ROWS:
            self._encode_rows(0, n // 2, local=False)
            self._encode_rows(n // 2, n, local=True)
        else:
            busy = self.encoder.free_slots() == 0 or (last and bool(self._inflight))
            self._encode_rows(0, n, local=steal and busy)
        self._fill = 0
        self._cap = min(self._cap * 2, self.options.stripe_rows)

    def _encode_rows(self, lo: int, hi: int, local: bool) -> None:
        """Rows ``[lo, hi)`` of the stripe buffer, ordered by symbol, as one part: encoded here
        (``local``) or handed to the encoder."""
        assert self._day is not None
        n = hi - lo
        buf = {k: v[lo:hi] for k, v in self._buf.items()}
        rank = self._ranks()
        perm = np.empty(n, dtype=np.int64)
        run_ranks = np.empty(len(rank) + 1, dtype=np.int64)
        run_starts = np.empty(len(rank) + 1, dtype=np.int64)
        c0, w0 = time.thread_time(), time.perf_counter()
        runs = sort_by_symbol(buf["symbol"], rank, perm, run_ranks, run_starts)
        starts = run_starts[: runs + 1].copy()
        names = [self._symbols[self._order[r]] for r in run_ranks[:runs]]
        day = day_text(self._day)
        move = _reorder(perm, runs)
        if local:  # permuted in place through one column's scratch (no second stripe buffer to hold)
            slot, out = -1, buf
            if self._scratch is None:
                self._scratch = np.empty(self.options.stripe_rows * 8, dtype=np.uint8)
            for name, col in buf.items():
                if name != "symbol":
                    tmp = self._scratch[: n * col.itemsize].view(col.dtype)
                    move(col, tmp)
                    col[:] = tmp
        else:
            while self.encoder.free_slots() == 0:
                self._collect(block=True)
            slot, out = self.encoder.acquire()
            for name, src in buf.items():
                if name != "symbol":
                    move(src, out[name][:n])
        out["symbol"][:n] = np.repeat(np.arange(runs, dtype=np.int32), np.diff(starts))
        add_stage("sort", time.thread_time() - c0, time.perf_counter() - w0)
        if self.by_symbol:
            for j, sym in enumerate(names):
                a, b = int(starts[j]), int(starts[j + 1])
                self._add_pending(day, sym, {k: v[a:b].copy() for k, v in out.items()})
        if not self.day_files:
            self.encoder.release(slot)
            return
        f = self._days.get(day)
        if f is None:
            f = self._days[day] = DayFile(self.out_dir / lake_file_name(day), day)
        seq = self._seq
        self._seq += 1
        job = StripeJob(seq, day, n, starts, names, str(temp_path(f.final)), self.options)
        f.order.append(seq)
        if not local:
            self._inflight[seq] = job
            self.encoder.submit(slot, job)
            return
        try:
            with stage("encode"):
                encode_stripe(out, job, self.options)
        except Exception:
            Path(job.part).unlink(missing_ok=True)
            raise
        self.stolen += 1
        self._part_done(job)
        f.append_ready(self._done)

    # -- per-symbol files ------------------------------------------------------------------------
    def _add_pending(self, day: str, symbol: str, part: dict[str, np.ndarray]) -> None:
        key = (day, symbol)
        self._pending.setdefault(key, []).append(part)
        n = len(part["ts_event"])
        self._pending_count[key] = self._pending_count.get(key, 0) + n
        self._pending_rows += n
        if self._pending_count[key] >= self.options.row_group_rows:
            self._flush_pending(key)
        while self._pending_rows > self.options.stripe_rows:
            self._flush_pending(max(self._pending_count, key=self._pending_count.__getitem__))

    def _flush_pending(self, key: tuple[str, str]) -> None:
        parts = self._pending.pop(key)
        rows = self._pending_count.pop(key)
        self._pending_rows -= rows
        # stripes in arrival order, each symbol's rows in feed order: concatenated, still feed order
        cols = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in ROW_DTYPES}
        day, symbol = key
        out = self._symbol_files.get(key)
        if out is None:
            final = self.out_dir / lake_file_name(day, symbol)
            out = self._symbol_files[key] = SymbolFile(final, day, symbol, self.options)
        step = self.options.max_row_group_rows
        for lo in range(0, rows, step):
            hi = min(lo + step, rows)
            codes = np.zeros(hi - lo, dtype=np.int32)
            out.write(to_batch(cols, lo, hi, codes, string_array([symbol])))
