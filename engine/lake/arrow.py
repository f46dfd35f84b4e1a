"""Small helpers over Arrow columns read from lake files: int64 views and row masks.

Shared by the readers of the lake (the service's stores, the order book's row reader) so a
symbol or action filter has one definition.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["action_mask", "ints", "symbol_mask"]


def ints(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An integer or timestamp column as int64 NumPy (zero copy when possible)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = col.view(pa.int64())
    return col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def symbol_mask(col: pa.ChunkedArray | pa.Array, symbol: str) -> np.ndarray:
    """Boolean mask of rows equal to ``symbol`` (dictionary or plain strings)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.DictionaryArray):
        values = col.dictionary.to_pylist()
        codes = [i for i, v in enumerate(values) if v == symbol]
        idx = col.indices.to_numpy(zero_copy_only=False)
        if not codes:
            return np.zeros(len(idx), dtype=np.bool_)
        return np.isin(idx, codes) if len(codes) > 1 else idx == codes[0]
    return np.asarray(col.to_numpy(zero_copy_only=False) == symbol, dtype=np.bool_)


def action_mask(col: pa.ChunkedArray | pa.Array, actions: tuple[str, ...]) -> np.ndarray:
    """Boolean mask of rows whose action is one of ``actions``."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.DictionaryArray):
        values = col.dictionary.to_pylist()
        codes = [i for i, v in enumerate(values) if v in actions]
        return np.isin(col.indices.to_numpy(zero_copy_only=False), codes)
    return np.isin(col.to_numpy(zero_copy_only=False), list(actions))
