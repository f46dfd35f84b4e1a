"""Numba kernels of the lake layout: order a stripe by symbol (stably), cut it into row groups.

Like :mod:`engine.dbn.kernels`, every kernel is ``@njit(cache=True)``, takes flat arrays and
preallocated outputs, returns how many entries it wrote, and is tested against a plain-NumPy
reference (``tests/lake/test_kernels.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["cut_row_groups", "gather_rows", "invert_permutation", "scatter_rows", "sort_by_symbol"]


@njit(cache=True, nogil=True)
def sort_by_symbol(codes, rank, perm, run_ranks, run_starts):  # pragma: no cover - compiled
    """Stable order of rows by the rank of their symbol code: each symbol's rows keep feed order.

    ``rank[code]`` is the position of the code's symbol text in sorted order, so rows end up
    ordered by symbol text; a counting sort keeps arrival order inside each symbol (an order book
    can only be replayed in that order, and ts_event is not monotonic in it).

    Writes the permutation to ``perm`` (len n), the rank of each run to ``run_ranks`` and the
    run starts followed by ``n`` to ``run_starts`` (both at least ``len(rank) + 1`` long).
    Returns the number of runs.
    """
    n = len(codes)
    m = len(rank)
    counts = np.zeros(m + 1, dtype=np.int64)
    for i in range(n):
        counts[rank[codes[i]] + 1] += 1
    for r in range(m):
        counts[r + 1] += counts[r]
    runs = 0
    for r in range(m):
        if counts[r + 1] > counts[r]:
            run_ranks[runs] = r
            run_starts[runs] = counts[r]
            runs += 1
    run_starts[runs] = n
    pos = counts[:m].copy()
    for i in range(n):
        r = rank[codes[i]]
        perm[pos[r]] = i
        pos[r] += 1
    return runs


@njit(cache=True, nogil=True)
def cut_row_groups(run_starts, runs, target, max_rows, bounds):  # pragma: no cover - compiled
    """Row-group cut points for a stripe whose symbol runs start at ``run_starts[:runs + 1]``.

    Small runs are packed together until a group reaches ``target`` rows; a run of ``target``
    rows or more gets row groups of its own (so its ``symbol`` min equals max), split evenly into
    groups of at most ``max_rows``. Writes ``[0, cut_1, ..., n]`` to ``bounds`` and returns how
    many entries it wrote, one more than the groups (``bounds`` needs ``runs + n // max_rows + 2`` entries at most).
    """
    n = run_starts[runs]
    k = 0
    bounds[k] = 0
    k += 1
    start = 0  # start of the open group
    for j in range(runs):
        s = run_starts[j]
        e = run_starts[j + 1]
        if e - s >= target:
            if s > start:
                bounds[k] = s
                k += 1
            parts = (e - s + max_rows - 1) // max_rows
            for p in range(1, parts):
                bounds[k] = s + (e - s) * p // parts
                k += 1
            bounds[k] = e
            k += 1
            start = e
        elif e - start >= target:
            bounds[k] = e
            k += 1
            start = e
    if start < n:
        bounds[k] = n
        k += 1
    return k


@njit(cache=True, nogil=True)
def gather_rows(src, perm, out):  # pragma: no cover - compiled
    """out[i] = src[perm[i]]; returns len(perm)."""
    for i in range(len(perm)):
        out[i] = src[perm[i]]
    return len(perm)


@njit(cache=True, nogil=True)
def scatter_rows(src, dest, out):  # pragma: no cover - compiled
    """out[dest[i]] = src[i]; returns len(dest). With ``dest`` the inverse of a ``perm``, the same
    as :func:`gather_rows`: ``src`` is read in order and each symbol run written as one stream."""
    for i in range(len(dest)):
        out[dest[i]] = src[i]
    return len(dest)


@njit(cache=True, nogil=True)
def invert_permutation(perm, dest):  # pragma: no cover - compiled
    """dest[perm[i]] = i: where each row goes; returns len(perm)."""
    for i in range(len(perm)):
        dest[perm[i]] = i
    return len(perm)
