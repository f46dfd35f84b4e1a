"""Random but valid column blocks (with ``day_seq``) for sender and batching tests."""

from __future__ import annotations

import numpy as np

from engine.dbn.columns import ColumnBlock
from engine.dbn.kernels import ACTIONS, SIDES

__all__ = ["block_of"]


def block_of(
    n: int, seed: int = 0, symbols: tuple[str, ...] = ("NVDA", "AAPL", "A_LONGER_SYMBOL")
) -> ColumnBlock:
    """A block of ``n`` random but valid rows, with ``day_seq``."""
    rng = np.random.default_rng(seed)
    t0 = 1_761_130_860_000_000_000
    ts = np.sort(rng.integers(t0, t0 + 3_600_000_000_000, n)).astype(np.int64)
    price_raw = rng.integers(1, 10**12, n).astype(np.int64)
    price_raw[rng.random(n) < 0.05] = 2**63 - 1
    arrays = {
        "ts_event": ts - rng.integers(0, 10**6, n), "symbol": rng.integers(0, len(symbols), n).astype(np.int32),
        "instrument_id": rng.integers(0, 2**31 - 1, n).astype(np.int32), "publisher_id": np.full(n, 2, np.int16),
        "order_id": rng.integers(-(2**62), 2**62, n).astype(np.int64), "price_raw": price_raw,
        "price": np.where(price_raw == 2**63 - 1, np.nan, price_raw / 1e9), "size": rng.integers(1, 10**6, n).astype(np.int32),
        "flags": rng.choice(np.array([0, 128, 130, 8], np.int16), n), "channel_id": rng.integers(0, 8, n).astype(np.int16),
        "action": rng.integers(0, len(ACTIONS), n).astype(np.int8), "side": rng.integers(0, len(SIDES), n).astype(np.int8),
        "ts_recv": ts, "ts_in_delta": rng.integers(-(10**6), 10**6, n).astype(np.int32),
        "sequence": rng.integers(0, 2**32, n).astype(np.int64), "day_seq": np.arange(n, dtype=np.int64),
    }  # fmt: skip
    return ColumnBlock(arrays, list(symbols))
