"""databento's own decoder, the oracle of what a DBN file holds, opened so that no file stays open."""

from __future__ import annotations

import os
from pathlib import Path

import databento as db

__all__ = ["dbn_store"]


def dbn_store(path: str | os.PathLike[str]) -> db.DBNStore:
    """A :class:`databento.DBNStore` of ``path`` read into memory (``from_file`` keeps the file open)."""
    return db.DBNStore.from_bytes(Path(path).read_bytes())
