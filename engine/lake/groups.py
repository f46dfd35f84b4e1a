"""The lake's unit of atomic output: groups of input files that may write the same day file.

A lake day file holds every row of its UTC day of ts_recv, from every source file of that day
(several symbol-split files, or two files sharing a day across midnight, are merged into one
``mbo_YYYY-MM-DD.parquet``: :func:`engine.lake.outputs.commit_output`). Writing a day file is a
read-modify-write of that file, so two writers of one day must not run at once: in one process
tree the lake's lock (``flock``) orders them, but an object store has no lock and machines of a
cluster share none. So work that runs apart (a cluster task, a remote-lake batch) is a *day
group*: the input files whose days overlap, connected transitively (file A covers days 1-2,
B day 2, C day 3: {A, B} and {C}).

A file's days come from its DBN metadata header (``start``/``end``, the request's range on
ts_recv, read without decoding). A file whose header has no ``end`` (a live recording) could
touch any day: then every file is one group (safe, sequential).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from engine.dbn.metadata import NS_PER_DAY, read_metadata

__all__ = ["day_groups", "file_days"]


def file_days(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """First and last UTC day (days since 1970) the file's header covers, or None if open-ended."""
    md = read_metadata(path)
    if md.end is None or md.end <= md.start:
        return None
    return md.start // NS_PER_DAY, (md.end - 1) // NS_PER_DAY


def day_groups(paths: Sequence[str | os.PathLike[str]]) -> list[list[Path]]:
    """Split ``paths`` into day groups (see the module docstring), in order of their first day.

    Inside a group the files keep their given order. A file whose header cannot be read is a
    group of its own (its decode fails alone, as it would anyway).
    """
    spans: list[tuple[int, int, int]] = []
    alone: list[int] = []
    for i, p in enumerate(paths):
        try:
            days = file_days(p)
        except Exception:  # a bad header: the task reports the decode error for that file alone
            alone.append(i)
            continue
        if days is None:
            return [[Path(p) for p in paths]]
        spans.append((days[0], days[1], i))
    spans.sort()
    groups: list[list[int]] = []
    last = None
    for first, end, i in spans:
        if last is not None and first <= last:
            groups[-1].append(i)
            last = max(last, end)
        else:
            groups.append([i])
            last = end
    groups += [[i] for i in alone]
    return [[Path(paths[i]) for i in sorted(g)] for g in groups]
