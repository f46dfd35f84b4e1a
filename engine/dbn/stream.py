"""Open a DBN file as a byte stream: plain, or zstd with truncation detection.

``zstandard``'s own stream reader returns a clean end of file when the input stops inside a
frame; :class:`ZstdStream` raises :class:`~engine.errors.DecodeError` with the offset instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from engine.errors import DecodeError

__all__ = ["ZstdStream", "open_stream", "read_exact", "read_upto"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SKIPPABLE_MASK = 0xFFFFFFF0
_SKIPPABLE_MAGIC = 0x184D2A50  # DBZ, the pre-DBN format, opened with a zstd skippable frame


def open_stream(path: Path) -> tuple[BinaryIO, Any, bool]:
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
        return raw, ZstdStream(raw, path), True
    if len(head) == 4 and (int.from_bytes(head, "little") & _SKIPPABLE_MASK) == _SKIPPABLE_MAGIC:
        raw.close()
        raise DecodeError(
            path, 0, "this is the old DBZ format (a zstd skippable frame), expected DBN; "
            "convert it with `dbn --upgrade` from databento's dbn CLI"
        )  # fmt: skip
    return raw, raw, False


class ZstdStream:
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


def read_exact(stream: BinaryIO, n: int, path: Path, offset: int, what: str) -> bytes:
    data = read_upto(stream, n, path, offset)
    if len(data) != n:
        raise DecodeError(
            path, offset + len(data), f"truncated header: expected {n} bytes of {what}, file ends"
        )
    return data


def read_upto(stream: BinaryIO, n: int, path: Path, offset: int) -> bytes:
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
