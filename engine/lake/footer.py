"""Parquet footers: assemble one file from parts encoded in parallel, without re-encoding.

Stripes are encoded as standalone Parquet files ("parts") by several encoders at once. A part's
body (its column chunks, bytes [4, footer)) is appended to the day file as it is, and the day
file's footer is the parts' footers merged: their row groups with every byte offset shifted by
where the body landed. The footer is Thrift compact protocol; the codec below is generic (it
keeps every field it does not know) and only the offset fields of RowGroup, ColumnChunk and
ColumnMetaData are rewritten.

pyarrow can write row groups but not append already-encoded ones to another file, hence this
small, generic Thrift compact-protocol codec.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import SinkError

__all__ = ["PartAssembler", "read_footer"]

_T_STOP, _T_TRUE, _T_FALSE, _T_BYTE, _T_I16, _T_I32, _T_I64, _T_DOUBLE, _T_BINARY = range(9)
_T_LIST, _T_SET, _T_MAP, _T_STRUCT = 9, 10, 11, 12
_MAGIC = b"PAR1"

# field ids (parquet.thrift)
_FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV = 3, 4, 5
_RG_COLUMNS, _RG_FILE_OFFSET, _RG_ORDINAL = 1, 5, 7
_CC_FILE_OFFSET, _CC_META, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX = 2, 3, 4, 6
_CMD_OFFSETS = (9, 10, 11)  # data page, index page, dictionary page
_CMD_BLOOM_OFFSET = 14
_CMD_STATISTICS = 12
_OUTSIDE_CHUNKS = {_CC_OFFSET_INDEX: "an offset index", _CC_COLUMN_INDEX: "a column index"}


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def byte(self) -> int:
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, t: int) -> Any:
        if t in (_T_I16, _T_I32, _T_I64):
            return self.zigzag()
        if t == _T_BINARY:
            n = self.varint()
            self.pos += n
            return self.buf[self.pos - n : self.pos]
        if t == _T_STRUCT:
            return self.struct()
        if t in (_T_LIST, _T_SET):
            h = self.byte()
            size, et = h >> 4, h & 0x0F
            if size == 15:
                size = self.varint()
            return (et, [self.value(et) for _ in range(size)])
        if t in (_T_TRUE, _T_FALSE, _T_BYTE):  # a bool inside a list is one byte too
            return self.byte()
        if t == _T_DOUBLE:
            self.pos += 8
            return self.buf[self.pos - 8 : self.pos]
        if t == _T_MAP:
            size = self.varint()
            if size == 0:
                return (0, 0, [])
            kv = self.byte()
            kt, vt = kv >> 4, kv & 0x0F
            return (kt, vt, [(self.value(kt), self.value(vt)) for _ in range(size)])
        msg = f"unknown Thrift compact type {t} at byte {self.pos}"
        raise ValueError(msg)

    def struct(self) -> list[list[Any]]:
        fields: list[list[Any]] = []
        last = 0
        while True:
            h = self.byte()
            t = h & 0x0F
            if t == _T_STOP:
                return fields
            delta = h >> 4
            fid = last + delta if delta else self.zigzag()
            last = fid
            val = t == _T_TRUE if t in (_T_TRUE, _T_FALSE) else self.value(t)
            fields.append([fid, t, val])


def _varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_value(out: bytearray, t: int, v: Any) -> None:
    if t in (_T_I16, _T_I32, _T_I64):
        _varint(out, (v << 1) ^ (v >> 63))
    elif t == _T_BINARY:
        _varint(out, len(v))
        out += v
    elif t == _T_STRUCT:
        _write_struct(out, v)
    elif t in (_T_LIST, _T_SET):
        et, items = v
        if len(items) < 15:
            out.append((len(items) << 4) | et)
        else:
            out.append(0xF0 | et)
            _varint(out, len(items))
        for item in items:
            _write_value(out, et, item)
    elif t in (_T_TRUE, _T_FALSE, _T_BYTE):
        out.append(v & 0xFF)
    elif t == _T_DOUBLE:
        out += v
    elif t == _T_MAP:
        kt, vt, items = v
        _varint(out, len(items))
        if items:
            out.append((kt << 4) | vt)
            for k, val in items:
                _write_value(out, kt, k)
                _write_value(out, vt, val)


def _write_struct(out: bytearray, fields: list[list[Any]]) -> None:
    last = 0
    for fid, t, v in fields:
        if t in (_T_TRUE, _T_FALSE):
            t = _T_TRUE if v else _T_FALSE
        delta = fid - last
        if 0 < delta <= 15:
            out.append((delta << 4) | t)
        else:
            out.append(t)
            _varint(out, (fid << 1) ^ (fid >> 63))
        last = fid
        if t not in (_T_TRUE, _T_FALSE):
            _write_value(out, t, v)
    out.append(_T_STOP)


def _field(fields: list[list[Any]], fid: int) -> list[Any] | None:
    for f in fields:
        if f[0] == fid:
            return f
    return None


def _check_movable(rg: list[list[Any]], path: object) -> None:
    """Refuse what lives outside the column chunks: a page index or a bloom filter would be left behind.

    The assembler moves only the bytes of the column chunks; the page index (column and offset
    indexes) and bloom filters sit elsewhere in the file, and the offset index also holds absolute
    page offsets. Lake parts are written without them (``ParquetOptions.writer_kwargs``).
    """
    cols = _field(rg, _RG_COLUMNS)
    for cc in cols[2][1] if cols is not None else []:
        for f in cc:
            if f[0] in _OUTSIDE_CHUNKS and f[2]:
                msg = f"{path}: a part with {_OUTSIDE_CHUNKS[f[0]]}, which the assembler cannot move; write parts without a page index"
                raise SinkError(msg)
            if f[0] == _CC_META and any(g[0] == _CMD_BLOOM_OFFSET for g in f[2]):
                msg = f"{path}: a part with a bloom filter, which the assembler cannot move; write parts without one"
                raise SinkError(msg)


def _shift_row_group(rg: list[list[Any]], delta: int, ordinal: int) -> None:
    for f in rg:
        if f[0] == _RG_FILE_OFFSET:
            f[2] += delta
        elif f[0] == _RG_ORDINAL:
            f[2] = ordinal
    cols = _field(rg, _RG_COLUMNS)
    for cc in cols[2][1] if cols is not None else []:
        for f in cc:
            if f[0] == _CC_FILE_OFFSET and f[2]:
                f[2] += delta
            elif f[0] == _CC_META:
                for g in f[2]:
                    if g[0] in _CMD_OFFSETS:
                        g[2] += delta


def _set_statistics(rg: list[list[Any]], column: int, lo: bytes, hi: bytes) -> None:
    """Give column ``column`` of row group ``rg`` the statistics pyarrow writes for a column with
    no nulls: exact ``min_value`` and ``max_value`` (read under the file's column orders)."""
    cols = _field(rg, _RG_COLUMNS)
    meta = _field(cols[2][1][column], _CC_META) if cols is not None else None
    if meta is None:
        msg = f"a row group without column {column}"
        raise SinkError(msg)
    stats = [[3, _T_I64, 0], [5, _T_BINARY, hi], [6, _T_BINARY, lo], [7, _T_TRUE, True], [8, _T_TRUE, True]]
    fields = [f for f in meta[2] if f[0] != _CMD_STATISTICS] + [[_CMD_STATISTICS, _T_STRUCT, stats]]
    meta[2][:] = sorted(fields, key=lambda f: f[0])


def _byte_range(groups: list[Any], path: object) -> tuple[int, int]:
    """The bytes ``[lo, hi)`` that hold these (consecutive) row groups' column chunks."""
    lo, hi = None, 0
    for rg in groups:
        cols = _field(rg, _RG_COLUMNS)
        for cc in cols[2][1] if cols is not None else []:
            meta = _field(cc, _CC_META)
            if meta is None:
                msg = f"{path}: a column chunk without metadata, expected an unencrypted Parquet file"
                raise SinkError(msg)
            offs = {f[0]: f[2] for f in meta[2]}
            start = min(offs[k] for k in (9, 11) if k in offs)  # data page, dictionary page
            lo = start if lo is None else min(lo, start)
            hi = max(hi, start + offs[7])  # total_compressed_size
    if lo is None:
        return 0, 0
    return lo, hi


def read_footer(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """The raw Thrift footer of a Parquet file and the byte where it starts."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size < 12:
            msg = f"{path}: {size} bytes, too short for a Parquet file"
            raise SinkError(msg)
        fh.seek(size - 8)
        tail = fh.read(8)
        if tail[4:] != _MAGIC:
            msg = f"{path}: no Parquet magic at the end"
            raise SinkError(msg)
        n = int.from_bytes(tail[:4], "little")
        start = size - 8 - n
        fh.seek(start)
        return fh.read(n), start


class PartAssembler:
    """Builds one Parquet file from parts (Parquet files with the same schema), in order.

    ``append`` moves a part's column chunks (all of them, or a run of its row groups) into the
    output with ``os.copy_file_range``, without decoding; ``finish`` writes the merged footer with
    the given key-value metadata (replacing the parts' own, except ``ARROW:schema``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in finish/abort
        self._fh.write(_MAGIC)
        self._pos = len(_MAGIC)
        self._template: list[list[Any]] | None = None
        self._row_groups: list[Any] = []
        self.rows = 0

    @property
    def row_groups(self) -> int:
        return len(self._row_groups)

    def append(
        self,
        part: str | os.PathLike[str],
        row_groups: tuple[int, int] | None = None,
        delete: bool = True,
        statistics: dict[int, list[tuple[bytes, bytes]]] | None = None,
    ) -> int:
        """Append ``part``'s row groups ``[first, first + count)`` (default: all); returns the rows appended.

        The part is deleted afterwards if ``delete``. ``statistics`` maps a column's index to the
        ``(min, max)`` of each appended row group, written as those row groups' statistics (for a
        column the part was written without them; its values must be non-null).
        """
        footer, footer_start = read_footer(part)
        fmd = _Reader(footer).struct()
        field = _field(fmd, _FMD_ROW_GROUPS)
        groups = field[2][1] if field is not None else []
        if row_groups is not None:
            first, count = row_groups
            if first < 0 or first + count > len(groups):
                msg = f"{part}: has {len(groups)} row groups, asked for [{first}, {first + count})"
                raise SinkError(msg)
            groups = groups[first : first + count]
        lo, hi = (len(_MAGIC), footer_start) if row_groups is None else _byte_range(groups, part)
        delta = self._pos - lo
        rows = 0
        for rg in groups:
            _check_movable(rg, part)
        for column, bounds in (statistics or {}).items():
            if len(bounds) != len(groups):
                msg = f"{part}: {len(groups)} row groups, {len(bounds)} statistics for column {column}"
                raise SinkError(msg)
            for rg, (lo_v, hi_v) in zip(groups, bounds, strict=True):
                _set_statistics(rg, column, lo_v, hi_v)
        for rg in groups:
            _shift_row_group(rg, delta, len(self._row_groups))
            self._row_groups.append(rg)
            nrows = _field(rg, 3)
            rows += nrows[2] if nrows is not None else 0
        self.rows += rows
        if self._template is None:
            self._template = fmd
        self._fh.flush()
        with open(part, "rb") as src:
            copied = 0
            while copied < hi - lo:
                n = os.copy_file_range(src.fileno(), self._fh.fileno(), hi - lo - copied, lo + copied)
                if n == 0:
                    msg = f"{part}: ended while copying its column chunks"
                    raise SinkError(msg)
                copied += n
        self._fh.seek(0, os.SEEK_END)
        self._pos += hi - lo
        if delete:
            os.unlink(part)
        return rows

    def finish(self, metadata: dict[str, str]) -> None:
        """Write the merged footer and close the file."""
        if self._template is None:
            msg = f"{self.path}: no part was appended"
            raise SinkError(msg)
        fmd = [list(f) for f in self._template if f[0] not in (_FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV)]
        kv_old = _field(self._template, _FMD_KV)
        kvs = []
        for kv in kv_old[2][1] if kv_old is not None else []:
            key = _field(kv, 1)
            if key is not None and key[2] == b"ARROW:schema":
                kvs.append(kv)
        for k, v in metadata.items():
            kvs.append([[1, _T_BINARY, k.encode()], [2, _T_BINARY, v.encode()]])
        fmd += [
            [_FMD_NUM_ROWS, _T_I64, self.rows],
            [_FMD_ROW_GROUPS, _T_LIST, (_T_STRUCT, self._row_groups)],
            [_FMD_KV, _T_LIST, (_T_STRUCT, kvs)],
        ]
        fmd.sort(key=lambda f: f[0])
        out = bytearray()
        _write_struct(out, fmd)
        self._fh.write(out)
        self._fh.write(len(out).to_bytes(4, "little") + _MAGIC)
        self._fh.close()

    def abort(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)
