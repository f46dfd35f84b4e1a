"""The lake's stripe kernels against NumPy references."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.lake.kernels import cut_row_groups, gather_rows, invert_permutation, scatter_rows, sort_by_symbol


def ref_sort(codes: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Stable order by rank of code: each symbol's rows keep arrival (feed) order."""
    return np.argsort(rank[codes], kind="stable")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), m=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_sort_by_symbol_matches_a_stable_argsort(n: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, m, n).astype(np.int32)
    rank = rng.permutation(m).astype(np.int32)
    perm = np.empty(n, np.int64)
    run_ranks = np.empty(m + 1, np.int64)
    run_starts = np.empty(m + 1, np.int64)
    runs = sort_by_symbol(codes, rank, perm, run_ranks, run_starts)
    np.testing.assert_array_equal(perm, ref_sort(codes, rank))
    present = np.unique(rank[codes])
    assert runs == len(present)
    np.testing.assert_array_equal(run_ranks[:runs], present)
    counts = np.bincount(rank[codes], minlength=m)[present]
    np.testing.assert_array_equal(run_starts[: runs + 1], np.concatenate([[0], np.cumsum(counts)]))


def ref_cut(starts: list[int], target: int, max_rows: int) -> list[int]:
    """Plain-Python statement of the row-group rule."""
    bounds, start = [0], 0
    for s, e in itertools.pairwise(starts):
        if e - s >= target:
            if s > start:
                bounds.append(s)
            parts = -(-(e - s) // max_rows)
            bounds += [s + (e - s) * p // parts for p in range(1, parts)] + [e]
            start = e
        elif e - start >= target:
            bounds.append(e)
            start = e
    if start < starts[-1]:
        bounds.append(starts[-1])
    return bounds


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), max_size=40), target=st.integers(1, 2000), extra=st.integers(0, 3000)
)
def test_cut_row_groups_matches_reference(sizes: list[int], target: int, extra: int) -> None:
    max_rows = target + extra
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(starts[-1])
    bounds = np.empty(len(sizes) + n // max_rows + 2, np.int64)
    k = cut_row_groups(starts, len(sizes), target, max_rows, bounds)
    got = bounds[:k].tolist()
    assert got == ref_cut(starts.tolist(), target, max_rows)
    sizes_out = np.diff(got)
    assert (sizes_out > 0).all() and (sizes_out <= max(max_rows, target - 1 + max(sizes, default=0))).all()
    for lo, hi in itertools.pairwise(got):  # a group is whole runs or part of one big run
        inner = starts[(starts > lo) & (starts < hi)]
        assert len(inner) == 0 or (lo in starts and hi in starts)


@given(n=st.integers(0, 2000), seed=st.integers(0, 2**32 - 1))
def test_gather_rows_matches_take(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.integers(-(2**62), 2**62, n)
    perm = rng.permutation(n)
    out = np.empty(n, src.dtype)
    assert gather_rows(src, perm, out) == n
    np.testing.assert_array_equal(out, np.take(src, perm))


@settings(deadline=None)  # the first example may compile the kernels
@given(n=st.integers(0, 2000), seed=st.integers(0, 2**32 - 1))
def test_scatter_by_the_inverse_permutation_equals_gather(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.integers(-(2**62), 2**62, n)
    perm = rng.permutation(n)
    dest = np.empty(n, np.int64)
    assert invert_permutation(perm, dest) == n
    np.testing.assert_array_equal(dest, np.argsort(perm))
    out = np.empty(n, src.dtype)
    assert scatter_rows(src, dest, out) == n
    np.testing.assert_array_equal(out, np.take(src, perm))
