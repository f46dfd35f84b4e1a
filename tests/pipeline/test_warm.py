"""The forkserver's last preload, :mod:`engine.pipeline.warm`: cached kernels loaded before any fork."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_warm_loads_every_cached_overload_and_a_call_needs_no_other() -> None:
    # fill the cache: the signatures a stripe's columns use
    _run("""
        import numpy as np
        from engine.lake.kernels import gather_rows
        perm = np.array([1, 0], np.int64)
        for dt in (np.int64, np.int32, np.int16, np.int8, np.float64):
            src = np.arange(2).astype(dt); gather_rows(src, perm, np.empty_like(src))
    """)
    got = _run("""
        import numpy as np
        from engine.lake.kernels import gather_rows
        assert not gather_rows.overloads  # nothing loaded by the import alone
        from engine.pipeline.warm import cached_signatures  # importing it loads them
        loaded = set(gather_rows.overloads)
        cached = set(cached_signatures(gather_rows))
        perm = np.array([1, 0], np.int64)
        for dt in (np.int64, np.int32, np.int16, np.int8, np.float64):
            src = np.arange(2).astype(dt); gather_rows(src, perm, np.empty_like(src))
        print(len(cached), len(loaded), loaded == cached, set(gather_rows.overloads) == loaded)
    """)
    n_cached, n_loaded, same, no_new = got.split()
    assert int(n_cached) >= 5 and n_loaded == n_cached
    assert same == "True" and no_new == "True"  # the calls found every overload already loaded


def test_a_kernel_without_a_cache_is_left_to_compile_on_first_call() -> None:
    got = _run("""
        from numba import njit
        import sys, types
        mod = types.ModuleType("engine.fake_kernels"); sys.modules[mod.__name__] = mod
        f = njit(lambda x: x + 1); f.__module__ = mod.__name__; mod.f = f
        from engine.pipeline.warm import cached_signatures, load_cached_kernels
        print(cached_signatures(f), load_cached_kernels("engine.fake_kernels"), f(1))
    """)
    assert got == "[] 0 2"
