"""DBN (Databento Binary Encoding) v1/v2/v3: metadata header and a streaming MBO record reader.

The reader never holds a whole file. It decompresses (when the file is zstd) into blocks of a
few MB, and yields each block's MBO records as a NumPy structured array that is a zero-copy view
of the block's buffer. A record cut by a block boundary is carried into the next block.

Files that hold only MBO records (every historical MBO file) take the fast path: the block is
viewed as it is. Mixed files (recorded from live data) are walked record by record (by
``length * 4``) in a Numba kernel that keeps rtype 0xA0 and collects symbol mapping messages.
"""

from __future__ import annotations

import datetime as dt
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import zstandard

from engine.errors import DecodeError
from engine.kernels import check_fixed_records, walk_records

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "MBO_DTYPE",
    "MBO_DTYPE_TS_OUT",
    "RTYPE_MBO",
    "RTYPE_SYMBOL_MAPPING",
    "SCHEMAS",
    "UNDEF_PRICE",
    "DBNReader",
    "MappingInterval",
    "Metadata",
    "SymbolMapping",
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
UNDEF_PRICE = 2**63 - 1
UNDEF_TIMESTAMP = 2**64 - 1
DEFAULT_BLOCK_BYTES = 2 << 20
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

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SKIPPABLE_MASK = 0xFFFFFFF0
_SKIPPABLE_MAGIC = 0x184D2A50  # DBZ, the pre-DBN format, opened with a zstd skippable frame
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


def _open_stream(path: Path) -> tuple[BinaryIO, Any, bool]:
    """Open ``path``; return (raw file, decompressed stream, is_zstd)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the reader
    except FileNotFoundError:
        raise DecodeError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DecodeError(path, None, "is a directory, expected a .dbn or .dbn.zst file") from None
    except OSError as exc:
        raise DecodeError(path, None, f"cannot open: {exc.strerror}") from None
    head = raw.read(4)
    raw.seek(0)
    if head == _ZSTD_MAGIC:
        return raw, _ZstdStream(raw, path), True
    if len(head) == 4 and (int.from_bytes(head, "little") & _SKIPPABLE_MASK) == _SKIPPABLE_MAGIC:
        raw.close()
        raise DecodeError(
            path, 0, "this is the old DBZ format (a zstd skippable frame), expected DBN; "
            "convert it with `dbn --upgrade` from databento's dbn CLI"
        )  # fmt: skip
    return raw, raw, False


class _ZstdStream:
    """A readable stream over one or more zstd frames that raises on a frame cut short.

    ``zstandard``'s own stream reader returns a clean EOF when the input ends inside a frame;
    a truncated ``.dbn.zst`` must instead fail with the offset where the data stops.
    """

    def __init__(self, raw: BinaryIO, path: Path, read_size: int = 1 << 18) -> None:
        self._raw, self._path, self._read_size = raw, path, read_size
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._pending = memoryview(b"")
        self._in_frame = False
        self._eof = False

    def _refill(self) -> None:
        while not self._pending and not self._eof:
            chunk = self._raw.read(self._read_size)
            if not chunk:
                self._eof = True
                if self._in_frame:
                    raise DecodeError(
                        self._path, self._raw.tell(), "corrupt zstd stream: the file ends inside a frame"
                    )
                return
            while chunk:
                try:
                    out = self._obj.decompress(chunk)
                except zstandard.ZstdError as exc:
                    at = self._raw.tell() - len(chunk)
                    raise DecodeError(self._path, at, f"corrupt zstd stream ({exc})") from None
                self._in_frame = not self._obj.eof
                if out:
                    self._pending = (
                        memoryview(out) if not self._pending else memoryview(bytes(self._pending) + out)
                    )
                chunk = self._obj.unused_data if self._obj.eof else b""
                if self._obj.eof:
                    self._obj = self._dctx.decompressobj()
                    self._in_frame = bool(chunk)

    def readinto(self, view: memoryview) -> int:
        self._refill()
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        got = self.readinto(memoryview(buf))
        return bytes(buf[:got])


def _read_exact(stream: BinaryIO, n: int, path: Path, offset: int, what: str) -> bytes:
    data = _read_zstd(stream, n, path, offset)
    if len(data) != n:
        raise DecodeError(
            path, offset + len(data), f"truncated header: expected {n} bytes of {what}, file ends"
        )
    return data


def _read_zstd(stream: BinaryIO, n: int, path: Path, offset: int) -> bytes:
    chunks = []
    left = n
    while left > 0:
        try:
            chunk = stream.read(left)
        except zstandard.ZstdError as exc:
            raise DecodeError(path, offset, f"corrupt zstd stream ({exc})") from None
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _cstr(buf: bytes) -> str:
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
        return tuple(_cstr(self.take(width, what)) for _ in range(count))


def _parse_metadata(stream: BinaryIO, path: Path) -> Metadata:
    prelude = _read_zstd(stream, 8, path, 0)
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
    body = _read_exact(stream, length, path, 8, "metadata")
    if length < _FIXED_LEN:
        raise DecodeError(path, 8, f"truncated header: metadata length {length} < {_FIXED_LEN}")
    dataset = _cstr(body[0:16])
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
        raw_symbol = _cstr(cur.take(symbol_cstr_len, "mapping raw_symbol"))
        intervals = []
        for _ in range(cur.u32("mapping interval count")):
            off = cur.base + cur.pos
            start_d, end_d = struct.unpack("<II", cur.take(8, "mapping interval dates"))
            sym = _cstr(cur.take(symbol_cstr_len, "mapping interval symbol"))
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
    raw, stream, _ = _open_stream(p)
    try:
        return _parse_metadata(stream, p)
    finally:
        raw.close()


@dataclass(frozen=True)
class SymbolMappingRecord:
    """A SymbolMappingMsg found in a live-recorded stream."""

    instrument_id: int
    symbol: str
    start_ts: int
    end_ts: int


class DBNReader:
    """Stream the MBO records of one DBN file in blocks.

    Parameters
    ----------
    path : path-like
        A ``.dbn`` or ``.dbn.zst`` file, DBN version 1, 2 or 3, schema MBO or mixed.
    block_bytes : int
        Decompressed bytes per block (default 2 MiB). Memory use is a small multiple of this.

    Iterating yields structured arrays of :attr:`Metadata.record_dtype`. On the fast path each
    is a view of its block's buffer (no copy). ``symbol_mappings`` collects the SymbolMappingMsg
    records met so far (live files carry their symbology in-stream).
    """

    def __init__(self, path: str | os.PathLike[str], block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
        if block_bytes < MAX_RECORD_BYTES:
            msg = f"block_bytes must be at least {MAX_RECORD_BYTES}, got {block_bytes}"
            raise ValueError(msg)
        self.path = Path(path)
        self.block_bytes = int(block_bytes)
        self._raw, self._stream, self.compressed = _open_stream(self.path)
        try:
            self.metadata = _parse_metadata(self._stream, self.path)
        except BaseException:
            self._raw.close()
            raise
        md = self.metadata
        if md.schema is not None and md.schema != "mbo":
            self._raw.close()
            raise DecodeError(
                self.path, 8 + 16, f"schema is '{md.schema}', expected 'mbo' (or a mixed live file)"
            )
        self.record_dtype = md.record_dtype
        self.record_size = self.record_dtype.itemsize
        self.symbol_mappings: list[SymbolMappingRecord] = []
        self.records_read = 0  # MBO records yielded
        self.records_skipped = 0  # other record types in mixed files
        self.bytes_decoded = md.header_bytes  # decompressed bytes consumed

    @property
    def bytes_read(self) -> int:
        """Bytes of the file (compressed, if it is) read so far: for progress bars."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    @property
    def file_size(self) -> int:
        return self.path.stat().st_size

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> DBNReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self, buf: np.ndarray, start: int) -> int:
        """Read into buf[start:]; return the end of valid data."""
        view = memoryview(buf.data)[start:]  # type: ignore[arg-type]
        pos = 0
        while pos < len(view):
            try:
                n = self._stream.readinto(view[pos:])
            except zstandard.ZstdError as exc:
                raise DecodeError(self.path, self.bytes_read, f"corrupt zstd stream ({exc})") from None
            if not n:
                break
            pos += n
        return start + pos

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.blocks()

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield the MBO records block by block."""
        size = self.record_size
        mixed = self.metadata.schema is None
        carry = b""
        while True:
            buf = np.empty(self.block_bytes + len(carry), dtype=np.uint8)
            buf[: len(carry)] = np.frombuffer(carry, dtype=np.uint8)
            end = self._fill(buf, len(carry))
            eof = end < len(buf)
            if end == 0:
                return
            data = buf[:end]
            if not mixed:
                whole = end - end % size
                n = whole // size
                bad = check_fixed_records(data[:whole], size, RTYPE_MBO, size // 4)
                if bad < 0:
                    recs = data[:whole].view(self.record_dtype)
                    carry = data[whole:].tobytes()
                    self.bytes_decoded += whole
                    self.records_read += n
                    if n:
                        yield recs
                    if eof:
                        self._check_tail(carry)
                        return
                    continue
                mixed = True  # an MBO-schema file that still holds other records: walk it
            recs, consumed = self._walk(data)
            carry = data[consumed:].tobytes()
            self.bytes_decoded += consumed
            if len(recs):
                yield recs
            if eof:
                self._check_tail(carry)
                return

    def _walk(self, data: np.ndarray) -> tuple[np.ndarray, int]:
        size = self.record_size
        starts = np.empty(len(data) // 16 + 1, dtype=np.int64)
        others = np.empty(len(data) // 16 + 1, dtype=np.int64)
        n_mbo, n_other, consumed, err = walk_records(data, RTYPE_MBO, size // 4, starts, others)
        if err >= 0:
            raise DecodeError(
                self.path,
                self.bytes_decoded + err,
                "record with length 0 or an MBO record of the wrong length",
            )
        for i in range(n_other):
            self._other_record(data, int(others[i]))
        self.records_skipped += n_other
        self.records_read += n_mbo
        idx = starts[:n_mbo, None] + np.arange(size)
        recs = data[idx].reshape(-1).view(self.record_dtype) if n_mbo else np.empty(0, self.record_dtype)
        return recs, consumed

    def _other_record(self, data: np.ndarray, start: int) -> None:
        if data[start + 1] != RTYPE_SYMBOL_MAPPING:
            return
        length = int(data[start]) * 4
        rec = data[start : start + length].tobytes()
        iid = int.from_bytes(rec[4:8], "little")
        if length == 80 or self.metadata.version == 1:  # v1: two 22-byte symbols, 4 pad, start, end
            in_sym, out_sym = _cstr(rec[16:38]), _cstr(rec[38:60])
            start_ts, end_ts = struct.unpack_from("<QQ", rec, 64)
        else:  # v2/v3: stype_in u8, 71-byte symbol, stype_out u8, 71-byte symbol, start, end
            w = self.metadata.symbol_cstr_len
            in_sym, out_sym = _cstr(rec[17 : 17 + w]), _cstr(rec[18 + w : 18 + 2 * w])
            start_ts, end_ts = struct.unpack_from("<QQ", rec, 16 + 2 + 2 * w + (-(18 + 2 * w) % 8))
        symbol = in_sym if out_sym.isdigit() else out_sym
        self.symbol_mappings.append(SymbolMappingRecord(iid, symbol, start_ts, end_ts))

    def _check_tail(self, carry: bytes) -> None:
        if carry:
            raise DecodeError(
                self.path,
                self.bytes_decoded,
                f"truncated last record: {len(carry)} bytes left at end of file, expected a whole record",
            )
