"""Progress bars and summary lines for long-running CLIs.

A :class:`ProgressBoard` shows one tqdm bar per task (a file being read, a table being loaded),
measured in bytes with the record count and rows/s beside it. It is silent with ``quiet`` or
when the stream is not a terminal, so CLIs call it unconditionally. Updates come from the main
process only: pipelines that work in subprocesses send their counts back and the parent calls
:meth:`ProgressBoard.update`.

:func:`summary_line` formats the one line every CLI prints at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TextIO

from tqdm import tqdm

__all__ = ["ProgressBoard", "RateClock", "RunSummary", "format_count", "show_progress", "summary_line"]


def show_progress(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """True if progress bars should be drawn: not ``quiet`` and ``stream`` (stderr) is a TTY."""
    if quiet:
        return False
    s = stream if stream is not None else sys.stderr
    try:
        return bool(s.isatty())
    except (AttributeError, ValueError):
        return False


def format_count(n: float) -> str:
    """``1234567`` -> ``'1.23M'`` (k, M, G), for compact bar postfixes."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


@dataclass
class _Task:
    bar: tqdm
    started: float
    bytes_done: int = 0
    records: int = 0


class ProgressBoard:
    """One progress bar per task, keyed by any hashable (e.g. a file's index).

    Parameters
    ----------
    enabled : bool
        Draw bars (use :func:`show_progress` to decide); when False every method is a no-op.
    unit : str
        What the bar's total counts (``"B"`` for bytes, scaled to kB/MB).
    stream : file, optional
        Where bars are drawn (stderr).
    """

    def __init__(self, enabled: bool, unit: str = "B", stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self._tasks: dict[Hashable, _Task] = {}
        self._next_position = 0

    def start(self, key: Hashable, desc: str, total: int | None) -> None:
        """Open a bar for ``key`` (``total`` in ``unit``; None if unknown)."""
        if not self.enabled or key in self._tasks:
            return
        bar = tqdm(
            total=total,
            desc=desc,
            unit=self.unit,
            unit_scale=True,
            unit_divisor=1024 if self.unit == "B" else 1000,
            position=self._next_position,
            leave=True,
            file=self.stream,
            dynamic_ncols=True,
            mininterval=0.2,
        )
        self._next_position += 1
        self._tasks[key] = _Task(bar, time.perf_counter())

    def update(
        self, key: Hashable, done: int, records: int | None = None, seconds: float | None = None
    ) -> None:
        """Set the task's progress to ``done`` units (absolute, not a delta) and its record count.

        ``seconds`` is how long the task has run (when it runs elsewhere, e.g. in a worker
        process); by default the time since :meth:`start`.
        """
        task = self._tasks.get(key)
        if task is None:
            return
        if done > task.bytes_done:
            task.bar.update(done - task.bytes_done)
            task.bytes_done = done
        if records is not None:
            task.records = records
            secs = max(seconds if seconds is not None else time.perf_counter() - task.started, 1e-9)
            task.bar.set_postfix_str(
                f"{format_count(records)} rec, {format_count(records / secs)} rows/s", refresh=False
            )

    def finish(self, key: Hashable, note: str | None = None) -> None:
        """Close the task's bar (``note``, e.g. ``'skipped'`` or ``'FAILED'``, replaces the postfix)."""
        task = self._tasks.pop(key, None)
        if task is None:
            return
        if task.bar.total is not None and task.bytes_done < task.bar.total and note is None:
            task.bar.update(task.bar.total - task.bytes_done)
        if note is not None:
            task.bar.set_postfix_str(note, refresh=False)
        task.bar.close()

    def close(self) -> None:
        """Close every open bar."""
        for key in list(self._tasks):
            self.finish(key)

    def write(self, line: str) -> None:
        """Print a line without breaking the bars (plain print when bars are off)."""
        if self.enabled:
            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream)

    def __enter__(self) -> ProgressBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RateClock:
    """A wall clock started at creation: ``seconds`` so far and ``rate(n)`` per second."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def rate(self, n: float) -> float:
        return n / max(self.seconds, 1e-9)


def summary_line(
    rows: int,
    seconds: float,
    *,
    nbytes: int | None = None,
    files: int | None = None,
    skipped: int | None = None,
    failed: int | None = None,
    unmapped: int = 0,
    bad_records: int = 0,
    label: str = "",
) -> str:
    """The closing line of a CLI run, e.g.

    ``ingest: 3 files, 20,000,000 rows in 3.52 s (5.68M rows/s, 96.1 MB/s), 1 skipped, 0 failed``

    Parameters are shown only when given; MB/s is ``nbytes`` (input bytes) per second;
    ``unmapped`` (records without a symbol mapping, kept under their id as text) and
    ``bad_records`` (corrupt records skipped) only when > 0.
    """
    secs = max(seconds, 1e-9)
    parts = []
    if files is not None:
        parts.append(f"{files:,} file{'s' if files != 1 else ''}, ")
    parts.append(f"{rows:,} rows in {seconds:.2f} s ({format_count(rows / secs)} rows/s")
    if nbytes is not None:
        parts.append(f", {nbytes / secs / 1e6:.1f} MB/s")
    parts.append(")")
    tail = []
    if skipped is not None:
        tail.append(f"{skipped} skipped")
    if failed is not None:
        tail.append(f"{failed} failed")
    if unmapped:
        tail.append(f"{unmapped:,} rows with unmapped instrument_id")
    if bad_records:
        tail.append(f"{bad_records:,} corrupt records skipped")
    text = "".join(parts) + (", " + ", ".join(tail) if tail else "")
    return f"{label}: {text}" if label else text


@dataclass
class RunSummary:
    """What a run over many files did: the counts every summary line shows.

    ``files`` counts the inputs (done, skipped and failed); ``rows`` and ``bytes`` are the rows
    written (or confirmed) and the source bytes read; ``failed`` lists ``(path, message)``.
    Subclasses add their own fields and name themselves in :attr:`label`.
    """

    files: int = 0
    rows: int = 0
    seconds: float = 0.0
    bytes: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    label = "run"

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def line(self, **extra: int) -> str:
        """The closing summary line."""
        return summary_line(
            self.rows, self.seconds, nbytes=self.bytes, files=self.files, skipped=self.skipped,
            failed=len(self.failed), label=self.label, **extra,
        )  # fmt: skip
