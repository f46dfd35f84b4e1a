"""The QuestDB store: the ``mbo_ticks`` table through QuestDB's documented HTTP ``/exec`` endpoint.

``/exec?query=SQL`` answers JSON ``{"columns": [{"name", "type"}], "dataset": [[...], ...],
"count": n}``, or ``{"error": ..., "position": n}`` with HTTP 400. ``/exec`` has no bind
parameters, so no text from a request ever reaches the SQL unquoted: the symbol must pass
:func:`engine.dbn.symbology.check_symbol` (printable, no control characters) and is then quoted
as a string literal with ``'`` doubled (QuestDB's only escape in a string literal),
timestamps and limits are formatted from Python ``int``s, actions come from the fixed
``ACTIONS`` letters and the table name is checked once at start-up.

Timestamps are selected as ``cast(ts AS LONG)`` (nanoseconds for ``TIMESTAMP_NS``), so they
arrive as exact JSON integers; QuestDB's NULL sentinels of INT and LONG columns (which a
uint32/uint64 value can hit) are mapped back to their integer values.

Rows are read in pages of ``page_rows`` in designated-timestamp order (no SQL sort): a page's
rows below its last ``ts_event`` are final; the next page starts at that ``ts_event``; a page that
holds a single timestamp fetches that timestamp's rows whole. Each page is sorted locally by
``(ts_event, ts_recv, sequence)``, so answers equal the lake store's.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from engine.dbn.kernels import ACTIONS
from engine.errors import ConfigError, StoreUnavailableError
from engine.questdb.conf import ServerAddress
from engine.questdb.conf import parse_questdb_url as parse_server_address
from service.stores.base import (
    RangeQuery,
    Store,
    StoreInfo,
    SymbolRange,
    check_symbol,
    key_order,
    output_schema,
    read_columns,
    rebatch,
    skip_until_after,
)

__all__ = ["QuestDBStore", "parse_questdb_url", "sql_symbol"]

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,126}$")
_INT_NULL = -(2**31)
_LONG_NULL = -(2**63)
_TS_COLS = ("ts_event", "ts_recv")
_INT_COLS = {"instrument_id", "size", "flags", "ts_in_delta"}
_LONG_COLS = {"order_id", "price_raw", "sequence"}


def _address(url: str) -> ServerAddress:
    try:
        return parse_server_address(url)
    except ConfigError as exc:
        msg = f"QUESTDB_URL {url!r} is not an HTTP address like http://127.0.0.1:9000: {exc}"
        raise ConfigError(msg) from None


def parse_questdb_url(url: str) -> tuple[str, str, int]:
    """``QUESTDB_URL`` in any form the engine takes -> (scheme, host, port) of the HTTP endpoint.

    ``http://host:port`` (credentials allowed), ``host[:port]``, or a client conf string
    (``http::addr=host:port;username=...;password=...;``); see :mod:`engine.questdb.conf`.
    """
    a = _address(url)
    return ("https" if a.tls else "http"), a.host, a.port


def sql_symbol(symbol: str) -> str:
    """A symbol as a quoted SQL string literal (``'`` doubled, as QuestDB reads it), after :func:`check_symbol`."""
    return "'" + check_symbol(symbol).replace("'", "''") + "'"


def _sql_actions(actions: tuple[str, ...]) -> str:
    bad = [a for a in actions if a not in ACTIONS]
    if bad:
        msg = f"unknown action(s) {bad}; actions are {ACTIONS}"
        raise ConfigError(msg)
    return "(" + ", ".join(f"'{a}'" for a in actions) + ")"


def _close_all(conns: set[http.client.HTTPConnection], lock: threading.Lock) -> None:
    with lock:
        for conn in conns:
            conn.close()
        conns.clear()


class QuestDBStore(Store):
    """MBO rows from a QuestDB table over HTTP ``/exec``.

    Parameters
    ----------
    url : str
        ``QUESTDB_URL``, e.g. ``http://127.0.0.1:9000``.
    table : str
        The table (default ``mbo_ticks``; DESIGN.md section 3 columns, ts_event designated).
    timeout : float
        Seconds to wait for QuestDB on one request.
    page_rows : int
        Rows per ``/exec`` page when streaming.
    """

    kind = "questdb"

    def __init__(
        self,
        url: str,
        table: str = "mbo_ticks",
        *,
        timeout: float = 30.0,
        page_rows: int = 20_000,
        cache_seconds: float = 5.0,
    ) -> None:
        address = _address(url)
        self.scheme, self.host, self.port = ("https" if address.tls else "http"), address.host, address.port
        self._headers = {"Accept": "application/json"}
        auth = address.auth_header()
        if auth:
            self._headers["Authorization"] = auth
        if not _TABLE.fullmatch(table):
            msg = f"QuestDB table name {table!r} must be letters, digits and _ (not starting with a digit)"
            raise ConfigError(msg)
        self.table = table
        self.timeout = timeout
        self.page_rows = max(2, int(page_rows))
        self.cache_seconds = cache_seconds
        self._local = threading.local()
        self._symbols: tuple[float, list[str]] | None = None
        self._open: set[http.client.HTTPConnection] = set()  # every thread's connection, to close them all
        self._open_lock = threading.Lock()
        weakref.finalize(self, _close_all, self._open, self._open_lock)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def info(self) -> StoreInfo:
        return StoreInfo(self.kind, self.url, {"table": self.table})

    # -- transport -----------------------------------------------------------------------------

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
            with self._open_lock:
                self._open.add(conn)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._open_lock:
                self._open.discard(conn)

    def close(self) -> None:
        """Close every thread's connection (a later call opens new ones)."""
        _close_all(self._open, self._open_lock)
        self._local = threading.local()

    def exec(self, sql: str) -> dict:
        """Run one statement through ``/exec``; the decoded JSON answer.

        Raises
        ------
        StoreUnavailableError
            QuestDB does not answer, answers non-JSON, or reports an error (the message quotes it).
        """
        path = "/exec?count=false&query=" + quote(sql, safe="")
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request("GET", path, headers=self._headers)
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                break
            except (OSError, http.client.HTTPException) as exc:
                self._drop_conn()
                if attempt:
                    msg = f"QuestDB at {self.url} does not answer: {exc}"
                    raise StoreUnavailableError(msg) from None
        try:
            doc = json.loads(body)
        except ValueError:
            msg = f"QuestDB at {self.url} answered HTTP {status} with a body that is not JSON: {body[:200]!r}"
            raise StoreUnavailableError(msg) from None
        if status != 200 or "error" in doc:
            msg = f"QuestDB at {self.url} failed on table {self.table}: {doc.get('error', f'HTTP {status}')}"
            raise StoreUnavailableError(msg)
        return doc

    # -- metadata answers ----------------------------------------------------------------------

    def ping(self) -> dict[str, object]:
        doc = self.exec(f"SELECT count() FROM {self.table}")
        return {"table": self.table, "rows": int(doc["dataset"][0][0])}

    def symbols(self) -> list[str]:
        now = time.monotonic()
        if self._symbols is not None and now - self._symbols[0] < self.cache_seconds:
            return self._symbols[1]
        doc = self.exec(f"SELECT DISTINCT symbol FROM {self.table}")
        names = sorted(str(r[0]) for r in doc["dataset"] if r[0] is not None)
        self._symbols = (now, names)
        return names

    def time_range(self, symbol: str) -> SymbolRange | None:
        doc = self.exec(
            f"SELECT cast(min(ts_event) AS LONG), cast(max(ts_event) AS LONG), count() "
            f"FROM {self.table} WHERE symbol = {sql_symbol(symbol)}"
        )
        lo, hi, n = doc["dataset"][0] if doc["dataset"] else (None, None, 0)
        if not n or lo is None or hi is None:
            return None
        return SymbolRange(symbol, int(lo), int(hi), int(n))

    def _where(self, query: RangeQuery, lo: int, hi: int | None = None, eq: int | None = None) -> str:
        parts = [f"symbol = {sql_symbol(query.symbol)}"]
        if eq is not None:
            parts.append(f"ts_event = {int(eq)}")
        else:
            parts.append(f"ts_event >= {int(lo)}")
            if hi is not None:
                parts.append(f"ts_event <= {int(hi)}")
        if query.actions is not None:
            parts.append(f"action IN {_sql_actions(query.actions)}")
        return " AND ".join(parts)

    def count(self, query: RangeQuery, cap: int | None = None) -> int:
        doc = self.exec(
            f"SELECT count() FROM {self.table} WHERE {self._where(query, query.first_ts, query.end)}"
        )
        return int(doc["dataset"][0][0]) if doc["dataset"] else 0

    # -- rows ----------------------------------------------------------------------------------

    def _select(self, cols: list[str]) -> str:
        return ", ".join(f"cast({c} AS LONG) AS {c}_ns" if c in _TS_COLS else c for c in cols)

    def _page(self, cols: list[str], schema: pa.Schema, where: str, limit: int | None) -> pa.Table:
        sql = f"SELECT {self._select(cols)} FROM {self.table} WHERE {where}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        doc = self.exec(sql)
        return _to_table(doc.get("dataset") or [], cols, schema)

    def scan(
        self, query: RangeQuery, columns: Sequence[str] | None = None, batch_rows: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        schema = output_schema(read_columns(columns))
        out_names = output_schema(columns).names
        cols = list(schema.names)
        for b in skip_until_after(rebatch(self._pages(query, cols, schema), batch_rows), query.after):
            yield b.select(out_names) if b.schema.names != out_names else b

    def _pages(self, query: RangeQuery, cols: list[str], schema: pa.Schema) -> Iterator[pa.Table]:
        lo, hi, n = query.first_ts, query.end, self.page_rows
        while lo <= hi:
            page = self._page(cols, schema, self._where(query, lo, hi), n)
            if page.num_rows == 0:
                return
            ts = page.column("ts_event").cast(pa.int64()).to_numpy()
            if len(ts) > 1 and bool(np.any(ts[1:] < ts[:-1])):
                msg = f"QuestDB table {self.table} returned rows out of ts_event order (is ts_event its designated timestamp?)"
                raise StoreUnavailableError(msg)
            if page.num_rows < n:
                yield page.take(key_order(page))
                return
            last = int(ts[-1])
            cut = int(np.searchsorted(ts, last, side="left"))
            if cut == 0:  # the whole page is one timestamp: take all of its rows at once
                same = self._page(cols, schema, self._where(query, 0, eq=last), None)
                yield same.take(key_order(same))
                lo = last + 1
            else:
                head = page.slice(0, cut)
                yield head.take(key_order(head))
                lo = last


def _to_table(rows: list[list], cols: list[str], schema: pa.Schema) -> pa.Table:
    """``/exec`` dataset rows -> a table of ``schema`` (columns in ``cols`` order)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in cols]
    arrays = []
    for name, values in zip(cols, columns, strict=True):
        typ = schema.field(name).type
        if name in _TS_COLS:
            arrays.append(pa.array(np.asarray(values, dtype=np.int64)).view(pa.int64()).cast(typ))
        elif pa.types.is_dictionary(typ):
            arrays.append(pa.array(values, pa.string()).dictionary_encode().cast(typ))
        elif pa.types.is_floating(typ):
            arrays.append(
                pa.array(np.asarray([np.nan if v is None else v for v in values], dtype=np.float64))
            )
        else:
            null = _LONG_NULL if name in _LONG_COLS else _INT_NULL if name in _INT_COLS else 0
            vals = values if None not in values else [null if v is None else v for v in values]
            arrays.append(pa.array(np.asarray(vals, dtype=np.int64)).cast(typ))
    return pa.Table.from_arrays(arrays, schema=schema)
