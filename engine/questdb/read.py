"""Read ``mbo_ticks`` from QuestDB, one lake day at a time, over its HTTP API (or, with
:mod:`engine.questdb.qwp_read`, a QWP query built from :meth:`DayQuery.statement`).

Two documented endpoints are used: ``/exec`` (JSON) for ``count()`` and ``/exp?fmt=parquet``
(with ``compression_codec``, ``row_group_size`` and ``statistics_enabled``, documented for 9.x)
for the rows, timestamps selected as ``cast(.. AS LONG)`` (the exact nanoseconds of
``TIMESTAMP_NS``, whatever Parquet type the export would give a nanosecond timestamp), streamed
to a temporary file in chunks and then read back row group by row group,
so memory stays bounded whatever the size of the day. Transient failures (connection refused or
reset, timeouts, HTTP 5xx, a truncated body) are retried with exponential backoff; a query the
server rejects (HTTP 4xx) is not.

SQL is never built from user text: days are parsed to dates and written as ISO literals, the
table name and symbol must match strict patterns (:func:`check_table`, :func:`check_symbol`) and
the symbol is quoted as a SQL string literal.

A lake day is the UTC date of ts_recv, so a day's query selects on ``ts_recv``; it also bounds the
designated timestamp ``ts_event`` from above (one day past the day's end: DBN guarantees
``ts_event <= ts_recv``) so QuestDB skips the later partitions. Rows come ordered by symbol, each
symbol's in feed order (:data:`FEED_ORDER`), the lake's own order.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.dbn.columns import ACTION_DICT, COLUMNS, MBO_SCHEMA, SIDE_DICT
from engine.dbn.symbology import check_symbol
from engine.errors import ConfigError, QueryError, SinkError, StoreUnavailableError
from engine.questdb.conf import parse_questdb_url

__all__ = [
    "DEFAULT_TABLE",
    "DEFAULT_URL",
    "DayQuery",
    "ExportClient",
    "check_symbol",
    "check_table",
    "day_query",
    "iter_mbo_batches",
    "to_mbo_batch",
]

DEFAULT_URL = "http://localhost:9000"
DEFAULT_TABLE = "mbo_ticks"
CHUNK_BYTES = 1 << 20

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,126}$")
# Exchange symbols: letters, digits, spaces and a few punctuation marks ('BRN FMJ0024!', 'ES.c.0',
# 'BRK/B', 'ESZ5-ESH6'); never a quote, backslash, semicolon or control character.
_NULL_FILL = {  # QuestDB's NULL sentinels: a value equal to one is read back as NULL
    pa.int32(): -(2**31),
    pa.int64(): -(2**63),
}
_RETRY_HTTP = {500, 502, 503, 504}
_TS_COLUMNS = ("ts_event", "ts_recv")
FEED_ORDER = "symbol, ts_recv, instrument_id, publisher_id, day_seq"
"""A day's rows grouped by symbol, each symbol's rows in feed order (see :mod:`engine.questdb.keys`)."""


def check_table(name: str) -> str:
    """A QuestDB table name we can put in SQL as is (letters, digits, ``_``), else ConfigError."""
    if not _TABLE.match(name or ""):
        msg = f"bad table name {name!r}: expected letters, digits and '_' (e.g. mbo_ticks)"
        raise ConfigError(msg)
    return name


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ts_literal(day: dt.date) -> str:
    return _sql_string(f"{day.isoformat()}T00:00:00.000000000Z")


@dataclass(frozen=True)
class DayQuery:
    """The two statements that read one lake day (and optionally one symbol) of a table."""

    table: str
    day: dt.date
    symbol: str | None
    where: str

    @property
    def count_sql(self) -> str:
        return f"SELECT count() AS n FROM {self.table} WHERE {self.where}"

    @property
    def select_sql(self) -> str:
        """The day's rows; timestamps as ``cast(.. AS LONG)``, the exact epoch nanoseconds of ``TIMESTAMP_NS``.

        The export then never depends on how ``/exp`` encodes a nanosecond timestamp in Parquet.
        """
        cols = ", ".join(f"cast({c} AS LONG) AS {c}" if c in _TS_COLUMNS else c for c in COLUMNS)
        return f"SELECT {cols} FROM {self.table} WHERE {self.where} ORDER BY {FEED_ORDER}"

    def statement(self) -> tuple[str, list[object]]:
        """The day's rows as one SQL with bind parameters (``$1``..), for a QWP query.

        Timestamps come back as ``TIMESTAMP_NS`` (Arrow ``timestamp[ns]``: exact), and the day's
        bounds and the symbol travel as binds, not in the SQL text.
        """
        nxt = self.day + dt.timedelta(days=1)
        binds: list[object] = [_ns_bind(self.day), _ns_bind(nxt), _ns_bind(nxt + dt.timedelta(days=1))]
        where = "ts_recv >= $1 AND ts_recv < $2 AND ts_event < $3"
        if self.symbol is not None:
            where += " AND symbol = $4"
            binds.append(self.symbol)
        sql = f"SELECT {', '.join(COLUMNS)} FROM {self.table} WHERE {where} ORDER BY {FEED_ORDER}"
        return sql, binds


def _ns_bind(day: dt.date) -> object:
    import questdb

    return questdb.TimestampNanos((day - dt.date(1970, 1, 1)).days * 86_400 * 10**9)


def day_query(table: str, day: dt.date, symbol: str | None = None) -> DayQuery:
    """The SQL selecting the rows whose ts_recv falls on ``day`` (UTC), validated and quoted."""
    check_table(table)
    if not isinstance(day, dt.date):
        msg = f"day must be a date, got {day!r}"
        raise QueryError(msg)
    nxt = day + dt.timedelta(days=1)
    where = (
        f"ts_recv >= {_ts_literal(day)} AND ts_recv < {_ts_literal(nxt)} "
        f"AND ts_event < {_ts_literal(nxt + dt.timedelta(days=1))}"
    )
    if symbol is not None:
        where += f" AND symbol = {_sql_string(check_symbol(symbol))}"
    return DayQuery(table, day, symbol, where)


def _server_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace").strip()
    if isinstance(doc, dict) and "error" in doc:
        pos = f" (at character {doc['position']})" if "position" in doc else ""
        return f"{doc['error']}{pos}"
    return str(doc)[:300]


class ExportClient:
    """A small client of QuestDB's HTTP API (``/exec`` and ``/exp``) with retries.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://localhost:9000`` (env ``QUESTDB_URL``).
    timeout : float
        Seconds to wait for a connection or for the next bytes of an answer.
    retries : int
        Further attempts after a transient failure.
    backoff : float
        Seconds before the first retry, doubled each time.
    """

    def __init__(
        self, url: str = DEFAULT_URL, *, timeout: float = 60.0, retries: int = 3, backoff: float = 0.5
    ) -> None:
        try:  # any form QUESTDB_URL takes: URL (with credentials), host:port, client conf string
            address = parse_questdb_url(url)
        except ConfigError as exc:
            msg = f"bad QuestDB URL {url!r}: expected http://HOST:PORT (e.g. {DEFAULT_URL}); {exc}"
            raise ConfigError(msg) from None
        self.url = address.http_url
        self._auth = address.auth_header()
        self.timeout = timeout
        self.retries = max(int(retries), 0)
        self.backoff = backoff

    def _request(self, endpoint: str, params: dict[str, str], handle: Callable[[object], object]) -> object:
        query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        full = f"{self.url}/{endpoint}?{query}"
        delay = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            req = urllib.request.Request(full, headers={"Authorization": self._auth} if self._auth else {})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return handle(resp)
            except urllib.error.HTTPError as exc:
                body = exc.read()
                if exc.code not in _RETRY_HTTP or last:
                    msg = f"QuestDB at {self.url} refused /{endpoint} (HTTP {exc.code}): {_server_message(body)}"
                    raise (QueryError if 400 <= exc.code < 500 else StoreUnavailableError)(msg) from None
            except (
                urllib.error.URLError,
                http.client.HTTPException,
                ConnectionError,
                TimeoutError,
                _Truncated,
            ) as exc:
                if last:
                    reason = getattr(exc, "reason", exc)
                    msg = f"QuestDB at {self.url} did not answer /{endpoint} after {self.retries + 1} attempts: {reason}"
                    raise StoreUnavailableError(msg) from None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def exec_json(self, sql: str) -> dict:
        """Run ``sql`` through ``/exec`` and return the JSON answer."""

        def read(resp: object) -> dict:
            body = resp.read()  # type: ignore[attr-defined]
            try:
                doc = json.loads(body)
            except ValueError:
                msg = f"QuestDB at {self.url}: /exec answered something that is not JSON: {body[:200]!r}"
                raise StoreUnavailableError(msg) from None
            if "error" in doc:
                msg = f"QuestDB at {self.url} rejected the query: {_server_message(body)}"
                raise QueryError(msg)
            return doc

        return self._request("exec", {"query": sql}, read)  # type: ignore[return-value]

    def count(self, sql: str) -> int:
        """The single integer a ``SELECT count() ...`` statement returns."""
        doc = self.exec_json(sql)
        try:
            return int(doc["dataset"][0][0])
        except (KeyError, IndexError, TypeError, ValueError):
            msg = f"QuestDB at {self.url}: expected one count in the /exec answer, got {str(doc)[:200]}"
            raise StoreUnavailableError(msg) from None

    def export_parquet(
        self,
        sql: str,
        dest: str | os.PathLike[str],
        *,
        row_group_size: int = 100_000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Stream the Parquet export of ``sql`` (``/exp?fmt=parquet``) into ``dest``; return its bytes.

        ``progress`` is called with the bytes received so far. A body shorter than its
        Content-Length, or that is not a Parquet file, counts as a transient failure.
        """
        params = {
            "query": sql,
            "fmt": "parquet",
            "compression_codec": "LZ4_RAW",
            "row_group_size": str(int(row_group_size)),
            "statistics_enabled": "false",
        }
        path = Path(dest)

        def read(resp: object) -> int:
            length = resp.headers.get("Content-Length")  # type: ignore[attr-defined]
            n = 0
            with open(path, "wb") as out:
                while chunk := resp.read(CHUNK_BYTES):  # type: ignore[attr-defined]
                    out.write(chunk)
                    n += len(chunk)
                    if progress is not None:
                        progress(n)
            if length is not None and n != int(length):
                raise _Truncated(f"received {n} of {length} bytes")
            with open(path, "rb") as f:
                head = f.read(4)
                f.seek(max(n - 4, 0))
                tail = f.read(4)
            if n < 12 or head != b"PAR1" or tail != b"PAR1":
                if head[:1] in (b"{", b"[") and n < 65536:
                    msg = f"QuestDB at {self.url} rejected the export: {_server_message(path.read_bytes())}"
                    raise QueryError(msg)
                raise _Truncated(f"the {n}-byte answer is not a complete Parquet file")
            return n

        return self._request("exp", params, read)  # type: ignore[return-value]

    stream_retries = 0
    """Further tries of a whole day when :meth:`read_day` fails after yielding rows (none: the
    download is retried before any row is read)."""

    def read_day(
        self, q: DayQuery, scratch: Path, progress: Callable[[int], None] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The day's rows as :data:`MBO_SCHEMA` batches: ``/exp?fmt=parquet`` into ``scratch`` (bounded
        memory whatever the day's size), then read back row group by row group; ``scratch`` is removed."""
        try:
            self.export_parquet(q.select_sql, scratch, progress=progress)
            yield from iter_mbo_batches(scratch)
        finally:
            scratch.unlink(missing_ok=True)


class _Truncated(Exception):
    """A download ended early (retried)."""


def _column(table: pa.Table | pa.RecordBatch, name: str, where: str) -> pa.Array | pa.ChunkedArray:
    if name not in table.schema.names:
        msg = f"{where}: no column {name!r} (expected the mbo_ticks columns {list(COLUMNS)})"
        raise SinkError(msg)
    return table.column(name)


def _codes(values: pa.Array, dictionary: pa.Array, name: str, where: str) -> pa.Array:
    text = values.cast(pa.string())
    idx = pc.index_in(text, value_set=dictionary)
    if idx.null_count:
        bad = pc.unique(pc.filter(text, pc.is_null(idx))).to_pylist()[:5]
        msg = f"{where}: unknown {name} values {bad}, expected one of {dictionary.to_pylist()}"
        raise SinkError(msg)
    return pa.DictionaryArray.from_arrays(idx.cast(pa.int32()), dictionary)


def to_mbo_batch(batch: pa.RecordBatch, where: str = "QuestDB export") -> pa.RecordBatch:
    """A batch as QuestDB exports it -> a :data:`MBO_SCHEMA` batch (exactly its columns, in order).

    Extra columns are ignored. Integer columns are cast keeping their bit patterns (``INT``
    holds uint32 values), QuestDB NULLs are turned back into the sentinel values that were
    stored (NaN price, ``INT``/``LONG`` minimum), and symbol/action/side become dictionaries
    (action and side over the lake's fixed dictionaries).

    Raises
    ------
    SinkError
        If a column is missing, or an action/side value or a timestamp is not valid.
    """
    cols = []
    for f in MBO_SCHEMA:
        arr = _column(batch, f.name, where)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if f.name == "symbol":
            text = arr.cast(pa.string())
            if text.null_count:
                msg = f"{where}: NULL symbol in {text.null_count} rows"
                raise SinkError(msg)
            enc = pc.dictionary_encode(text)
            cols.append(pa.DictionaryArray.from_arrays(enc.indices.cast(pa.int32()), enc.dictionary))
        elif f.name == "action":
            cols.append(_codes(arr, ACTION_DICT, "action", where))
        elif f.name == "side":
            cols.append(_codes(arr, SIDE_DICT, "side", where))
        elif pa.types.is_timestamp(f.type):
            if arr.null_count:
                msg = f"{where}: NULL {f.name} in {arr.null_count} rows"
                raise SinkError(msg)
            if pa.types.is_timestamp(arr.type):
                arr = arr.cast(pa.timestamp(arr.type.unit, tz="UTC")).cast(f.type)
            else:
                arr = arr.cast(pa.int64()).view(f.type) if arr.type.bit_width == 64 else arr.cast(f.type)
            cols.append(arr)
        elif pa.types.is_floating(f.type):
            arr = arr.cast(f.type)
            cols.append(arr.fill_null(np.nan) if arr.null_count else arr)
        else:
            if arr.null_count:
                src = arr.type if arr.type in _NULL_FILL else pa.int64()
                arr = arr.cast(src).fill_null(_NULL_FILL[src])
            cols.append(arr.cast(f.type, safe=False))
    return pa.RecordBatch.from_arrays(cols, schema=MBO_SCHEMA)


def iter_mbo_batches(path: str | os.PathLike[str], batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """Read an exported Parquet file batch by batch, as :data:`MBO_SCHEMA` batches.

    Memory is one row group of the export at a time (the export asks QuestDB for 100,000-row groups).
    """
    try:
        pf = pq.ParquetFile(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        msg = f"{path}: the QuestDB export is not a readable Parquet file ({exc})"
        raise SinkError(msg) from None
    with pf:
        names = set(pf.schema_arrow.names)
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            msg = f"{path}: the QuestDB export lacks the columns {missing}"
            raise SinkError(msg)
        # Row group by row group: pyarrow's iter_batches reads ahead without bound on big files.
        for g in range(pf.num_row_groups):
            for batch in pf.read_row_group(g, columns=list(COLUMNS)).to_batches(max_chunksize=batch_rows):
                yield to_mbo_batch(batch, str(path))
