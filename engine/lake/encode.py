"""Encoding sorted stripes into standalone Parquet parts: stripe buffers, encoders.

A stripe (columns as NumPy arrays in a slot buffer) becomes one Parquet *part* whose row groups
are cut at symbol boundaries. Encoders own the slots and encode on threads of this process
(:class:`ThreadEncoder`) or in the pipeline's helper process (:func:`offload_spec`). The options
and the stripe columns live in :mod:`engine.lake.options`, which imports neither pyarrow nor Numba.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.dbn.columns import ACTION_DICT, MBO_SCHEMA, SIDE_DICT, string_array
from engine.lake.kernels import cut_row_groups
from engine.lake.options import ROW_BYTES, ROW_DTYPES, ParquetOptions, offload_spec

__all__ = [
    "ASSEMBLER_STATISTICS",
    "ROW_BYTES",
    "ROW_DTYPES",
    "ParquetOptions",
    "StripeEncoder",
    "StripeJob",
    "ThreadEncoder",
    "encode_job",
    "encode_stripe",
    "offload_spec",
    "set_worker_encoder",
    "stripe_buffers",
    "symbol_statistics",
    "to_batch",
    "worker_encoder",
]

_TS = pa.timestamp("ns", tz="UTC")


def stripe_buffers(capacity: int) -> dict[str, np.ndarray]:
    """Empty stripe columns for ``capacity`` rows."""
    return {name: np.empty(capacity, dtype=dt) for name, dt in ROW_DTYPES.items()}


def _prim(arr: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.Array.from_buffers(typ, len(arr), [None, pa.py_buffer(np.ascontiguousarray(arr))])


def to_batch(
    arrays: dict[str, np.ndarray], lo: int, hi: int, sym_codes: np.ndarray, sym_dict: pa.Array
) -> pa.RecordBatch:
    """Rows ``[lo, hi)`` of stripe columns as a :data:`MBO_SCHEMA` batch (zero copy but for codes).

    ``sym_codes`` are the symbol codes of these rows into ``sym_dict``.
    """
    cols = []
    for f in MBO_SCHEMA:
        name = f.name
        if name == "symbol":
            cols.append(pa.DictionaryArray.from_arrays(_prim(sym_codes, pa.int32()), sym_dict))
        elif name in ("action", "side"):
            codes = _prim(arrays[name][lo:hi].astype(np.int32), pa.int32())
            cols.append(pa.DictionaryArray.from_arrays(codes, ACTION_DICT if name == "action" else SIDE_DICT))
        else:
            cols.append(_prim(arrays[name][lo:hi], _TS if name in ("ts_event", "ts_recv") else f.type))
    return pa.RecordBatch.from_arrays(cols, schema=MBO_SCHEMA)


@dataclass
class StripeJob:
    """A sorted stripe to encode as a part (picklable; the columns travel in a slot).

    ``run_starts`` are the starts of the symbol runs followed by ``rows``; ``names`` the symbol
    of each run (the stripe's ``symbol`` column holds run indexes); ``part`` the file to write.
    """

    seq: int
    day: str
    rows: int
    run_starts: np.ndarray
    names: list[str]
    part: str
    options: ParquetOptions | None = None
    """The sink's options (row groups, encodings); None: the encoder's own."""


def _row_groups(job: StripeJob, options: ParquetOptions) -> Iterator[tuple[int, int, int, int]]:
    """``(lo, hi, j0, j1)`` of each row group of a stripe's part: its rows, and its symbol runs."""
    starts = job.run_starts
    runs = len(starts) - 1
    bounds = np.empty(runs + job.rows // max(options.max_row_group_rows, 1) + 2, dtype=np.int64)
    k = cut_row_groups(starts, runs, options.row_group_rows, options.max_row_group_rows, bounds)
    j0 = 0
    for g in range(k - 1):
        lo, hi = int(bounds[g]), int(bounds[g + 1])
        while starts[j0 + 1] <= lo:
            j0 += 1
        j1 = j0
        while starts[j1] < hi:
            j1 += 1
        yield lo, hi, j0, j1


ASSEMBLER_STATISTICS = ("symbol",)
"""Columns whose row-group statistics a stripe's part is written without, and the day file gets
from :func:`symbol_statistics` instead. pyarrow finds a dictionary column's min and max row by row
(26 vs 10 ns a row for ``symbol`` with and without); a row group's runs are in symbol order, so
its first and last run are its min and max."""


def symbol_statistics(job: StripeJob, options: ParquetOptions) -> list[tuple[bytes, bytes]]:
    """``(min, max)`` of ``symbol`` in each row group of the part :func:`encode_stripe` writes."""
    return [(job.names[j0].encode(), job.names[j1 - 1].encode()) for _, _, j0, j1 in _row_groups(job, options)]


def encode_stripe(arrays: dict[str, np.ndarray], job: StripeJob, options: ParquetOptions) -> int:
    """Write a sorted stripe as a standalone Parquet part, row groups cut at symbol runs, without
    the statistics of :data:`ASSEMBLER_STATISTICS` (see :func:`symbol_statistics`).

    Returns the number of row groups written.
    """
    groups = 0
    with pq.ParquetWriter(job.part, MBO_SCHEMA, **options.writer_kwargs(ASSEMBLER_STATISTICS)) as w:
        for lo, hi, j0, j1 in _row_groups(job, options):
            codes = arrays["symbol"][lo:hi] - np.int32(j0)
            batch = to_batch(arrays, lo, hi, codes, string_array(job.names[j0:j1]))
            w.write_batch(batch, row_group_size=hi - lo)
            groups += 1
    return groups


class StripeEncoder(Protocol):
    """Encodes sorted stripes into parts, possibly in parallel; owns the stripe slots.

    A sink takes a free slot (:meth:`acquire`), gathers a sorted stripe into it, then either
    :meth:`submit` s it or gives it back (:meth:`release`). :meth:`completed` returns finished
    jobs as ``(seq, error)`` (error None on success); the slot of a finished job is free.
    :class:`ThreadEncoder` encodes on threads of this process; the pipeline's
    :class:`engine.pipeline.offload.SlotChannel` in a helper process (see :func:`offload_spec`).
    """

    rows: int
    """Rows a slot holds."""

    def free_slots(self) -> int: ...

    def acquire(self) -> tuple[int, dict[str, np.ndarray]]: ...

    def release(self, slot: int) -> None: ...

    def submit(self, slot: int, job: StripeJob) -> None: ...

    def completed(self, block: bool) -> list[tuple[int, str | None]]: ...

    def close(self) -> None: ...


class ThreadEncoder:
    """Encodes stripes on a pool of threads of this process (pyarrow releases the GIL)."""

    def __init__(self, options: ParquetOptions) -> None:
        self.options = options
        self.rows = options.stripe_rows
        n = max(options.slots, 1)
        self._slots = [stripe_buffers(options.stripe_rows) for _ in range(n)]
        self._free = list(range(n))
        self._pool = ThreadPoolExecutor(max(options.encode_threads, 1), thread_name_prefix="parquet-encode")
        self._futures: dict[Future[int], tuple[int, StripeJob]] = {}

    def free_slots(self) -> int:
        return len(self._free)

    def acquire(self) -> tuple[int, dict[str, np.ndarray]]:
        slot = self._free.pop()
        return slot, self._slots[slot]

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def submit(self, slot: int, job: StripeJob) -> None:
        fut = self._pool.submit(encode_stripe, self._slots[slot], job, job.options or self.options)
        self._futures[fut] = (slot, job)

    def completed(self, block: bool) -> list[tuple[int, str | None]]:
        if not self._futures:
            return []
        done, _ = wait(list(self._futures), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        out: list[tuple[int, str | None]] = []
        for fut in done:
            slot, job = self._futures.pop(fut)
            self._free.append(slot)
            exc = fut.exception()
            out.append((job.seq, None if exc is None else f"{type(exc).__name__}: {exc}"))
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._slots = []


_WORKER_ENCODER: StripeEncoder | None = None


def set_worker_encoder(encoder: StripeEncoder | None) -> None:
    """Make ``encoder`` the one every :class:`~engine.lake.sink.ParquetSink` of this process uses (pipeline hook)."""
    global _WORKER_ENCODER
    _WORKER_ENCODER = encoder


def worker_encoder() -> StripeEncoder | None:
    """The encoder set by :func:`set_worker_encoder`, if any."""
    return _WORKER_ENCODER


def encode_job(arrays: dict[str, np.ndarray], job: StripeJob) -> None:
    """Encode one stripe job in a helper process (the :class:`OffloadSpec` handler)."""
    assert job.options is not None
    encode_stripe(arrays, job, job.options)
    pa.default_memory_pool().release_unused()  # keep the helper's footprint flat between stripes


def warm_encoder(options: ParquetOptions | None = None) -> None:
    """Encode a 2-row stripe once, to a temporary file removed after: the helper loads its Numba
    cache and pyarrow's writer while its worker decodes the first stripe, not after."""
    import tempfile

    arrays = {k: np.zeros(2, dtype=v.dtype) for k, v in stripe_buffers(2).items()}
    fd, part = tempfile.mkstemp(prefix=".datapair-warm-", suffix=".parquet")
    os.close(fd)
    try:
        encode_stripe(
            arrays,
            StripeJob(-1, "1970-01-01", 2, np.array([0, 2]), ["WARM"], part),
            options or ParquetOptions(),
        )
    finally:
        with contextlib.suppress(OSError):
            os.unlink(part)
