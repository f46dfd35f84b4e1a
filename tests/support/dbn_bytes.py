"""Hand-made DBN bytes: a minimal metadata header and plain MBO records."""

from __future__ import annotations

import struct

import numpy as np

from engine.dbn.metadata import MBO_DTYPE, MBO_DTYPE_TS_OUT

__all__ = ["dbn_header", "mbo_bytes"]


def mbo_bytes(n: int, *, ts_out: bool = False) -> bytes:
    dtype = MBO_DTYPE_TS_OUT if ts_out else MBO_DTYPE
    rec = np.zeros(n, dtype=dtype)
    rec["length"] = dtype.itemsize // 4
    rec["rtype"] = 0xA0
    rec["publisher_id"] = 2
    rec["instrument_id"] = 6155
    rec["ts_recv"] = 1_761_130_860_000_000_000 + np.arange(n)
    rec["ts_event"] = rec["ts_recv"] - 100
    rec["order_id"] = np.arange(n)
    rec["price"] = 180_000_000_000
    rec["size"] = 10
    rec["action"] = b"A"
    rec["side"] = b"B"
    rec["sequence"] = np.arange(n)
    if ts_out:
        rec["ts_out"] = rec["ts_recv"] + 5
    return rec.tobytes()


def dbn_header(version: int = 3, schema: int = 0, ts_out: int = 0) -> bytes:
    """A minimal DBN v2/v3 metadata header with no symbols or mappings."""
    body = bytearray(b"XNAS.ITCH".ljust(16, b"\0"))
    body += struct.pack("<HQQQ", schema, 1_761_091_200_000_000_000, 1_761_177_600_000_000_000, 0)
    body += bytes([1, 0, ts_out]) + struct.pack("<H", 71) + bytes(53)
    body += struct.pack("<I", 0) * 5  # schema definition length, symbols, partial, not_found, mappings
    if version == 3:
        body += bytes(-len(body) % 8)
    return b"DBN" + bytes([version]) + struct.pack("<I", len(body)) + bytes(body)
