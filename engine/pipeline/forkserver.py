"""Start the forkserver early: it imports the workers' modules while the caller does its own work.

Kept free of heavy imports, so a command line can call :func:`preload` right after parsing its
arguments: the forkserver then loads NumPy, Numba, pyarrow and the sinks' modules on one core
while the parent loads its own on the other, and the first worker forks ready to decode.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterable
from typing import Any

__all__ = ["context", "preload"]

_BASE_PRELOAD = ("engine.pipeline.pool", "engine.dbn.columns")  # the file workers decode
_WARM = "engine.pipeline.warm"


def context() -> Any:
    """The one multiprocessing context of the pipeline (forkserver)."""
    return mp.get_context("forkserver")


def preload(modules: Iterable[str] = ()) -> None:
    """Name the modules the forkserver imports before it forks any child, and start it now.

    Call it as early as possible (before reading inputs): the server imports NumPy, Numba and
    whatever the sinks need while the caller does its own work, so the first worker forks
    ready to decode. Later calls add modules only until the server has started.
    """
    from multiprocessing import forkserver

    # the kernels' cached machine code last, once every module that holds kernels is imported
    names = [*sorted({*_BASE_PRELOAD, *modules} - {_WARM}), _WARM]
    # Arrow's jemalloc runs a background thread: the forkserver must have none when it forks
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    ctx = context()
    ctx.set_forkserver_preload(names)
    forkserver.ensure_running()
