"""Load the compiled kernels of the modules already imported, once, before the forkserver forks.

Importing this module (the last name of the forkserver's preload, :func:`engine.pipeline.forkserver.preload`)
loads every Numba overload that the on-disk cache (``cache=True``) holds for the ``engine.*``
kernels imported so far, for this machine. Forked children inherit the loaded machine code: a
worker no longer spends its first ~0.4 s loading a dozen overloads (``gather_rows`` once per
column dtype, the decode and day-numbering kernels) before its first block, and the loading
runs in the forkserver on one core while the parent imports its own modules on the other.

It also imports :mod:`numpy.ma`: NumPy 2 loads it lazily, and Numba's first call with an array
argument in a process asks whether the array is a masked one, which imported it (~0.1 s) inside
each worker's first block and each encoder's first stripe.

Nothing is compiled here: only overloads found in the cache are loaded, so a kernel whose cache
is missing or stale compiles on its first call, as it would without this module. Numba has no
public way to list a cache's signatures; :func:`cached_signatures` reads its index through the
dispatcher's cache object and gives up quietly (returns nothing) when that is not available.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

__all__ = ["cached_signatures", "load_cached_kernels"]


def cached_signatures(dispatcher: Any) -> list[Any]:
    """The signatures the on-disk cache holds for ``dispatcher`` on this machine (maybe none)."""
    try:
        cache = dispatcher._cache
        index = cache._cache_file._load_index()
        magic = dispatcher.targetctx.codegen().magic_tuple()
    except Exception:  # another Numba, or no cache: nothing to load
        return []
    return [key[0] for key in index if len(key) > 1 and key[1] == magic]


def load_cached_kernels(prefix: str = "engine.") -> int:
    """Load the cached overloads of every Numba kernel in the imported ``prefix`` modules; how many."""
    from numba.core.registry import CPUDispatcher

    loaded = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith(prefix) or module is None:
            continue
        for obj in list(vars(module).values()):
            if not isinstance(obj, CPUDispatcher) or getattr(obj, "__module__", None) != name:
                continue
            for sig in cached_signatures(obj):
                if sig in obj.overloads:
                    continue
                with contextlib.suppress(Exception):  # a stale entry: it compiles on first call instead
                    obj.compile(sig)
                    loaded += 1
    return loaded


import numpy.ma  # noqa: E402, F401 - see above

load_cached_kernels()
