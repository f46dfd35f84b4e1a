"""The DBN metadata header (v1, v2, v3) and the MBO record layout, as databento's decoder reads them."""

from __future__ import annotations

import datetime as dt
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from engine.dbn.stream import open_stream, read_exact, read_upto
from engine.defaults import DEFAULT_BLOCK_BYTES
from engine.errors import DecodeError

__all__ = [
    "CONTROL_RTYPES",
    "DEFAULT_BLOCK_BYTES",
    "MAX_RECORD_BYTES",
    "MBO_DTYPE",
    "MBO_DTYPE_TS_OUT",
    "MIN_RECORD_BYTES",
    "NS_PER_DAY",
    "RTYPE_ERROR",
    "RTYPE_MBO",
    "RTYPE_SYMBOL_MAPPING",
    "RTYPE_SYSTEM",
    "SCHEMAS",
    "STYPES",
    "UNDEF_PRICE",
    "UNDEF_TIMESTAMP",
    "MappingInterval",
    "Metadata",
    "SymbolMapping",
    "cstr",
    "parse_metadata",
    "read_metadata",
]

MBO_DTYPE = np.dtype(
    [
        ("length", "u1"),
        ("rtype", "u1"),
        ("publisher_id", "<u2"),
        ("instrument_id", "<u4"),
        ("ts_event", "<u8"),
        ("order_id", "<u8"),
        ("price", "<i8"),
        ("size", "<u4"),
        ("flags", "u1"),
        ("channel_id", "u1"),
        ("action", "S1"),
        ("side", "S1"),
        ("ts_recv", "<u8"),
        ("ts_in_delta", "<i4"),
        ("sequence", "<u4"),
    ]
)
"""One MBO record, 56 bytes, as the databento decoder lays it out."""

MBO_DTYPE_TS_OUT = np.dtype([*MBO_DTYPE.descr, ("ts_out", "<u8")])
"""An MBO record of a ``ts_out = 1`` file: 8 more bytes, the gateway's send time."""

RTYPE_MBO = 0xA0
RTYPE_SYMBOL_MAPPING = 0x16
RTYPE_ERROR = 0x15
RTYPE_SYSTEM = 0x17
CONTROL_RTYPES = frozenset({RTYPE_ERROR, RTYPE_SYMBOL_MAPPING, RTYPE_SYSTEM})
"""Records a live-recorded MBO file may carry beside MBO records (error, symbol mapping, system)."""
MIN_RECORD_BYTES = 16
"""The smallest record DBN has: the record header alone (length, rtype, publisher, instrument, ts_event)."""
UNDEF_PRICE = 2**63 - 1
UNDEF_TIMESTAMP = 2**64 - 1
NS_PER_DAY = 86_400 * 1_000_000_000
"""Nanoseconds in a UTC day: ``ts // NS_PER_DAY`` numbers the day of a timestamp."""
MAX_RECORD_BYTES = 255 * 4
SCHEMA_MIXED = 0xFFFF

SCHEMAS = (
    "mbo", "mbp-1", "mbp-10", "tbbo", "trades", "ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d",
    "definition", "statistics", "status", "imbalance", "ohlcv-eod", "cmbp-1", "cbbo-1s", "cbbo-1m",
    "tcbbo", "bbo-1s", "bbo-1m",
)  # fmt: skip
STYPES = (
    "instrument_id", "raw_symbol", "smart", "continuous", "parent", "nasdaq_symbol", "cms_symbol",
    "isin", "us_code", "bbg_comp_id", "bbg_comp_ticker", "figi", "figi_ticker",
)  # fmt: skip

_FIXED_LEN = 100  # metadata fixed part after the 8-byte prelude, up to schema_definition_length


@dataclass(frozen=True)
class MappingInterval:
    """``symbol`` (an instrument id as text for stype_out instrument_id) holds on [start_date, end_date)."""

    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass(frozen=True)
class SymbolMapping:
    """All the intervals of one raw symbol."""

    raw_symbol: str
    intervals: tuple[MappingInterval, ...]


@dataclass(frozen=True)
class Metadata:
    """The DBN metadata header, as the databento decoder reads it."""

    version: int
    dataset: str
    schema: str | None
    start: int
    end: int | None
    limit: int | None
    stype_in: str | None
    stype_out: str
    ts_out: bool
    symbol_cstr_len: int
    symbols: tuple[str, ...] = ()
    partial: tuple[str, ...] = ()
    not_found: tuple[str, ...] = ()
    mappings: tuple[SymbolMapping, ...] = ()
    record_count: int | None = None
    header_bytes: int = field(default=0, compare=False)

    @property
    def record_dtype(self) -> np.dtype:
        """The dtype of this file's MBO records (56 bytes, or 64 with ``ts_out``)."""
        return MBO_DTYPE_TS_OUT if self.ts_out else MBO_DTYPE


def cstr(buf: bytes) -> str:
    return buf.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _yyyymmdd(value: int, path: Path, offset: int) -> dt.date:
    try:
        return dt.date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        raise DecodeError(path, offset, f"bad mapping date {value}, expected YYYYMMDD") from None


class _Cursor:
    """Reads the variable part of the metadata header, raising DecodeError on truncation."""

    def __init__(self, buf: bytes, base: int, path: Path) -> None:
        self.buf, self.pos, self.base, self.path = buf, 0, base, path

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.buf):
            raise DecodeError(
                self.path, self.base + self.pos, f"truncated header: expected {n} bytes of {what}"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")

    def strings(self, width: int, what: str) -> tuple[str, ...]:
        count = self.u32(f"{what} count")
        return tuple(cstr(self.take(width, what)) for _ in range(count))


def parse_metadata(stream: BinaryIO, path: Path) -> Metadata:
    prelude = read_upto(stream, 8, path, 0)
    if len(prelude) < 3 or prelude[:3] != b"DBN":
        found = prelude[:3]
        raise DecodeError(path, 0, f"not a DBN file: expected magic b'DBN', found {found!r}")
    if len(prelude) < 8:
        raise DecodeError(
            path, len(prelude), "truncated header: expected 8-byte prelude (magic, version, length)"
        )
    version = prelude[3]
    if version not in (1, 2, 3):
        raise DecodeError(path, 3, f"unsupported DBN version {version}, expected 1, 2 or 3")
    length = int.from_bytes(prelude[4:8], "little")
    body = read_exact(stream, length, path, 8, "metadata")
    if length < _FIXED_LEN:
        raise DecodeError(path, 8, f"truncated header: metadata length {length} < {_FIXED_LEN}")
    dataset = cstr(body[0:16])
    schema_raw, start, end, limit = struct.unpack_from("<HQQQ", body, 16)
    pos = 42
    record_count = None
    if version == 1:
        (record_count,) = struct.unpack_from("<Q", body, pos)
        pos += 8
        stype_in, stype_out, ts_out = body[pos], body[pos + 1], body[pos + 2]
        symbol_cstr_len = 22
    else:
        stype_in, stype_out, ts_out = body[pos], body[pos + 1], body[pos + 2]
        (symbol_cstr_len,) = struct.unpack_from("<H", body, pos + 3)
    if schema_raw == SCHEMA_MIXED:
        schema = None
    elif schema_raw < len(SCHEMAS):
        schema = SCHEMAS[schema_raw]
    else:
        raise DecodeError(path, 8 + 16, f"unknown schema id {schema_raw}")
    cur = _Cursor(body[_FIXED_LEN:], 8 + _FIXED_LEN, path)
    sdl = cur.u32("schema_definition_length")
    cur.take(sdl, "schema definition")
    symbols = cur.strings(symbol_cstr_len, "symbols")
    partial = cur.strings(symbol_cstr_len, "partial")
    not_found = cur.strings(symbol_cstr_len, "not_found")
    mappings = []
    for _ in range(cur.u32("mappings count")):
        raw_symbol = cstr(cur.take(symbol_cstr_len, "mapping raw_symbol"))
        intervals = []
        for _ in range(cur.u32("mapping interval count")):
            off = cur.base + cur.pos
            start_d, end_d = struct.unpack("<II", cur.take(8, "mapping interval dates"))
            sym = cstr(cur.take(symbol_cstr_len, "mapping interval symbol"))
            intervals.append(MappingInterval(_yyyymmdd(start_d, path, off), _yyyymmdd(end_d, path, off), sym))
        mappings.append(SymbolMapping(raw_symbol, tuple(intervals)))

    def stype(v: int) -> str | None:
        return STYPES[v] if v < len(STYPES) else None

    return Metadata(
        version=version,
        dataset=dataset,
        schema=schema,
        start=start,
        end=None if end == UNDEF_TIMESTAMP else end,
        limit=None if limit == 0 else limit,
        stype_in=None if stype_in == 0xFF else stype(stype_in),
        stype_out=stype(stype_out) or "instrument_id",
        ts_out=bool(ts_out),
        symbol_cstr_len=symbol_cstr_len,
        symbols=symbols,
        partial=partial,
        not_found=not_found,
        mappings=tuple(mappings),
        record_count=record_count,
        header_bytes=8 + length,
    )


def read_metadata(path: str | os.PathLike[str]) -> Metadata:
    """Read only the metadata header of a DBN file (plain or zstd)."""
    p = Path(path)
    raw, stream, _ = open_stream(p)
    try:
        return parse_metadata(stream, p)
    finally:
        raw.close()
