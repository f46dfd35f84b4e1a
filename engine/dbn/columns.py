"""The canonical ``mbo_ticks`` columns, and record blocks -> columns (NumPy and Arrow).

The schema is the one table of ../shared/DESIGN.md section 3, shared by the Parquet lake, the
QuestDB table and the service. Conversion is one Numba pass over each block
(:func:`engine.dbn.kernels.decode_records`); Arrow arrays wrap the NumPy buffers without copying.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from engine.dbn.kernels import (
    ACTION_CODES,
    ACTIONS,
    NS_PER_DAY,
    SIDE_CODES,
    SIDES,
    decode_records,
    keep_codes,
    scale_prices,
    split_days,
)
from engine.dbn.metadata import DEFAULT_BLOCK_BYTES
from engine.dbn.reader import DBNReader
from engine.dbn.symbology import Symbology
from engine.errors import DecodeError
from engine.stages import add as add_stage

__all__ = [
    "ACTION_DICT",
    "ANSWER_SCHEMA",
    "COLUMNS",
    "MBO_SCHEMA",
    "SIDE_DICT",
    "UNSIGNED",
    "ColumnBlock",
    "FileColumns",
    "iter_column_blocks",
    "polars_unsigned",
    "string_array",
    "unsigned_batch",
    "unsigned_schema",
]

_TS = pa.timestamp("ns", tz="UTC")
_DICT = pa.dictionary(pa.int32(), pa.string())

MBO_SCHEMA = pa.schema(
    [
        pa.field("ts_event", _TS, nullable=False),
        pa.field("symbol", _DICT, nullable=False),
        pa.field("instrument_id", pa.int32(), nullable=False),
        pa.field("publisher_id", pa.int16(), nullable=False),
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("price_raw", pa.int64(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("size", pa.int32(), nullable=False),
        pa.field("flags", pa.int16(), nullable=False),
        pa.field("channel_id", pa.int16(), nullable=False),
        pa.field("action", _DICT, nullable=False),
        pa.field("side", _DICT, nullable=False),
        pa.field("ts_recv", _TS, nullable=False),
        pa.field("ts_in_delta", pa.int32(), nullable=False),
        pa.field("sequence", pa.int64(), nullable=False),
    ]
)
"""Arrow schema of the lake files and of every batch the engine produces."""

UNSIGNED = {
    "instrument_id": pa.uint32(),
    "publisher_id": pa.uint16(),
    "order_id": pa.uint64(),
    "size": pa.uint32(),
    "flags": pa.uint8(),
    "channel_id": pa.uint8(),
    "sequence": pa.uint32(),
}
"""The DBN unsigned fields and their DBN types (databento's ``to_df`` dtypes).

The one rule for unsigned fields: storage is signed with the same bits (the lake's
:data:`MBO_SCHEMA` and QuestDB, which has no unsigned types: DESIGN.md section 3), and every
answer a user gets (``/data`` in any format, the chart API, the query CLI, OHLCV volumes) gives
them back in these types, so an ``order_id`` above 2**63 or a ``size`` above 2**31 reads the
same everywhere. :func:`unsigned_batch` (Arrow) and :func:`polars_unsigned` (Polars) convert.
"""

ANSWER_SCHEMA = pa.schema(
    [pa.field(f.name, UNSIGNED.get(f.name, f.type), nullable=f.nullable) for f in MBO_SCHEMA]
)
""":data:`MBO_SCHEMA` with the unsigned fields in their DBN types: the schema of answers."""


def _unsigned_array(arr: pa.Array, to: pa.DataType) -> pa.Array:
    if arr.type == to:
        return arr
    if arr.type.bit_width == to.bit_width:  # the same bits read as unsigned: no copy
        return pa.Array.from_buffers(to, len(arr), arr.buffers(), arr.null_count, arr.offset)
    return arr.cast(to, safe=False)  # a narrower DBN field (u8 flags, u32 sequence): the low bits


def unsigned_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` (any subset of the canonical columns) with the unsigned fields as :data:`UNSIGNED`."""
    if not any(n in UNSIGNED and batch.schema.field(n).type != UNSIGNED[n] for n in batch.schema.names):
        return batch
    cols = [
        _unsigned_array(c, UNSIGNED[n]) if n in UNSIGNED else c
        for n, c in zip(batch.schema.names, batch.columns, strict=True)
    ]
    fields = [
        pa.field(f.name, UNSIGNED[f.name], nullable=f.nullable) if f.name in UNSIGNED else f
        for f in batch.schema
    ]
    return pa.RecordBatch.from_arrays(cols, schema=pa.schema(fields, metadata=batch.schema.metadata))


def unsigned_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with the unsigned fields as :data:`UNSIGNED` (the schema :func:`unsigned_batch` gives)."""
    return pa.schema(
        [
            pa.field(f.name, UNSIGNED[f.name], nullable=f.nullable) if f.name in UNSIGNED else f
            for f in schema
        ],
        metadata=schema.metadata,
    )


def polars_unsigned(names: list[str]) -> list[object]:
    """Polars expressions giving the unsigned fields among ``names`` their DBN types (same bits)."""
    import polars as pl

    to = {"instrument_id": pl.UInt32, "publisher_id": pl.UInt16, "order_id": pl.UInt64, "size": pl.UInt32}
    narrow = {"flags": pl.UInt8, "channel_id": pl.UInt8, "sequence": pl.UInt32}
    out: list[object] = [pl.col(n).reinterpret(signed=False).cast(to[n]) for n in names if n in to]
    return out + [pl.col(n).cast(narrow[n], strict=False) for n in names if n in narrow]


COLUMNS = tuple(MBO_SCHEMA.names)


def string_array(values: Sequence[str]) -> pa.Array:
    """``values`` as an Arrow string array, built from its buffers.

    ``pa.array`` would import pandas (about 0.2 s) to check whether a list is a pandas object;
    the conversion paths never need pandas, so they build their few string arrays this way.
    """
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    )


ACTION_DICT = string_array(ACTIONS)
SIDE_DICT = string_array(SIDES)

_NUMERIC = {
    "instrument_id": np.int32, "publisher_id": np.int16, "ts_event": np.int64, "order_id": np.int64,
    "price_raw": np.int64, "size": np.int32, "flags": np.int16, "channel_id": np.int16,
    "action": np.int8, "side": np.int8, "ts_recv": np.int64, "ts_in_delta": np.int32, "sequence": np.int64,
}  # fmt: skip


def _wrap(arr: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A contiguous NumPy array as an Arrow array of ``typ`` (same width), without a copy."""
    arr = np.ascontiguousarray(arr)
    return pa.Array.from_buffers(typ, len(arr), [None, pa.py_buffer(arr)])


@dataclass
class ColumnBlock:
    """A block of MBO records as contiguous NumPy columns.

    ``symbol``, ``action`` and ``side`` hold dictionary codes into ``symbols``, :data:`ACTIONS`
    and :data:`SIDES`. Every array has the same length.
    """

    arrays: dict[str, np.ndarray]
    symbols: list[str]

    def __len__(self) -> int:
        return len(self.arrays["ts_event"])

    def take(self, index: np.ndarray | slice) -> ColumnBlock:
        """Rows by mask, index array or slice (slices stay views)."""
        return ColumnBlock({k: v[index] for k, v in self.arrays.items()}, self.symbols)

    @property
    def day(self) -> int:
        """UTC day (days since 1970) of the first record's ts_recv."""
        return int(self.arrays["ts_recv"][0] // NS_PER_DAY)

    def to_arrow(self, symbols: pa.Array | None = None) -> pa.RecordBatch:
        """A RecordBatch of :data:`MBO_SCHEMA`, zero copy over the NumPy columns."""
        a = self.arrays
        sym_dict = symbols if symbols is not None else string_array(self.symbols)
        cols = []
        for f in MBO_SCHEMA:
            name = f.name
            if name == "symbol":
                cols.append(pa.DictionaryArray.from_arrays(_wrap(a["symbol"], pa.int32()), sym_dict))
            elif name == "action":
                cols.append(
                    pa.DictionaryArray.from_arrays(
                        _wrap(a["action"].astype(np.int32), pa.int32()), ACTION_DICT
                    )
                )
            elif name == "side":
                cols.append(
                    pa.DictionaryArray.from_arrays(_wrap(a["side"].astype(np.int32), pa.int32()), SIDE_DICT)
                )
            else:
                cols.append(_wrap(a[name], f.type))
        return pa.RecordBatch.from_arrays(cols, schema=MBO_SCHEMA)


def convert_block(records: np.ndarray, symbology: Symbology, path: object = "<stream>") -> ColumnBlock:
    """Structured MBO records -> a :class:`ColumnBlock` (one Numba pass, then price and symbols)."""
    n = len(records)
    words = (
        records.view(np.uint64).reshape(n, records.dtype.itemsize // 8) if n else np.empty((0, 7), np.uint64)
    )
    arrays = {name: np.empty(n, dtype=dt) for name, dt in _NUMERIC.items()}
    bad = decode_records(
        words, ACTION_CODES, SIDE_CODES,
        arrays["instrument_id"], arrays["publisher_id"], arrays["ts_event"], arrays["order_id"],
        arrays["price_raw"], arrays["size"], arrays["flags"], arrays["channel_id"],
        arrays["action"], arrays["side"], arrays["ts_recv"], arrays["ts_in_delta"], arrays["sequence"],
    )  # fmt: skip
    if bad >= 0:
        rec = records[bad]
        msg = f"unknown action {rec['action']!r} or side {rec['side']!r} in MBO record {bad} of the block"
        raise DecodeError(path, None, msg)
    price = np.empty(n, dtype=np.float64)
    scale_prices(arrays["price_raw"], price)
    arrays["price"] = price
    arrays["symbol"] = symbology.resolve(arrays["instrument_id"], arrays["ts_recv"])
    return ColumnBlock(arrays, symbology.symbols)


@dataclass
class FileColumns:
    """What :func:`iter_column_blocks` read: reader and symbology, for summaries."""

    reader: DBNReader
    symbology: Symbology
    matched: set[str] = field(default_factory=set)
    """With a symbol filter: the wanted symbols that had rows."""


def iter_column_blocks(
    path: str | os.PathLike[str],
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    symbols: set[str] | None = None,
    state: list[FileColumns] | None = None,
    skip_bad_records: bool = False,
) -> Iterator[ColumnBlock]:
    """Stream a DBN file as column blocks, each within one UTC day of ts_recv.

    Parameters
    ----------
    path : path-like
        The DBN file.
    block_bytes : int
        Decompressed bytes per block.
    symbols : set of str, optional
        Keep only these symbols.
    state : list, optional
        If given, a :class:`FileColumns` is appended to it (reader and symbology), so callers
        can read counts after the iterator ends.
    skip_bad_records : bool
        Skip and count corrupt records instead of failing (see :class:`DBNReader`).
    """
    with DBNReader(path, block_bytes, skip_bad_records) as reader:
        symbology = Symbology.from_metadata(reader.metadata)
        if state is not None:
            state.append(FileColumns(reader, symbology))
        seen_mappings = 0
        bounds = np.empty(64, dtype=np.int64)
        for records in reader:
            c0, w0 = time.thread_time(), time.perf_counter()
            if len(reader.symbol_mappings) > seen_mappings:
                symbology.add_mapping_records(reader.symbol_mappings[seen_mappings:])
                seen_mappings = len(reader.symbol_mappings)
            block = convert_block(records, symbology, reader.path)
            if symbols is not None:
                wanted = np.zeros(len(symbology.symbols), dtype=np.bool_)
                for s in symbols:
                    if s in symbology._code_of:
                        wanted[symbology._code_of[s]] = True
                mask = np.empty(len(block), dtype=np.bool_)
                kept = keep_codes(block.arrays["symbol"], wanted, mask)
                if kept == 0:
                    add_stage("convert", time.thread_time() - c0, time.perf_counter() - w0)
                    continue
                if kept < len(block):
                    block = block.take(mask)
                if state is not None:
                    present = np.flatnonzero(np.bincount(block.arrays["symbol"], minlength=len(wanted)))
                    state[-1].matched.update(symbology.symbols[c] for c in present)
            ts = block.arrays["ts_recv"]
            if len(bounds) < len(ts) + 2:
                bounds = np.empty(len(ts) + 2, dtype=np.int64)
            k = split_days(ts, bounds)
            add_stage("convert", time.thread_time() - c0, time.perf_counter() - w0)
            if k == 2:
                yield block
            else:
                for j in range(k - 1):
                    yield block.take(slice(int(bounds[j]), int(bounds[j + 1])))
