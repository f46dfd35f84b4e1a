"""One source file through its sinks: decode once, feed every sink, commit all or abort all.

:func:`process_file` streams one DBN file as column blocks (:func:`engine.dbn.columns.iter_column_blocks`)
and hands every block to each sink its factories build. It ends with every sink closed (success)
or every sink aborted (failure: nothing half-written), and never raises for bad input: the
:class:`FileOutcome` says what happened.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.dbn.metadata import DEFAULT_BLOCK_BYTES
from engine.errors import DatapairError
from engine.pipeline.sinks import FileSink, SinkFactory
from engine.stages import take as take_stages

if TYPE_CHECKING:
    from engine.dbn.columns import FileColumns

__all__ = ["FileOutcome", "ProgressEvent", "Report", "process_file"]


@dataclass
class FileOutcome:
    """What happened to one source file."""

    path: str
    index: int = 0
    ok: bool = False
    rows: int = 0
    """Rows the sinks took (after the symbol filter)."""
    records: int = 0
    """MBO records read from the file."""
    nbytes: int = 0
    """Size of the source file."""
    seconds: float = 0.0
    rows_by_day: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    message: str = ""
    """Why it failed (empty on success)."""
    unmapped: int = 0
    """Records whose instrument_id had no symbol mapping (their symbol is the id as text)."""
    symbols_matched: list[str] = field(default_factory=list)
    """With a symbol filter: the wanted symbols that had rows in this file."""
    symbols_known: list[str] = field(default_factory=list)
    """With a symbol filter: every symbol the file's symbology names (for "did you mean")."""
    bad_records: int = 0
    """Corrupt records skipped (only with ``skip_bad_records``)."""
    stages: dict[str, list[float]] = field(default_factory=dict)
    """CPU and wall seconds per stage spent on this file (:mod:`engine.stages`), helpers included."""


@dataclass
class ProgressEvent:
    """A worker's report on task ``index``: bytes of the source read so far and records decoded."""

    index: int
    path: str
    total_bytes: int
    bytes_done: int
    records: int
    done: bool = False
    ok: bool = True
    """With ``done``: whether the file succeeded."""
    seconds: float = 0.0
    """Time since the worker opened the file."""


Report = Callable[[ProgressEvent], None]


def process_file(
    path: str | os.PathLike[str],
    factories: Sequence[SinkFactory],
    *,
    symbols: set[str] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    index: int = 0,
    report: Report | None = None,
    skip_bad_records: bool = False,
) -> FileOutcome:
    """Stream one DBN file into every sink the factories build; never raises for bad input.

    Returns a :class:`FileOutcome` whose ``message`` explains a failure (a
    :class:`~engine.errors.DatapairError` message, or the exception for unexpected errors).
    """
    from engine.dbn.columns import iter_column_blocks  # Numba: the worker's, not the planner's

    p = Path(path)
    t0 = time.perf_counter()
    take_stages()  # this file's time only
    out = FileOutcome(str(p), index)
    sinks: list[FileSink] = []
    state: list[FileColumns] = []
    try:
        out.nbytes = p.stat().st_size
        sinks = [f(p) for f in factories]
        last = 0.0
        for block in iter_column_blocks(p, block_bytes, symbols, state, skip_bad_records):
            for s in sinks:
                s.write(block)
            out.rows += len(block)
            if report is not None and state:
                now = time.perf_counter()
                if now - last > 0.1:
                    last = now
                    reader = state[0].reader
                    ev = ProgressEvent(index, str(p), out.nbytes, reader.bytes_read, reader.records_read)
                    ev.seconds = now - t0
                    report(ev)
        out.bad_records = state[0].reader.bad_records if state else 0
        for s in sinks:
            s.source_done(out.bad_records)
        results = []
        for i, s in enumerate(sinks):
            try:
                results.append(s.close())
            except BaseException:
                for other in sinks[i + 1 :]:
                    other.abort()
                raise
        sinks = []
        out.records = state[0].reader.records_read if state else 0
        out.unmapped = state[0].symbology.unmapped_records if state else 0
        if symbols is not None and state:
            out.symbols_matched = sorted(state[0].matched)
            out.symbols_known = list(state[0].symbology.symbols)
        done = [r for r in results if not r.skipped]  # a skipped sink already held the file
        out.rows_by_day = dict(done[0].rows_by_day) if done else {}
        out.outputs = [o for r in done for o in r.outputs]
        for r in done:
            if r.rows != out.rows:
                msg = f"{p}: a sink took {r.rows} rows, the file gave {out.rows}"
                raise DatapairError(msg)
        out.ok = True
    except DatapairError as exc:
        out.message = str(exc)
    except (OSError, ValueError) as exc:
        out.message = f"{p}: {exc}"
    except Exception as exc:  # a bug: keep the other files going, show where
        out.message = f"{p}: unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    finally:
        for s in sinks:
            s.abort()
        out.seconds = time.perf_counter() - t0
        out.stages = take_stages()
        if report is not None:
            done_bytes = out.nbytes if out.ok else 0
            records = out.records or out.rows
            report(ProgressEvent(index, str(p), out.nbytes, done_bytes, records, True, out.ok, out.seconds))
    return out
