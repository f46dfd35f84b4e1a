"""Pipeline: DBN files through sinks, one task per file, several files in parallel processes.

The second stage of the flow: it streams :mod:`engine.dbn` column blocks into whatever sinks it
is given, knowing them only through :class:`FileSink` / :class:`SinkFactory`.

- :mod:`~engine.pipeline.sinks`: the sink interface (:class:`FileSink`, :class:`SinkResult`, :class:`SinkFactory`);
- :mod:`~engine.pipeline.process`: one file through its sinks (:func:`process_file`);
- :mod:`~engine.pipeline.pool`: file workers in processes (:func:`run_pipeline`);
- :mod:`~engine.pipeline.forkserver`: the process model's forkserver, started early (:func:`preload`);
- :mod:`~engine.pipeline.offload`: a helper process per worker, fed through shared-memory slots.

May import: :mod:`engine.dbn` and the shared top-level modules (errors, progress, inputs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.pipeline.offload import OffloadSpec, SlotChannel
    from engine.pipeline.pool import run_pipeline
    from engine.pipeline.process import FileOutcome, ProgressEvent, process_file
    from engine.pipeline.sinks import CompleteSink, FileSink, SinkFactory, SinkResult

__all__ = [
    "CompleteSink",
    "FileOutcome",
    "FileSink",
    "OffloadSpec",
    "ProgressEvent",
    "SinkFactory",
    "SinkResult",
    "SlotChannel",
    "process_file",
    "run_pipeline",
]

_EXPORTS = {
    "OffloadSpec": "offload",
    "SlotChannel": "offload",
    "run_pipeline": "pool",
    "FileOutcome": "process",
    "ProgressEvent": "process",
    "process_file": "process",
    "CompleteSink": "sinks",
    "FileSink": "sinks",
    "SinkFactory": "sinks",
    "SinkResult": "sinks",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
