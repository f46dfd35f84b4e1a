"""Defaults the command lines show in ``--help``, in a module that imports nothing heavy.

``datapair-ingest --help`` must not pay for NumPy, Numba or pyarrow; the engine modules import
these names from here too, so a default has one home.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_BLOCK_BYTES", "default_jobs"]

DEFAULT_BLOCK_BYTES = 2 << 20
"""Decompressed bytes per read block (a few thousand records: cache-sized, and enough per call)."""


def default_jobs() -> int:
    """Worker processes by default: the number of cores."""
    return max(1, os.cpu_count() or 1)
