"""A sink factory that blocks forever: for tests that kill a run whose worker is busy.

Here, not in a test module, because the run is a subprocess that imports it (test modules do not
import each other).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.pipeline.sinks import FileSink

__all__ = ["BlockingFactory"]


@dataclass(frozen=True)
class BlockingFactory:
    """A sink that writes its process id to ``out`` and then waits forever."""

    out: str

    def __call__(self, path: Path) -> FileSink:
        Path(self.out).write_text(str(os.getpid()))
        threading.Event().wait()
        raise AssertionError("unreachable")
