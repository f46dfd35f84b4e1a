"""Response bodies for ``/data``: streamed chunk by chunk from key-ordered record batches.

=========  ===================================  =================================================
format     media type                           body
=========  ===================================  =================================================
json       application/json                     ``[rec,rec,...]``: each ``rec`` byte for byte
                                                databento's JSON encoding (:mod:`service.dbjson`)
ndjson     application/x-ndjson                 one databento JSON record per line (what
                                                ``DBNStore.to_json`` writes)
csv        text/csv                             the canonical columns (DESIGN.md section 3) with a
                                                header; timestamps as integer ns, ``price`` empty
                                                when undefined, ``price_raw`` beside it
arrow      application/vnd.apache.arrow.stream  Arrow IPC stream of ``ANSWER_SCHEMA`` batches
parquet    application/vnd.apache.parquet       a Parquet file of ``ANSWER_SCHEMA``, one row group
                                                per batch
=========  ===================================  =================================================

Every encoder holds one batch at a time, so memory does not grow with the answer. Every format
gives the DBN unsigned fields (``order_id``, ``size``, ``instrument_id``, ...) unsigned
(:data:`engine.dbn.columns.UNSIGNED`): the stores keep them signed with the same bits.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from engine.dbn.columns import MBO_SCHEMA, unsigned_batch, unsigned_schema
from engine.errors import QueryError
from service.dbjson import MAX_RECORD_BYTES, write_mbo_json
from service.errors import NotAcceptableError

__all__ = ["ARROW_STREAM", "FORMATS", "MEDIA_TYPES", "encode", "negotiate", "to_csv_table"]

ARROW_STREAM = "application/vnd.apache.arrow.stream"
FORMATS = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "arrow": ARROW_STREAM,
    "parquet": "application/vnd.apache.parquet",
}
"""Format name -> Content-Type."""

MEDIA_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json-seq": "ndjson",
    "text/csv": "csv",
    "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
}
"""Accept media type -> format name."""


def negotiate(fmt: object, accept: str | None, default: str = "json") -> str:
    """The format of an answer: the ``format`` parameter if given, else the Accept header.

    Raises
    ------
    QueryError
        ``format`` is not one of :data:`FORMATS` (HTTP 400).
    NotAcceptableError
        Accept names only media types we cannot write (HTTP 406).
    """
    if fmt is not None:
        if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
            msg = f"`format` must be one of {', '.join(FORMATS)}, got {fmt!r}"
            raise QueryError(msg)
        return fmt.lower()
    if not accept:
        return default
    wildcard = False
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) <= 0:
                continue
        except ValueError:
            pass
        if media in MEDIA_TYPES:
            return MEDIA_TYPES[media]
        if media in ("*/*", "application/*", "text/*", ""):
            wildcard = True
    if wildcard:
        return default
    msg = f"none of the media types in Accept ({accept!r}) can be produced; use one of {', '.join(sorted(MEDIA_TYPES))} or the `format` parameter"
    raise NotAcceptableError(msg)


class _Drain(io.RawIOBase):
    """A write-only file that hands its bytes over on :meth:`take` (for Arrow and Parquet writers)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        data = bytes(b)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts = []
        return out


def _json(batches: Iterable[pa.RecordBatch], array: bool) -> Iterator[bytes]:
    scratch = np.empty(0, dtype=np.uint8)
    if not array:
        for b in batches:
            if b.num_rows:
                if len(scratch) < b.num_rows * MAX_RECORD_BYTES:
                    scratch = np.empty(b.num_rows * MAX_RECORD_BYTES, dtype=np.uint8)
                yield bytes(write_mbo_json(b, b"\n", scratch))
        return
    # Array: every record is followed by ","; a chunk is held back until the next one shows it
    # was not the last, so the last chunk alone loses its "," (no extra tiny chunks).
    pending = b"["
    for b in batches:
        if b.num_rows:
            if len(scratch) < b.num_rows * MAX_RECORD_BYTES:
                scratch = np.empty(b.num_rows * MAX_RECORD_BYTES, dtype=np.uint8)
            chunk = bytes(write_mbo_json(b, b",", scratch))
            yield pending
            pending = chunk
    yield (pending[:-1] if pending != b"[" else pending) + b"]"


def to_csv_table(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch with timestamps as int64 ns and dictionaries as strings, for CSV."""
    cols = []
    for f, col in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_timestamp(f.type):
            col = col.view(pa.int64())
        elif pa.types.is_dictionary(f.type):
            col = col.cast(pa.string())
        elif f.name == "price":
            col = pa.array(col.to_numpy(zero_copy_only=False), from_pandas=True)  # NaN -> null (empty cell)
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _csv(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[bytes]:
    yield (",".join(f'"{n}"' for n in schema.names) + "\n").encode()
    opts = pacsv.WriteOptions(include_header=False)
    for b in batches:
        if b.num_rows == 0:
            continue
        sink = io.BytesIO()
        pacsv.write_csv(to_csv_table(b), sink, opts)
        yield sink.getvalue()


def _arrow(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[bytes]:
    sink = _Drain()
    writer = ipc.new_stream(sink, schema)
    try:
        for b in batches:
            writer.write_batch(b)
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()


def _parquet(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[bytes]:
    sink = _Drain()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    try:
        for b in batches:
            if b.num_rows:
                writer.write_batch(b)
                yield sink.take()
    finally:
        writer.close()
    yield sink.take()


def encode(fmt: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema = MBO_SCHEMA) -> Iterator[bytes]:
    """The body of a ``/data`` answer in ``fmt`` as a stream of byte chunks."""
    if fmt == "json":
        return _json(batches, array=True)
    if fmt == "ndjson":
        return _json(batches, array=False)
    if fmt in ("csv", "arrow", "parquet"):
        unsigned = (unsigned_batch(b) for b in batches)
        return {"csv": _csv, "arrow": _arrow, "parquet": _parquet}[fmt](unsigned, unsigned_schema(schema))
    msg = f"`format` must be one of {', '.join(FORMATS)}, got {fmt!r}"
    raise QueryError(msg)
