"""Where a process's time goes: CPU and wall seconds per pipeline stage.

Every stage of the conversion runs inside ``with stage("name"):`` (decompress, convert, sort,
encode, write, send, verify, wait); the totals of the process accumulate in :data:`STAGES`, and
a file worker hands its totals back with each file (:func:`take`), so an ingest summary, and the
benches, can say how many CPU- and wall-seconds each stage took. CPU is the calling thread's
(``time.thread_time``), so a stage on a helper thread counts its own work only. Two clock reads
per block: the cost is a few microseconds a block of thousands of rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["STAGES", "StageTimes", "add", "merge", "stage", "take"]

StageTimes = dict[str, list[float]]
"""Stage name -> [cpu seconds, wall seconds]."""

STAGES: StageTimes = {}
_LOCK = threading.Lock()


def add(name: str, cpu: float, wall: float, into: StageTimes | None = None) -> None:
    """Count ``cpu`` and ``wall`` seconds to stage ``name`` (of this process, or of ``into``)."""
    target = STAGES if into is None else into
    with _LOCK:
        t = target.setdefault(name, [0.0, 0.0])
        t[0] += cpu
        t[1] += wall


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the body as stage ``name``."""
    c0, w0 = time.thread_time(), time.perf_counter()
    try:
        yield
    finally:
        add(name, time.thread_time() - c0, time.perf_counter() - w0)


def take() -> StageTimes:
    """This process's totals since the last call (and start again from zero)."""
    with _LOCK:
        out = {k: list(v) for k, v in STAGES.items()}
        STAGES.clear()
    return out


def merge(into: StageTimes, other: StageTimes) -> StageTimes:
    """Add ``other``'s totals to ``into`` (returned)."""
    for k, (cpu, wall) in other.items():
        add(k, cpu, wall, into)
    return into
