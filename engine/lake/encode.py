"""Encoding sorted stripes into standalone Parquet parts: options, stripe buffers, encoders.

A stripe (columns as NumPy arrays in a slot buffer) becomes one Parquet *part* whose row groups
are cut at symbol boundaries. Encoders own the slots and encode on threads of this process
(:class:`ThreadEncoder`) or in the pipeline's helper process (:func:`offload_spec`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.dbn.columns import ACTION_DICT, COLUMNS, MBO_SCHEMA, SIDE_DICT, string_array
from engine.lake.kernels import cut_row_groups
from engine.pipeline.offload import OffloadSpec

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
ROW_DTYPES: dict[str, np.dtype] = {
    "ts_event": np.dtype(np.int64), "symbol": np.dtype(np.int32), "instrument_id": np.dtype(np.int32),
    "publisher_id": np.dtype(np.int16), "order_id": np.dtype(np.int64), "price_raw": np.dtype(np.int64),
    "price": np.dtype(np.float64), "size": np.dtype(np.int32), "flags": np.dtype(np.int16),
    "channel_id": np.dtype(np.int16), "action": np.dtype(np.int8), "side": np.dtype(np.int8),
    "ts_recv": np.dtype(np.int64), "ts_in_delta": np.dtype(np.int32), "sequence": np.dtype(np.int64),
}  # fmt: skip
"""NumPy dtype of each column in a stripe buffer (``symbol``/``action``/``side`` are codes)."""
ROW_BYTES = sum(dt.itemsize for dt in ROW_DTYPES.values())


@dataclass(frozen=True)
class ParquetOptions:
    """How lake files are encoded and laid out (picklable: it travels to worker processes).

    Parameters
    ----------
    stripe_rows : int
        Rows buffered, then ordered by symbol (stably: feed order within a symbol) and encoded
        together as one part.
    first_stripe_rows : int
        Rows of a file's first stripe; each next stripe doubles, up to ``stripe_rows``. The
        encoder waits for the first stripe: a 512K-row one kept it idle for the first ~0.25 s of
        every file (decoding, converting and sorting 512K rows), a 64K-row one for ~0.03 s.
    row_group_rows : int
        Target rows per row group: smaller symbols are packed together up to this size.
    max_row_group_rows : int
        Largest row group; a busy symbol's run is split evenly into groups up to this size.
    compression, compression_level : str, int
        Parquet codec (zstd) and its level, for the ``compressed_columns``; the others are written
        uncompressed: measured column by column on a generated day (the table is in the README),
        zstd costs 5-20 ns a row on a dictionary-encoded or delta-encoded column for 0-1 byte a
        row saved, and pays only on the plain columns whose values repeat within a row group.
    data_page_size : int
        Target bytes per data page.
    dictionary_columns : tuple of str
        Columns with dictionary encoding (few distinct values per row group, prices included: a row
        group is mostly one symbol); the others are plain (ids and flags, which zstd shrinks to
        nothing for less than a dictionary costs) ...
    delta_columns : tuple of str
        ... except these, DELTA_BINARY_PACKED (timestamps, sequence, order ids: small steps).
        Both encodings are read by every Parquet reader (DuckDB 1.x included).
    compressed_columns : tuple of str
        Columns compressed with ``compression``.
    statistics_columns : tuple of str
        Columns with min/max statistics in every row group (what readers filter on).
    encode_threads : int
        Threads of a :class:`ThreadEncoder` (and of an encoder process). One is enough beside a
        decoding process on two cores (decoding and encoding cost about the same) and keeps the
        process tree under 512 MiB; more threads help with more cores.
    slots : int
        Stripe slots of an encoder: stripes being encoded or waiting (``encode_threads + 1``
        keeps the encoder busy while the next stripe is sorted).
    steal : bool
        When the encoder process has no free slot, the decoding process encodes the stripe
        itself instead of waiting (both cores busy whichever stage is slower); so does it with a
        file's last stripe while the encoder is still busy with the one before.
    """

    stripe_rows: int = 512 * 1024
    first_stripe_rows: int = 64 * 1024
    row_group_rows: int = 64 * 1024
    max_row_group_rows: int = 128 * 1024
    compression: str = "zstd"
    compression_level: int = 1
    data_page_size: int = 1 << 20
    dictionary_columns: tuple[str, ...] = (
        "symbol", "action", "side", "price_raw", "price", "size", "ts_in_delta",
    )  # fmt: skip
    delta_columns: tuple[str, ...] = ("ts_event", "ts_recv", "sequence", "order_id")
    compressed_columns: tuple[str, ...] = ("instrument_id", "publisher_id", "channel_id", "flags")
    statistics_columns: tuple[str, ...] = (
        "ts_event",
        "symbol",
        "instrument_id",
        "order_id",
        "ts_recv",
        "sequence",
    )
    encode_threads: int = 1
    slots: int = 2
    steal: bool = True

    def writer_kwargs(self, skip_statistics: tuple[str, ...] = ()) -> dict[str, Any]:
        """Keyword arguments of :class:`pyarrow.parquet.ParquetWriter` (``skip_statistics``: columns
        whose statistics the caller writes itself)."""
        return {
            "compression": {
                c: (self.compression if c in self.compressed_columns else "none") for c in COLUMNS
            },
            "compression_level": {c: self.compression_level for c in self.compressed_columns},
            "use_dictionary": list(self.dictionary_columns),
            "column_encoding": {c: "DELTA_BINARY_PACKED" for c in self.delta_columns} or None,
            "write_statistics": [c for c in self.statistics_columns if c not in skip_statistics],
            "data_page_size": self.data_page_size,
            "write_page_index": False,  # parts are moved by offset (engine.lake.footer): no page index
            "sorting_columns": [pq.SortingColumn(COLUMNS.index("symbol"))],  # then feed order
        }


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


def offload_spec(options: ParquetOptions) -> OffloadSpec:
    """The helper process the pipeline pairs with each file worker to encode its stripes."""
    return OffloadSpec(
        dtypes=ROW_DTYPES,
        rows=options.stripe_rows,
        slots=options.slots,
        threads=options.encode_threads,
        handler=encode_job,
        install=set_worker_encoder,
        name="Parquet encoder",
        warm=warm_encoder,
    )
