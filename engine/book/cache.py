"""Drop this package's Numba cache when any of its sources changed.

Numba keys a cached kernel on its own source file only, yet compiles in the constants and the
helpers it takes from other modules. A change of the state layout (:mod:`engine.book.state`) or
of a helper (:mod:`engine.book.table`) would leave, e.g., the BBO kernel's cached machine code
reading the old layout: memory corruption, not a recompile. So on import the package hashes all
of its sources and, if the hash differs from the one stored next to the cache, deletes the
cache files of this package (they are rebuilt on first use).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["drop_stale_cache"]

_STAMP = "engine-book-sources.sha256"


def drop_stale_cache(package_dir: Path | None = None) -> bool:
    """Delete ``__pycache__/*.nbi|*.nbc`` of the package if its sources changed; True if it did."""
    here = package_dir or Path(__file__).resolve().parent
    cache = here / "__pycache__"
    digest = hashlib.sha256()
    for path in sorted(here.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    stamp = cache / _STAMP
    try:
        if stamp.read_text() == digest.hexdigest():
            return False
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)
        for f in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            f.unlink(missing_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:  # a read-only install: Numba then caches elsewhere (or not at all)
        return False
    return True
