"""The Parquet lake: its layout, its writer (a sink) and its readers.

One ``mbo_YYYY-MM-DD.parquet`` per UTC day of ts_recv (and optionally per symbol-day), zstd,
footer metadata that makes reruns exact. What lives here:

- :mod:`~engine.lake.layout`: file names, listing, footer metadata, temp names, the lake lock;
- :mod:`~engine.lake.kernels`: Numba kernels for stripes (sort, gather, row-group cuts);
- :mod:`~engine.lake.options`: :class:`ParquetOptions`, the stripe columns, the encoder process
  (NumPy only: what the process that plans a run needs);
- :mod:`~engine.lake.encode`: stripes -> Parquet parts (encoders);
- :mod:`~engine.lake.footer`: joins encoded parts into one file (footer codec);
- :mod:`~engine.lake.outputs`: day and per-symbol files, committed beside other sources' rows;
- :mod:`~engine.lake.sink`: :class:`ParquetSink`, the pipeline's lake sink;
- :mod:`~engine.lake.writer`: a file from batches already in symbol order (the QuestDB export);
- :mod:`~engine.lake.ingest`: :func:`ingest_parquet`, what ``datapair-ingest --parquet`` runs;
- :mod:`~engine.lake.scan`, :mod:`~engine.lake.query`, :mod:`~engine.lake.ohlcv`: reading it back
  with Polars (row-group pruning, SQL on ``df``, OHLCV bars);
- :mod:`~engine.lake.arrow`: int64 views and symbol/action masks over its Arrow columns (the
  service's stores and the order book's reader share them).

May import: :mod:`engine.pipeline`, :mod:`engine.dbn` and the shared top-level modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.lake.ingest import IngestSummary, ParquetSinkFactory, ingest_parquet, is_complete
    from engine.lake.layout import LakeFile, LakeInfo, SourceEntry, lake_file_name, list_lake, read_lake_info
    from engine.lake.ohlcv import ohlcv
    from engine.lake.options import ParquetOptions
    from engine.lake.query import format_frame, run_query
    from engine.lake.scan import ScanPlan, plan_scan, scan_lake
    from engine.lake.sink import ParquetSink
    from engine.lake.writer import RunWriter

__all__ = [
    "IngestSummary",
    "LakeFile",
    "LakeInfo",
    "ParquetOptions",
    "ParquetSink",
    "ParquetSinkFactory",
    "RunWriter",
    "ScanPlan",
    "SourceEntry",
    "format_frame",
    "ingest_parquet",
    "is_complete",
    "lake_file_name",
    "list_lake",
    "ohlcv",
    "plan_scan",
    "read_lake_info",
    "run_query",
    "scan_lake",
]

_EXPORTS = {
    "ParquetOptions": "options",
    "IngestSummary": "ingest",
    "ParquetSinkFactory": "ingest",
    "ingest_parquet": "ingest",
    "is_complete": "ingest",
    "LakeFile": "layout",
    "LakeInfo": "layout",
    "SourceEntry": "layout",
    "lake_file_name": "layout",
    "list_lake": "layout",
    "read_lake_info": "layout",
    "ohlcv": "ohlcv",
    "format_frame": "query",
    "run_query": "query",
    "ScanPlan": "scan",
    "plan_scan": "scan",
    "scan_lake": "scan",
    "ParquetSink": "sink",
    "RunWriter": "writer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

SINK_MODULES = ("engine.lake.sink",)
"""What building a lake sink imports (pyarrow, Numba): the workers' forkserver preloads it, the
process that plans the run never imports it (``ParquetSinkFactory.modules``, ``datapair-ingest``)."""
