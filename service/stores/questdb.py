"""The QuestDB store: the ``mbo_ticks`` table through QuestDB's documented HTTP ``/exec`` endpoint.

``/exec?query=SQL`` answers JSON ``{"columns": [{"name", "type"}], "dataset": [[...], ...]}``, or
``{"error": ..., "position": n}`` with HTTP 400. ``/exec`` takes no bind parameters, so no request
text reaches the SQL as is: the symbol must pass :func:`engine.dbn.symbology.check_symbol` (1-70 printable characters) and is
then written as a quoted SQL string (quotes doubled), timestamps, limits and offsets are formatted
from Python ``int``s, actions come from the fixed ``ACTIONS`` letters, bar widths from a fixed
table, and the table name is checked once at start-up. Calls go through
:class:`~service.stores.exec_client.ExecClient`: short timeouts, a circuit breaker, a bound on
calls waiting on the server.

Timestamps are selected as ``cast(ts AS LONG)`` (nanoseconds for ``TIMESTAMP_NS``), so they arrive
as exact JSON integers; QuestDB's NULL sentinels of INT and LONG columns (which a uint32/uint64
value can hit) are mapped back to their integer values.

Rows come in feed order, ``ORDER BY ts_recv, instrument_id, publisher_id, day_seq`` (``day_seq``:
a record's place among its instrument's records of its UTC day, in the file's order), read in
pages of ``page_rows`` by keyset: each page asks for the rows after the last one of the previous
page, so answers equal the lake store's and no row is read twice. A deep offset
(:meth:`QuestDBStore.seek`) is found by the server (``LIMIT n - 1, n`` and a ``count()``), never by
reading the rows before it. Chart bars are computed by the server (``SAMPLE BY ... ALIGN TO
CALENDAR`` over the trades by ts_event, ties in feed order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from engine.dbn.kernels import ACTIONS
from engine.dbn.metadata import UNDEF_PRICE
from engine.errors import ConfigError
from engine.questdb.conf import ServerAddress, check_identifier
from engine.questdb.conf import parse_questdb_url as parse_server_address
from service.bars import RESOLUTIONS, Bars
from service.stores.base import (
    EVENT_KEY_COLUMNS,
    KEY_COLUMNS,
    Cursor,
    RangeQuery,
    Store,
    StoreInfo,
    SymbolRange,
    check_symbol,
    ints,
    output_schema,
    read_columns,
    rebatch,
)
from service.stores.exec_client import CircuitBreaker, ExecClient

__all__ = ["QuestDBStore", "parse_questdb_url", "sql_symbol"]

_INT_NULL = -(2**31)
_LONG_NULL = -(2**63)
_TS_COLS = ("ts_event", "ts_recv")
_INT_COLS = {"instrument_id", "size", "flags", "ts_in_delta"}
_LONG_COLS = {"order_id", "price_raw", "sequence"}
_SAMPLE_UNITS = {step: name for name, step in RESOLUTIONS.items()}
"""Bar width in ns -> SAMPLE BY unit (the chart API's resolutions are QuestDB's own spellings)."""


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


class QuestDBStore(Store):
    """MBO rows from a QuestDB table over HTTP ``/exec``.

    Parameters
    ----------
    url : str
        ``QUESTDB_URL``, e.g. ``http://127.0.0.1:9000``.
    table : str
        The table (default ``mbo_ticks``; DESIGN.md section 3 columns and day_seq, ts_event designated).
    connect_timeout, timeout : float
        Seconds to connect, and to wait for the first (and each further) byte of an answer.
    retry_after : float
        Seconds the store answers "unavailable" at once after QuestDB failed, before it tries again.
    max_calls : int
        Calls that may wait on QuestDB at once (keep it below the server's threads).
    page_rows : int
        Rows per ``/exec`` page when streaming.
    """

    kind = "questdb"

    def __init__(
        self,
        url: str,
        table: str = "mbo_ticks",
        *,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
        retry_after: float = 5.0,
        max_calls: int = 6,
        page_rows: int = 20_000,
        cache_seconds: float = 5.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        address = _address(url)
        self.scheme, self.host, self.port = ("https" if address.tls else "http"), address.host, address.port
        try:
            self.table = check_identifier(table)
        except ConfigError:
            msg = f"QuestDB table name {table!r} must be letters, digits and _ (not starting with a digit)"
            raise ConfigError(msg) from None
        self.client = ExecClient(
            address, connect_timeout=connect_timeout, timeout=timeout, max_calls=max_calls,
            breaker=breaker or CircuitBreaker(retry_after),
        )  # fmt: skip
        self.page_rows = max(2, int(page_rows))
        self.cache_seconds = cache_seconds
        self._symbols: tuple[float, list[str]] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def info(self) -> StoreInfo:
        return StoreInfo(self.kind, f"{self.url} table {self.table}")

    def close(self) -> None:
        self.client.close()

    def exec(self, sql: str) -> dict:
        """Run one statement through ``/exec``; the decoded JSON answer (see :class:`ExecClient`)."""
        return self.client.exec(sql)

    # -- metadata answers ----------------------------------------------------------------------

    def ping(self) -> dict[str, object]:
        doc = self.exec(f"SELECT count() FROM {self.table}")
        return {"rows": int(doc["dataset"][0][0])}

    def symbols(self) -> list[str]:
        clock = self.client.breaker.clock
        now = clock()
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

    def _count(self, where: str) -> int:
        doc = self.exec(f"SELECT count() FROM {self.table} WHERE {where}")
        return int(doc["dataset"][0][0]) if doc["dataset"] else 0

    def count(self, query: RangeQuery, cap: int | None = None) -> int:
        return self._count(self._where(query, query.first_ts, query.end))

    def seek(self, query: RangeQuery, offset: int) -> tuple[RangeQuery, int]:
        """Row ``offset`` of ``query`` (feed order), found by the server: ``LIMIT offset - 1, offset``
        gives the key of the row before it, a ``count()`` its place among rows of the same key; the
        answer is a cursor right after that row, so nothing before it is read."""
        if offset <= 0 or query.order != "feed":
            return query, max(offset, 0)
        where = self._where(query, query.first_ts, query.end)
        doc = self.exec(
            f"SELECT cast(ts_recv AS LONG), instrument_id, publisher_id, day_seq FROM {self.table} "
            f"WHERE {where} ORDER BY {_FEED_ORDER} LIMIT {int(offset) - 1}, {int(offset)}"
        )
        if not doc["dataset"]:
            return query, offset  # past the end: nothing to skip to
        recv, iid, pub, dseq = (int(v) for v in doc["dataset"][0])
        ties = self._count(f"{where} AND {_same_key(recv, iid, pub)} AND day_seq <= {dseq}")
        after = Cursor(recv, iid, pub, ties)
        return RangeQuery(query.symbol, query.start, query.end, after=after, actions=query.actions), 0

    def bars(self, query: RangeQuery, step: int) -> Bars | None:
        """OHLCV bars of the trades of ``query``, computed by QuestDB with ``SAMPLE BY``.

        Open and close are the first and last trade by ts_event, ties in feed order (the subquery
        sorts the trades by ``ts_event, ts_recv, instrument_id, publisher_id, day_seq``), volume the
        sum of the unsigned sizes, so the bars equal the lake's bars from the trade stream.
        """
        unit = _SAMPLE_UNITS.get(step)
        if unit is None or query.actions is None:
            return None
        where = self._where(query, query.first_ts, query.end) + f" AND price_raw != {UNDEF_PRICE}"
        sql = (
            "SELECT cast(ts_event AS LONG), first(price_raw), max(price_raw), min(price_raw), last(price_raw), "
            "sum(CASE WHEN size < 0 THEN size + 4294967296 ELSE size END), count() "
            f"FROM (SELECT ts_event, price_raw, size FROM {self.table} WHERE {where} "
            f"ORDER BY {_EVENT_ORDER}) timestamp(ts_event) "
            f"SAMPLE BY {unit} ALIGN TO CALENDAR"
        )
        rows = self.exec(sql).get("dataset") or []
        cols = [np.asarray([r[i] for r in rows], dtype=np.int64) for i in range(7)]
        return Bars(*cols)

    # -- rows ----------------------------------------------------------------------------------

    def _select(self, cols: list[str]) -> str:
        items = [f"cast({c} AS LONG) AS {c}_ns" if c in _TS_COLS else c for c in cols]
        return ", ".join([*items, "day_seq"])

    def _page(
        self, cols: list[str], schema: pa.Schema, where: str, limit: int | None
    ) -> tuple[pa.Table, np.ndarray]:
        """Rows of ``where`` (which ends with its ORDER BY), at most ``limit``; and their day_seq."""
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
        for b in rebatch(self._pages(query, cols, schema), batch_rows):  # pages start after the cursor
            yield b.select(out_names) if b.schema.names != out_names else b

    def _pages(self, query: RangeQuery, cols: list[str], schema: pa.Schema) -> Iterator[pa.Table]:
        """Pages in the query's order, by keyset: each page starts right after the last row of
        the one before (``ts_recv, instrument_id, publisher_id, day_seq``, or ``ts_event`` first
        for bars), so no row is read twice and no offset is skipped by reading."""
        base = self._where(query, query.first_ts, query.end)
        n = self.page_rows
        order_by = _FEED_ORDER if query.order == "feed" else _EVENT_ORDER
        last = self._resume(query, base) if query.after is not None else None
        while True:
            where = base if last is None else f"{base} AND {_after(last, query.order)}"
            page, day_seq = self._page(cols, schema, f"{where} ORDER BY {order_by}", n)
            if page.num_rows == 0:
                return
            yield page
            if page.num_rows < n:
                return
            last = (*(int(ints(page.column(c))[-1]) for c in _order_cols(query.order)), int(day_seq[-1]))

    def _resume(self, query: RangeQuery, base: str) -> tuple[int, ...] | None:
        """The keyset position of an API cursor: the ``skip``-th row of its key, with its day_seq."""
        a = query.after
        assert a is not None
        doc = self.exec(
            f"SELECT day_seq FROM {self.table} WHERE {base} AND {_same_key(*a.key)} "
            f"ORDER BY day_seq LIMIT {a.skip - 1}, {a.skip}"
        )
        dseq = int(doc["dataset"][0][0]) if doc["dataset"] else 2**63 - 1  # fewer rows: after them all
        return (*a.key, dseq)


_FEED_ORDER = "ts_recv, instrument_id, publisher_id, day_seq"
_EVENT_ORDER = "ts_event, ts_recv, instrument_id, publisher_id, day_seq"


def _order_cols(order: str) -> tuple[str, ...]:
    return KEY_COLUMNS if order == "feed" else EVENT_KEY_COLUMNS


def _same_key(recv: int, iid: int, pub: int) -> str:
    return f"ts_recv = {int(recv)} AND instrument_id = {int(iid)} AND publisher_id = {int(pub)}"


def _after(last: tuple[int, ...], order: str) -> str:
    """SQL for "after ``last`` in ``order``" (a lexicographic keyset comparison, from ints only)."""
    names = [*_order_cols(order), "day_seq"]
    clause = f"{names[-1]} > {int(last[-1])}"
    for name, value in zip(reversed(names[:-1]), reversed(last[:-1]), strict=True):
        clause = f"({name} > {int(value)} OR ({name} = {int(value)} AND {clause}))"
    return clause


def _to_table(rows: list[list], cols: list[str], schema: pa.Schema) -> tuple[pa.Table, np.ndarray]:
    """``/exec`` dataset rows -> (a table of ``schema`` in ``cols`` order, the trailing day_seq)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in range(len(cols) + 1)]
    arrays = []
    for name, values in zip(cols, columns, strict=False):
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
    day_seq = np.asarray([0 if v is None else v for v in columns[len(cols)]], dtype=np.int64)
    return pa.Table.from_arrays(arrays, schema=schema), day_seq
