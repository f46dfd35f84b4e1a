"""Backfills on a Dask cluster (``datapair-ingest --cluster``): many files on many machines.

- :mod:`~engine.cluster.tasks`: what a worker runs, one unit (a day group) in its own process,
  QuestDB senders capped cluster-wide by a :class:`distributed.Semaphore`;
- :mod:`~engine.cluster.client`: skip what is complete, submit one task per unit, follow the futures.

May import: :mod:`engine.lake`, :mod:`engine.questdb` and everything below them (it is a driver of
the sinks, like the command lines, and nothing but the command lines imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.cluster.client import ClusterSummary, connect, ingest_cluster, parse_cluster
    from engine.cluster.tasks import FileReport, IngestJob, run_unit

__all__ = [
    "ClusterSummary",
    "FileReport",
    "IngestJob",
    "connect",
    "ingest_cluster",
    "parse_cluster",
    "run_unit",
]

_EXPORTS = {
    "ClusterSummary": "client",
    "connect": "client",
    "ingest_cluster": "client",
    "parse_cluster": "client",
    "FileReport": "tasks",
    "IngestJob": "tasks",
    "run_unit": "tasks",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
