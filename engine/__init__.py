"""datapair engine: stream DBN MBO files into columns and hand them to sinks."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
