"""QuestDB plumbing of the QuestDB sink: configuration, DDL, REST client, senders, resume.

- :mod:`engine.questdb.cli`: the ``--questdb`` flags and input expansion for ``engine.ingest``.
- :mod:`engine.questdb.conf`: ``QUESTDB_URL`` / conf strings / env vars -> :class:`QuestDBOptions`.
- :mod:`engine.questdb.ddl`: the ``mbo_ticks`` and ``ingest_log`` DDL, creation and schema check.
- :mod:`engine.questdb.http`: ``/exec`` with retry and backoff.
- :mod:`engine.questdb.keys`: ``day_seq`` numbering (the dedup key) and per-file counts.
- :mod:`engine.questdb.protocols`: QWP/WebSocket, ILP/HTTP and ILP/TCP senders and batching.
- :mod:`engine.questdb.resume`: completion records and ``count()`` verification.

The sink itself (and ``ingest_questdb``) is :mod:`engine.sinks.questdb`.
"""

from __future__ import annotations

from engine.questdb.conf import ENV_VARS, QuestDBOptions, ServerAddress, parse_questdb_url
from engine.questdb.ddl import (
    DEDUP_KEYS,
    MBO_COLUMNS,
    ensure_tables,
    log_table_ddl,
    mbo_table_ddl,
    schema_problems,
)
from engine.questdb.http import Backoff, QuestDBHttp, retry

__all__ = [
    "DEDUP_KEYS",
    "ENV_VARS",
    "MBO_COLUMNS",
    "Backoff",
    "QuestDBHttp",
    "QuestDBOptions",
    "ServerAddress",
    "ensure_tables",
    "log_table_ddl",
    "mbo_table_ddl",
    "parse_questdb_url",
    "retry",
    "schema_problems",
]
