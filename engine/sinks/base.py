"""The small interface every sink implements, so the pipeline does not know which it feeds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from engine.columns import ColumnBlock

__all__ = ["FileSink", "SinkResult"]


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
