"""Hand-made DBN bytes: a minimal metadata header and plain MBO records."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import databento_dbn
import numpy as np
import zstandard

from engine.dbn.metadata import MBO_DTYPE, MBO_DTYPE_TS_OUT
from engine.synth.day import generate_blocks, instrument_ids

__all__ = ["day_records", "dbn_header", "mbo_bytes", "write_dbn"]


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


def write_dbn(
    path: Path, records: np.ndarray, symbols: Sequence[str], first: dt.date, days: int, ids: dict[str, int] | None = None
) -> Path:
    """A DBN v3 XNAS.ITCH MBO file of ``records`` whose metadata maps symbols on ``days`` UTC days
    (to the generator's :func:`instrument_ids`, or to ``ids``)."""
    ids = ids or instrument_ids(symbols)
    start = int(dt.datetime.combine(first, dt.time(0), dt.UTC).timestamp()) * 10**9
    mappings = [
        SimpleNamespace(
            raw_symbol=s,
            intervals=[
                SimpleNamespace(
                    start_date=first + dt.timedelta(days=k),
                    end_date=first + dt.timedelta(days=k + 1),
                    symbol=str(ids[s]),
                )
                for k in range(days)
            ],
        )
        for s in symbols
    ]
    md = databento_dbn.Metadata(
        dataset="XNAS.ITCH", start=start, end=start + days * 86_400 * 10**9,
        stype_in=databento_dbn.SType.RAW_SYMBOL, stype_out=databento_dbn.SType.INSTRUMENT_ID,
        schema=databento_dbn.Schema.MBO, symbols=list(symbols), mappings=mappings, version=3,
    )  # fmt: skip
    raw = md.encode() + records.tobytes()
    path.write_bytes(zstandard.ZstdCompressor(level=1).compress(raw) if path.name.endswith(".zst") else raw)
    return path


def day_records(n: int, date: str, seed: int, symbols: Sequence[str] = ("NVDA", "AAPL", "MSFT", "TSLA", "AMD")) -> np.ndarray:
    """``n`` generated MBO records of one day, as one structured array."""
    return np.concatenate([b.copy() for b in generate_blocks(n, list(symbols), date, seed)])


def write_midnight_file(directory: Path, symbols: Sequence[str], n: int = 6_000, snapshot_at: int = 0) -> Path:
    """Two generated days in one file (so it spans UTC midnight); day 2 opens (or, from record
    ``snapshot_at`` of day 2 on, continues) with a CME-like snapshot: 300 records flagged
    F_SNAPSHOT whose ts_event lies 3 days before their ts_recv, so a symbol's ts_event goes back
    in feed order (inside day 2's lake file too when ``snapshot_at > 0``)."""
    d1 = day_records(n, "2025-10-22", 1, symbols)
    d2 = day_records(n, "2025-10-23", 2, symbols)
    snap = d2[snapshot_at : snapshot_at + 300]
    snap["ts_event"] = snap["ts_event"] - np.uint64(3 * 86_400 * 10**9)
    snap["flags"] |= np.uint8(32)
    path = Path(directory) / "XNAS.ITCH-2025-10-22-23.dbn.zst"
    return write_dbn(path, np.concatenate([d1, d2]), symbols, dt.date(2025, 10, 22), 2)


BIG_ID = 3_000_000_001
"""An instrument id above 2**31 (a DBN u32)."""


def write_big_values_file(directory: Path, n: int = 4_000) -> Path:
    """A generated day whose unsigned fields do not fit their signed storage types: every
    ``order_id`` above 2**63, NVDA's ``size`` above 2**31 and its ``instrument_id`` :data:`BIG_ID`."""
    symbols = ("NVDA", "AAPL")
    recs = day_records(n, "2025-10-22", 5, symbols)
    ids = instrument_ids(symbols)
    nvda = recs["instrument_id"] == ids["NVDA"]
    recs["instrument_id"][nvda] = BIG_ID
    recs["order_id"] += np.uint64(2**63)
    recs["size"][nvda] += np.uint32(2**31)
    path = Path(directory) / "XNAS.ITCH-2025-10-22-big.dbn.zst"
    return write_dbn(path, recs, symbols, dt.date(2025, 10, 22), 1, ids={**ids, "NVDA": BIG_ID})
