"""The small interface every sink implements, so the pipeline does not know which it feeds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from engine.dbn.columns import ColumnBlock

__all__ = ["CompleteSink", "FileSink", "SinkFactory", "SinkResult"]


@dataclass
class SinkResult:
    """What a sink made durable for one source file."""

    rows: int = 0
    rows_by_day: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    skipped: bool = False


class FileSink(ABC):
    """Receives the column blocks of one source file, in file order, in one process.

    ``write`` may be called many times; then exactly one of ``close`` (success: make the data
    visible, e.g. rename temp files or confirm server counts) or ``abort`` (failure: leave
    nothing half-written under a final name).
    """

    @abstractmethod
    def write(self, block: ColumnBlock) -> None: ...

    @abstractmethod
    def close(self) -> SinkResult: ...

    @abstractmethod
    def abort(self) -> None: ...

    def source_done(self, bad_records: int) -> None:  # noqa: B027 - optional hook
        """Called once the source is read, before :meth:`close`: what the reader skipped."""


class SinkFactory(Protocol):
    """Builds the sink of one source file, inside the worker process (must be picklable).

    A factory may also have an ``offload`` attribute (an :class:`engine.pipeline.offload.OffloadSpec`,
    or None): the pipeline then pairs each file worker with a helper process for it; and a
    ``modules`` attribute (names of modules): what building its sinks imports, which the
    pipeline's forkserver then imports once, before it forks any worker.
    """

    def __call__(self, path: Path) -> FileSink: ...


class CompleteSink(FileSink):
    """The sink of a file a store already holds: takes the blocks, writes nothing."""

    def write(self, block: ColumnBlock) -> None:
        pass

    def close(self) -> SinkResult:
        return SinkResult(skipped=True)

    def abort(self) -> None:
        pass
