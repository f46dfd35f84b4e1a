"""Databento's JSON encoding of MBO records, written from columns by one Numba kernel.

Byte for byte what ``databento_dbn.Transcoder`` / ``DBNStore.to_json(pretty_px=False,
pretty_ts=False, map_symbols=False)`` write for an MBO record (checked against databento in
``tests/test_service_encoders.py``)::

    {"ts_recv":"1609146088297109209","hd":{"ts_event":"1609146088297098637","rtype":160,
     "publisher_id":2,"instrument_id":6155},"action":"A","side":"B","price":"502000000000",
     "size":2,"channel_id":0,"order_id":"196851","flags":130,"ts_in_delta":10572,"sequence":289000}

(one line; 64-bit integers are strings, an undefined price is ``"9223372036854775807"``).
The kernel writes every record followed by a separator byte into a preallocated buffer and
returns the bytes written, so encoding a block costs one pass and no Python object per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit

__all__ = ["MAX_RECORD_BYTES", "encode_mbo_json", "mbo_json_arrays", "write_mbo_json"]

_PIECES = [
    b'{"ts_recv":"',
    b'","hd":{"ts_event":"',
    b'","rtype":160,"publisher_id":',
    b',"instrument_id":',
    b'},"action":"',
    b'","side":"',
    b'","price":"',
    b'","size":',
    b',"channel_id":',
    b',"order_id":"',
    b'","flags":',
    b',"ts_in_delta":',
    b',"sequence":',
    b"}",
]
_TEXT = np.frombuffer(b"".join(_PIECES), dtype=np.uint8).copy()
_OFFS = np.cumsum([0] + [len(p) for p in _PIECES]).astype(np.int64)
# digits: ts_recv 20, ts_event 20, publisher 5, instrument 10, action 1, side 1, price 20 (sign+19),
# size 10, channel 5, order_id 20, flags 5, ts_in_delta 11, sequence 20, separator 1
MAX_RECORD_BYTES = len(_TEXT) + 20 + 20 + 5 + 10 + 1 + 1 + 20 + 10 + 5 + 20 + 5 + 11 + 20 + 1
"""Upper bound of the bytes one record (and its separator) takes."""

_TEN = np.uint64(10)
_ZERO = np.uint64(0)
_ONE = np.uint64(1)


@njit(cache=True, nogil=True, inline="always")
def _piece(out, pos, k):  # pragma: no cover - compiled
    for j in range(_OFFS[k], _OFFS[k + 1]):
        out[pos] = _TEXT[j]
        pos += 1
    return pos


@njit(cache=True, nogil=True, inline="always")
def _uint(out, pos, v):  # pragma: no cover - compiled
    # v: uint64
    if v == _ZERO:
        out[pos] = 48
        return pos + 1
    n = 0
    t = v
    while t != _ZERO:
        t //= _TEN
        n += 1
    p = pos + n - 1
    while v != _ZERO:
        out[p] = np.uint8(48 + (v % _TEN))
        v //= _TEN
        p -= 1
    return pos + n


@njit(cache=True, nogil=True, inline="always")
def _int(out, pos, v):  # pragma: no cover - compiled
    # v: int64
    if v < 0:
        out[pos] = 45
        return _uint(out, pos + 1, np.uint64(-(v + 1)) + _ONE)
    return _uint(out, pos, np.uint64(v))


@njit(cache=True, nogil=True)
def encode_mbo_json(
    ts_recv, ts_event, publisher_id, instrument_id, action, side, price, size, channel_id,
    order_id, flags, ts_in_delta, sequence, sep, out,
):  # pragma: no cover - compiled  # fmt: skip
    """Write each record's JSON and ``sep`` into ``out``; return the bytes written.

    ``ts_recv``, ``ts_event``, ``order_id``: uint64; ``price``, ``ts_in_delta``: int64 (signed);
    ``publisher_id``, ``instrument_id``, ``size``, ``channel_id``, ``flags``, ``sequence``: uint64;
    ``action``, ``side``: uint8 ASCII; ``out`` holds at least ``n * MAX_RECORD_BYTES`` bytes.
    """
    pos = 0
    for i in range(len(ts_recv)):
        pos = _piece(out, pos, 0)
        pos = _uint(out, pos, ts_recv[i])
        pos = _piece(out, pos, 1)
        pos = _uint(out, pos, ts_event[i])
        pos = _piece(out, pos, 2)
        pos = _uint(out, pos, publisher_id[i])
        pos = _piece(out, pos, 3)
        pos = _uint(out, pos, instrument_id[i])
        pos = _piece(out, pos, 4)
        out[pos] = action[i]
        pos = _piece(out, pos + 1, 5)
        out[pos] = side[i]
        pos = _piece(out, pos + 1, 6)
        pos = _int(out, pos, price[i])
        pos = _piece(out, pos, 7)
        pos = _uint(out, pos, size[i])
        pos = _piece(out, pos, 8)
        pos = _uint(out, pos, channel_id[i])
        pos = _piece(out, pos, 9)
        pos = _uint(out, pos, order_id[i])
        pos = _piece(out, pos, 10)
        pos = _uint(out, pos, flags[i])
        pos = _piece(out, pos, 11)
        pos = _int(out, pos, ts_in_delta[i])
        pos = _piece(out, pos, 12)
        pos = _uint(out, pos, sequence[i])
        pos = _piece(out, pos, 13)
        out[pos] = sep
        pos += 1
    return pos


def _np(col: pa.Array) -> np.ndarray:
    if pa.types.is_timestamp(col.type):
        col = col.view(pa.int64())
    return col.to_numpy(zero_copy_only=False)


def _chars(col: pa.Array) -> np.ndarray:
    if isinstance(col, pa.DictionaryArray):
        values = col.dictionary.to_pylist()
        lut = np.array([ord(v[0]) if v else 32 for v in values] or [32], dtype=np.uint8)
        return lut[col.indices.to_numpy(zero_copy_only=False)]
    values = col.to_numpy(zero_copy_only=False).astype("S1")
    return values.view(np.uint8)


def mbo_json_arrays(batch: pa.RecordBatch) -> tuple[np.ndarray, ...]:
    """The kernel's 13 input arrays from a batch of :data:`engine.dbn.columns.MBO_SCHEMA` columns.

    Signed storage types are reinterpreted as the DBN field's unsigned type (e.g. ``order_id``
    int64 bits -> uint64), so values above 2**63 encode as databento writes them.
    """
    c = batch.column

    def u64(name: str, unsigned: type) -> np.ndarray:
        a = _np(c(batch.schema.get_field_index(name)))
        return (
            a.view(unsigned).astype(np.uint64, copy=False)
            if a.dtype.itemsize == np.dtype(unsigned).itemsize
            else a.astype(np.uint64)
        )

    return (
        u64("ts_recv", np.uint64),
        u64("ts_event", np.uint64),
        u64("publisher_id", np.uint16),
        u64("instrument_id", np.uint32),
        _chars(c(batch.schema.get_field_index("action"))),
        _chars(c(batch.schema.get_field_index("side"))),
        _np(c(batch.schema.get_field_index("price_raw"))).astype(np.int64, copy=False),
        u64("size", np.uint32),
        u64("channel_id", np.uint16),
        u64("order_id", np.uint64),
        u64("flags", np.uint16),
        _np(c(batch.schema.get_field_index("ts_in_delta"))).astype(np.int64, copy=False),
        _np(c(batch.schema.get_field_index("sequence"))).astype(np.uint64),
    )


def write_mbo_json(batch: pa.RecordBatch, sep: bytes = b"\n", out: np.ndarray | None = None) -> memoryview:
    """Databento JSON of every record in ``batch``, each followed by ``sep`` (one byte).

    ``out`` is a scratch buffer reused across calls when large enough. The returned view points
    into it: copy or send it before the next call.
    """
    n = batch.num_rows
    need = max(1, n * MAX_RECORD_BYTES)
    if out is None or len(out) < need:
        out = np.empty(need, dtype=np.uint8)
    if n == 0:
        return out[:0].data
    kernel: Any = encode_mbo_json
    written = kernel(*mbo_json_arrays(batch), np.uint8(sep[0]), out)
    return out[:written].data
