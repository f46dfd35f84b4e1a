"""A helper process paired with each file worker, fed through shared-memory slots.

Some sinks have an expensive second stage (the lake: Parquet encoding) that should run beside
decoding on another core. A sink factory that wants one exposes an :class:`OffloadSpec`: the
columns of a *slot* (NumPy dtypes, rows per slot), how many slots, the helper's threads, the
function that handles one job in the helper, and a hook that hands the worker's
:class:`SlotChannel` to its sinks. The slots live in a named shared memory block
(:class:`multiprocessing.shared_memory.SharedMemory`, created by the parent, attached by both
children, unlinked by the parent when the pair ends): the worker fills a slot, sends the slot
number and a small picklable job over a pipe, and the helper runs ``handler(slot_columns, job)``
on one of its threads, then answers ``(job.seq, error)``. So only slot numbers and small job
records cross the pipe, never the column data.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from engine.errors import SinkError
from engine.stages import add as add_stage

__all__ = ["OffloadSpec", "SlotChannel", "helper_main", "shared_slots", "slot_views"]


@dataclass(frozen=True)
class OffloadSpec:
    """What a sink factory asks of the pipeline: a helper process and the slots it reads.

    Parameters
    ----------
    dtypes : dict of str to numpy.dtype
        The columns of one slot.
    rows : int
        Rows per slot.
    slots : int
        Slots per worker/helper pair (jobs in flight plus the one being filled).
    threads : int
        Threads of the helper process.
    handler : callable or str
        ``handler(columns, job)``, run in the helper for each job; raises on failure. Each of the
        three functions may be named as ``"module:function"`` instead: the module is then
        imported only by the processes that call it (the pipeline's forkserver preloads it),
        not by the one that plans the run.
    install : callable or str
        ``install(channel)``, run in the worker before its first file (``None`` when it exits):
        how the sinks of that process find the channel.
    name : str
        What the helper does, for messages (``"the Parquet encoder process died"``).
    warm : callable or str, optional
        ``warm()``, run once in the helper as it starts, while its worker decodes the first
        block: first-call costs (a Numba cache load, a writer's set-up) off the first job.
    """

    dtypes: dict[str, np.dtype]
    rows: int
    slots: int
    threads: int
    handler: Callable[[dict[str, np.ndarray], Any], None] | str
    install: Callable[[SlotChannel | None], None] | str
    name: str = "helper"
    warm: Callable[[], None] | str | None = None

    def modules(self) -> set[str]:
        """The modules that hold the three functions (what a forkserver preloads for them)."""
        refs = (self.handler, self.install, self.warm)
        names = {r.partition(":")[0] if isinstance(r, str) else getattr(r, "__module__", "") for r in refs if r}
        return {n for n in names if n}

    def install_channel(self, channel: SlotChannel | None) -> None:
        """Run :attr:`install` (in the file worker)."""
        _function(self.install)(channel)


def _function(ref: Callable[..., Any] | str) -> Callable[..., Any]:
    """``ref`` itself, or the function a ``"module:function"`` reference names."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return fn


def _slot_layout(spec: OffloadSpec) -> tuple[dict[str, int], int]:
    """Byte offset of each column inside a slot (widest first, 64-byte aligned), and the slot size."""
    offsets = {}
    pos = 0
    for name, dt in sorted(spec.dtypes.items(), key=lambda kv: -kv[1].itemsize):
        offsets[name] = pos
        pos += -(-(dt.itemsize * spec.rows) // 64) * 64
    return offsets, pos


def slot_views(buf: Any, spec: OffloadSpec) -> list[dict[str, np.ndarray]]:
    """The slots inside a shared buffer of ``spec.slots`` slots, as column arrays."""
    offsets, size = _slot_layout(spec)
    return [
        {
            name: np.frombuffer(buf, dtype=dt, count=spec.rows, offset=i * size + offsets[name])
            for name, dt in spec.dtypes.items()
        }
        for i in range(spec.slots)
    ]


def shared_slots(spec: OffloadSpec) -> SharedMemory:
    """A named shared memory block for the slots of one worker/helper pair (pages are touched lazily).

    The caller unlinks it when the pair ends (a killed run's block is unlinked by
    multiprocessing's resource tracker).
    """
    return SharedMemory(create=True, size=max(_slot_layout(spec)[1] * spec.slots, 1))


class SlotChannel:
    """The file worker's side of a helper process: slots in shared memory, jobs over a pipe.

    A sink takes a free slot (:meth:`acquire`), fills it, then either :meth:`submit` s a job for
    it or gives it back (:meth:`release`). :meth:`completed` returns finished jobs as
    ``(seq, error)`` (error None on success); the slot of a finished job is free again.
    """

    def __init__(self, conn: Connection, buf: Any, spec: OffloadSpec) -> None:
        self.conn = conn
        self.spec = spec
        self.rows = spec.rows
        self._slots = slot_views(buf, spec)
        self._free = list(range(len(self._slots)))
        self._busy: dict[int, int] = {}  # seq -> slot
        self.broken: str | None = None

    def free_slots(self) -> int:
        return len(self._free)

    def acquire(self) -> tuple[int, dict[str, np.ndarray]]:
        slot = self._free.pop()
        return slot, self._slots[slot]

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def submit(self, slot: int, job: Any) -> None:
        if self.broken is None:
            try:
                self.conn.send((slot, job))
            except (OSError, EOFError) as exc:
                self.broken = f"the {self.spec.name} process is gone ({exc})"
        if self.broken is not None:
            self._free.append(slot)
            raise SinkError(self.broken)
        self._busy[job.seq] = slot

    def completed(self, block: bool) -> list[tuple[int, str | None]]:
        out: list[tuple[int, str | None]] = []
        try:
            while self._busy and self.conn.poll(None if block and not out else 0):
                seq, error, cpu, wall = self.conn.recv()
                add_stage(self.spec.name, cpu, wall)  # the helper's time, counted to this file
                self._free.append(self._busy.pop(seq))
                out.append((seq, error))
        except (OSError, EOFError):
            self.broken = f"the {self.spec.name} process died"
        if self.broken is not None:  # every job in flight is lost
            for seq, slot in self._busy.items():
                self._free.append(slot)
                out.append((seq, self.broken))
            self._busy.clear()
        return out

    def close(self) -> None:
        """Nothing: the helper process lives as long as its file worker."""


def helper_main(conn: Connection, buf: Any, spec: OffloadSpec) -> None:
    """Helper process: run ``spec.handler`` on the slots the file worker names, on ``spec.threads`` threads.

    Ends when the worker sends None or its end of the pipe closes (the worker died).
    """
    slots = slot_views(buf, spec)
    handler = _function(spec.handler)
    lock = threading.Lock()
    if spec.warm is not None:
        with contextlib.suppress(Exception):  # only a head start: a real failure shows on the first job
            _function(spec.warm)()

    def run(slot: int, job: Any) -> None:
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            handler(slots[slot], job)
            error = None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        with lock, contextlib.suppress(OSError):
            conn.send((job.seq, error, time.thread_time() - c0, time.perf_counter() - w0))

    with ThreadPoolExecutor(max(spec.threads, 1), thread_name_prefix="pipeline-helper") as pool:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            pool.submit(run, *msg)
