"""A streaming MBO record reader for DBN (Databento Binary Encoding) v1/v2/v3 files.

The reader never holds a whole file. It decompresses (when the file is zstd) into blocks of a
few MB, and yields each block's MBO records as a NumPy structured array that is a zero-copy view
of the block's buffer. A record cut by a block boundary is carried into the next block.

Files that hold only MBO records (every historical MBO file) take the fast path: the block is
viewed as it is. Mixed files (recorded from live data) are walked record by record (by
``length * 4``) in a Numba kernel that keeps rtype 0xA0 and collects symbol mapping messages.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from engine.dbn.kernels import check_fixed_records, walk_records
from engine.dbn.metadata import (
    CONTROL_RTYPES,
    DEFAULT_BLOCK_BYTES,
    MAX_RECORD_BYTES,
    MIN_RECORD_BYTES,
    RTYPE_MBO,
    RTYPE_SYMBOL_MAPPING,
    cstr,
    parse_metadata,
)
from engine.dbn.stream import open_stream
from engine.errors import DecodeError
from engine.stages import add as add_stage

__all__ = ["DBNReader", "SymbolMappingRecord"]


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

    skip_bad_records : bool
        In a file whose metadata says MBO, a record of another rtype that is not a live control
        record (error, symbol mapping, system) is corruption: by default it fails the file
        (:class:`~engine.errors.DecodeError` with its offset); with this, it is skipped and
        counted in ``bad_records``.

    Iterating yields structured arrays of :attr:`Metadata.record_dtype`. On the fast path each
    is a view of its block's buffer (no copy). ``symbol_mappings`` collects the SymbolMappingMsg
    records met so far (live files carry their symbology in-stream).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        skip_bad_records: bool = False,
    ) -> None:
        if block_bytes < MAX_RECORD_BYTES:
            msg = f"block_bytes must be at least {MAX_RECORD_BYTES}, got {block_bytes}"
            raise ValueError(msg)
        self.path = Path(path)
        self.block_bytes = int(block_bytes)
        self._raw, self._stream, self.compressed = open_stream(self.path)
        try:
            self.metadata = parse_metadata(self._stream, self.path)
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
        self.skip_bad_records = skip_bad_records
        self.bad_records = 0  # corrupt records skipped (with skip_bad_records)
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
            c0, w0 = time.thread_time(), time.perf_counter()
            buf = np.empty(self.block_bytes + len(carry), dtype=np.uint8)
            buf[: len(carry)] = np.frombuffer(carry, dtype=np.uint8)
            end = self._fill(buf, len(carry))
            add_stage("decompress", time.thread_time() - c0, time.perf_counter() - w0)
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
            length = int(data[err]) * 4
            what = (
                f"an MBO record (rtype 0xA0) of {length} bytes, expected {size}"
                if length >= MIN_RECORD_BYTES
                else f"a record of {length} bytes, shorter than a record header ({MIN_RECORD_BYTES})"
            )
            raise DecodeError(self.path, self.bytes_decoded + err, f"corrupt record: {what}")
        strict = self.metadata.schema == "mbo"
        bad = 0
        for i in range(n_other):
            start = int(others[i])
            if strict and int(data[start + 1]) not in CONTROL_RTYPES:
                self._bad_record(data, start)
                bad += 1
                continue
            self._other_record(data, start)
        self.bad_records += bad
        self.records_skipped += n_other - bad
        self.records_read += n_mbo
        idx = starts[:n_mbo, None] + np.arange(size)
        recs = data[idx].reshape(-1).view(self.record_dtype) if n_mbo else np.empty(0, self.record_dtype)
        return recs, consumed

    def _bad_record(self, data: np.ndarray, start: int) -> None:
        if not self.skip_bad_records:
            rtype, length = int(data[start + 1]), int(data[start]) * 4
            msg = (
                f"corrupt record: rtype 0x{rtype:02X} ({length} bytes) in a file whose metadata says "
                "schema mbo, expected MBO records (0xA0) or live control records (0x15 error, 0x16 "
                "symbol mapping, 0x17 system); --skip-bad-records skips and counts such records"
            )
            raise DecodeError(self.path, self.bytes_decoded + start, msg)

    def _other_record(self, data: np.ndarray, start: int) -> None:
        if data[start + 1] != RTYPE_SYMBOL_MAPPING:
            return
        length = int(data[start]) * 4
        rec = data[start : start + length].tobytes()
        iid = int.from_bytes(rec[4:8], "little")
        try:
            if length == 80 or self.metadata.version == 1:  # v1: two 22-byte symbols, 4 pad, start, end
                in_sym, out_sym = cstr(rec[16:38]), cstr(rec[38:60])
                start_ts, end_ts = struct.unpack_from("<QQ", rec, 64)
            else:  # v2/v3: stype_in u8, 71-byte symbol, stype_out u8, 71-byte symbol, start, end
                w = self.metadata.symbol_cstr_len
                in_sym, out_sym = cstr(rec[17 : 17 + w]), cstr(rec[18 + w : 18 + 2 * w])
                start_ts, end_ts = struct.unpack_from("<QQ", rec, 16 + 2 + 2 * w + (-(18 + 2 * w) % 8))
        except struct.error:
            msg = f"corrupt record: a symbol mapping record of {length} bytes is too short for its fields"
            raise DecodeError(self.path, self.bytes_decoded + start, msg) from None
        symbol = in_sym if out_sym.isdigit() else out_sym
        self.symbol_mappings.append(SymbolMappingRecord(iid, symbol, start_ts, end_ts))

    def _check_tail(self, carry: bytes) -> None:
        if carry:
            raise DecodeError(
                self.path,
                self.bytes_decoded,
                f"truncated last record: {len(carry)} bytes left at end of file, expected a whole record",
            )
