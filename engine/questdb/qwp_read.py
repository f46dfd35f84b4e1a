"""Read QuestDB days through the client's QWP query API: ``questdb.connect(...).query(sql, binds)``.

The answer streams as Arrow record batches over the WebSocket (``/read/v1``) in the table's own
types (``TIMESTAMP_NS`` as ``timestamp[ns]``, ``SYMBOL`` as dictionaries), with the day's bounds
and the symbol as bind parameters; each batch becomes an :data:`~engine.dbn.columns.MBO_SCHEMA`
batch through :func:`~engine.questdb.read.to_mbo_batch`, with no file in between. ``count()``
and errors still go through ``/exec`` (:class:`~engine.questdb.read.ExportClient`).

A failure after rows went out cannot be resumed mid-stream: the export starts the day again
(``stream_retries``), which is exact because nothing is renamed into place before the count checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import questdb

from engine.errors import QueryError, StoreUnavailableError
from engine.questdb.conf import parse_questdb_url
from engine.questdb.protocols import is_transient
from engine.questdb.read import DayQuery, ExportClient, to_mbo_batch

__all__ = ["QwpExportClient"]


class QwpExportClient(ExportClient):
    """:class:`ExportClient` whose rows come from a QWP query instead of ``/exp?fmt=parquet``.

    Parameters are those of :class:`ExportClient`; ``retries`` also bounds the restarts of a day
    whose stream broke. (QuestDB 9.4 has no per-query timeout: the server's ``query.timeout`` applies.)
    """

    def __init__(self, url: str, *, timeout: float = 60.0, retries: int = 3, backoff: float = 0.5) -> None:
        super().__init__(url, timeout=timeout, retries=retries, backoff=backoff)
        self._conf = parse_questdb_url(url).qwp_conf(query_pool_min=1, query_pool_max=1)
        self._db: Any = None
        self.stream_retries = self.retries

    def _connect(self) -> Any:
        if self._db is None:
            try:
                self._db = questdb.connect(self._conf)
            except questdb.QuestDBError as exc:
                msg = f"QuestDB at {self.url} did not accept a QWP query connection: {exc}"
                raise StoreUnavailableError(msg) from None
        return self._db

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(questdb.QuestDBError):
                db.close()

    def read_day(
        self, q: DayQuery, scratch: Path, progress: Callable[[int], None] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The day's rows as :data:`MBO_SCHEMA` batches, streamed (``scratch`` is not used)."""
        sql, binds = q.statement()
        where = f"QuestDB {q.table} {q.day}"
        received = 0
        try:
            with self._connect().query(sql, binds) as result:
                for batch in result.iter_arrow():
                    received += batch.nbytes
                    if progress is not None:
                        progress(received)
                    yield to_mbo_batch(batch, where)
        except questdb.QuestDBError as exc:
            if is_transient(exc) or getattr(exc.code, "name", "") in ("QueryTimeout", "ProtocolError"):
                self.close()  # a broken connection: the next try opens a new one
                msg = f"QuestDB at {self.url}: the QWP query of {q.day} broke off: {exc}"
                raise StoreUnavailableError(msg) from None
            msg = f"QuestDB at {self.url} refused the QWP query of {q.day}: {exc}"
            raise QueryError(msg) from None
