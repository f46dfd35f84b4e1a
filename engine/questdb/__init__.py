"""QuestDB: the ``mbo_ticks`` table as a sink, and as a source for the export and the service.

- :mod:`~engine.questdb.conf`: ``QUESTDB_URL`` / conf strings / env vars -> :class:`QuestDBOptions`;
- :mod:`~engine.questdb.args`: the ``--questdb`` flags of ``datapair-ingest``;
- :mod:`~engine.questdb.ddl`: the ``mbo_ticks`` and ``ingest_log`` DDL, creation and schema check;
- :mod:`~engine.questdb.http`: ``/exec`` with retry and backoff;
- :mod:`~engine.questdb.keys`: ``day_seq`` numbering (the dedup key, per instrument) and per-file counts;
- :mod:`~engine.questdb.protocols`: QWP/WebSocket, ILP/HTTP and ILP/TCP senders and batching;
- :mod:`~engine.questdb.resume`: completion records and ``count()`` verification;
- :mod:`~engine.questdb.sink`: :class:`QuestDBSink`, the pipeline's QuestDB sink;
- :mod:`~engine.questdb.ingest`: :func:`ingest_questdb`, loading files on their own;
- :mod:`~engine.questdb.read`, :mod:`~engine.questdb.qwp_read`: a day's rows over ``/exp`` or a QWP query;
- :mod:`~engine.questdb.export`: QuestDB days -> lake files.

May import: :mod:`engine.lake` (the export writes lake files), :mod:`engine.pipeline`,
:mod:`engine.dbn` and the shared top-level modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.questdb.conf import ENV_VARS, QuestDBOptions, ServerAddress, parse_questdb_url
    from engine.questdb.ddl import (
        DEDUP_KEYS,
        MBO_COLUMNS,
        ensure_tables,
        log_table_ddl,
        mbo_table_ddl,
        schema_problems,
    )
    from engine.questdb.export import export_day, export_days
    from engine.questdb.http import Backoff, QuestDBHttp, retry
    from engine.questdb.ingest import ingest_questdb, questdb_sink_factory
    from engine.questdb.sink import QuestDBSink, QuestDBSinkFactory

__all__ = [
    "DEDUP_KEYS",
    "ENV_VARS",
    "MBO_COLUMNS",
    "Backoff",
    "QuestDBHttp",
    "QuestDBOptions",
    "QuestDBSink",
    "QuestDBSinkFactory",
    "ServerAddress",
    "ensure_tables",
    "export_day",
    "export_days",
    "ingest_questdb",
    "log_table_ddl",
    "mbo_table_ddl",
    "parse_questdb_url",
    "questdb_sink_factory",
    "retry",
    "schema_problems",
]

_EXPORTS = {
    "ENV_VARS": "conf",
    "QuestDBOptions": "conf",
    "ServerAddress": "conf",
    "parse_questdb_url": "conf",
    "DEDUP_KEYS": "ddl",
    "MBO_COLUMNS": "ddl",
    "ensure_tables": "ddl",
    "log_table_ddl": "ddl",
    "mbo_table_ddl": "ddl",
    "schema_problems": "ddl",
    "export_day": "export",
    "export_days": "export",
    "Backoff": "http",
    "QuestDBHttp": "http",
    "retry": "http",
    "ingest_questdb": "ingest",
    "questdb_sink_factory": "ingest",
    "QuestDBSink": "sink",
    "QuestDBSinkFactory": "sink",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
