"""The one small interface between the HTTP resources and where the rows live.

A store answers a handful of questions about the ``mbo_ticks`` rows of one symbol: which symbols
exist, the time range of one, how many rows a range holds, and the rows themselves as a stream
of Arrow record batches of :data:`engine.dbn.columns.MBO_SCHEMA` (or a subset of its columns).

Rows come in **feed order**, the order the venue published them (an order book can only be
replayed in it; ``ts_event`` is not monotonic in it): ``(ts_recv, instrument_id, publisher_id)``,
and rows equal on those in the source file's order (QuestDB's ``day_seq``). For one symbol of one
venue that is exactly the file's order. Paging uses a :class:`Cursor` on that order, so a page
boundary inside a run of equal keys is still exact. Bars need ``ts_event`` order instead
(``RangeQuery.order = "event"``: ``(ts_event, ts_recv, instrument_id, publisher_id)``, ties in
feed order). Resources never know which store they talk to.
"""

from __future__ import annotations

import base64
import binascii
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from engine.dbn.columns import MBO_SCHEMA
from engine.dbn.kernels import NS_PER_DAY
from engine.dbn.symbology import check_symbol
from engine.errors import QueryError
from engine.lake.arrow import ints

if TYPE_CHECKING:
    from service.bars import Bars

__all__ = [
    "EVENT_KEY_COLUMNS",
    "KEY_COLUMNS",
    "Cursor",
    "RangeQuery",
    "Store",
    "SymbolRange",
    "check_symbol",
    "limit_batches",
    "skip_until_after",
    "sort_table",
]

KEY_COLUMNS = ("ts_recv", "instrument_id", "publisher_id")
"""Feed order, the order of rows in every answer (ties: the source file's order)."""
EVENT_KEY_COLUMNS = ("ts_event", "ts_recv", "instrument_id", "publisher_id")
"""The order of ``RangeQuery(order="event")`` scans (bars), ties in feed order."""


@dataclass(frozen=True)
class Cursor:
    """A position in feed order: after ``skip`` rows with this key (and every row before it).

    The key is ``(ts_recv, instrument_id, publisher_id)``; rows that agree on it come in the
    source file's order, so ``skip`` counts how many of them were already returned. Sent to
    clients as an opaque URL-safe token.
    """

    ts_recv: int
    instrument_id: int
    publisher_id: int
    skip: int = 1

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.ts_recv, self.instrument_id, self.publisher_id)

    def encode(self) -> str:
        text = f"2:{self.ts_recv}:{self.instrument_id}:{self.publisher_id}:{self.skip}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: object) -> Cursor:
        """Parse a token from :meth:`encode`; :class:`QueryError` if it is not one."""
        bad = QueryError(
            f"`cursor` {token!r} is not a cursor this service issued (take it from the X-Next-Cursor header)"
        )
        if not isinstance(token, str) or not 1 <= len(token) <= 200:
            raise bad
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise bad from None
        m = re.fullmatch(r"2:(\d{1,19}):(-?\d{1,10}):(-?\d{1,5}):(\d{1,19})", text)
        if m is None:
            raise bad
        ts_recv, iid, pub, skip = (int(g) for g in m.groups())
        if ts_recv > 2**63 - 1 or skip > 2**63 - 1 or skip < 1:
            raise bad
        return cls(ts_recv, iid, pub, skip)


@dataclass(frozen=True)
class RangeQuery:
    """Rows of one symbol with ``start <= ts_event <= end`` (ns, inclusive), after ``after``.

    ``actions`` keeps only these action letters (e.g. ``("T",)`` for trades).
    """

    symbol: str
    start: int
    end: int
    after: Cursor | None = None
    actions: tuple[str, ...] | None = None
    order: str = "feed"
    """``feed`` (:data:`KEY_COLUMNS`) or ``event`` (:data:`EVENT_KEY_COLUMNS`, for bars; no cursor)."""

    @property
    def first_ts(self) -> int:
        """The smallest ts_event that can be returned (the range's start: feed order does not bound it)."""
        return self.start

    @property
    def first_recv(self) -> int | None:
        """The smallest ts_recv that can still be returned (the cursor's), or None."""
        return None if self.after is None else self.after.ts_recv


@dataclass(frozen=True)
class SymbolRange:
    """First and last ts_event of a symbol and its row count."""

    symbol: str
    start: int
    end: int
    rows: int


@dataclass
class StoreInfo:
    """What ``/health`` shows about a store."""

    kind: str
    location: str
    details: dict[str, object] = field(default_factory=dict)


class Store(ABC):
    """Where the service reads MBO rows from (the Parquet lake, QuestDB)."""

    kind: str = "store"

    @abstractmethod
    def info(self) -> StoreInfo:
        """Kind and location, for ``/health`` (no I/O)."""

    @abstractmethod
    def ping(self) -> dict[str, object]:
        """Check the store answers; return details. Raises StoreUnavailableError when not."""

    @abstractmethod
    def symbols(self) -> list[str]:
        """Every symbol with rows, sorted."""

    @abstractmethod
    def time_range(self, symbol: str) -> SymbolRange | None:
        """First/last ts_event and row count of a symbol, or None if it has no rows."""

    @abstractmethod
    def count(self, query: RangeQuery, cap: int | None = None) -> int:
        """Rows of ``query`` (ignoring ``after`` beyond its ts_event); may stop counting past ``cap``."""

    @abstractmethod
    def scan(
        self, query: RangeQuery, columns: Sequence[str] | None = None, batch_rows: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``query`` in key order, as batches of at most ``batch_rows`` rows.

        ``columns`` selects a subset of :data:`MBO_SCHEMA` (the key columns are always read);
        batches always carry exactly the requested columns in schema order, with the schema's types.
        """

    def seek(self, query: RangeQuery, offset: int) -> tuple[RangeQuery, int]:
        """Where row ``offset`` of ``query`` (key order) is: a query whose rows start at or before it,
        and how many of its rows to skip to reach it.

        The default skips ``offset`` rows of ``query`` itself; a store that can find the row
        without reading the rows before it (QuestDB) narrows the query instead.
        """
        return query, offset

    def bars(self, query: RangeQuery, step: int) -> Bars | None:
        """OHLCV bars of ``step`` ns over the trades of ``query``, if the store computes them itself;
        None lets the caller aggregate the trade stream (:func:`service.bars.bars_from_trades`)."""
        return None

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self.symbols()

    def book(
        self, symbol: str, at: int, depth: int = 10, publisher: int | None = None, orders: bool = False
    ) -> dict[str, Any]:
        """The book of ``symbol`` after every row with ``ts_recv <= at`` of that UTC day (see
        :mod:`engine.book.snapshot` for the answer).

        The default replays the day's rows of the symbol, read by :meth:`scan` in feed order from
        the day's first ts_recv (a cursor just before midnight) up to ``at``; the lake store
        starts from its checkpoints instead.
        """
        from engine.book.book import OrderBooks
        from engine.book.rows import BOOK_READ, batch_columns
        from engine.book.snapshot import book_answer, check_book_args, replay_blocks

        at, depth, publisher = check_book_args(at, depth, publisher)
        day0 = at - at % NS_PER_DAY
        after = Cursor(day0 - 1, 2**31 - 1, 2**15 - 1) if day0 > 0 else None  # every row before midnight
        query = RangeQuery(symbol, 0, 2**63 - 1, after=after)

        def blocks() -> Iterator[dict[str, np.ndarray]]:
            for b in self.scan(query, columns=BOOK_READ):
                recv = ints(b.column("ts_recv"))
                k = int(np.searchsorted(recv, at, side="right"))
                if k:
                    yield batch_columns(b.slice(0, k), BOOK_READ)
                if k < len(recv):
                    return

        books = OrderBooks()
        _, last = replay_blocks(books, blocks())
        return book_answer(books, symbol, at, last, depth, publisher, orders)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and caches."""


def output_schema(columns: Sequence[str] | None) -> pa.Schema:
    """:data:`MBO_SCHEMA` restricted to ``columns`` (schema order); all of it for None."""
    if columns is None:
        return MBO_SCHEMA
    unknown = [c for c in columns if c not in MBO_SCHEMA.names]
    if unknown:
        msg = f"unknown column(s) {unknown}; the columns are {MBO_SCHEMA.names}"
        raise QueryError(msg)
    wanted = set(columns)
    return pa.schema([f for f in MBO_SCHEMA if f.name in wanted])


def read_columns(columns: Sequence[str] | None) -> list[str]:
    """The columns a store must read for ``columns``: them plus the key and filter columns."""
    out = list(MBO_SCHEMA.names) if columns is None else list(columns)
    for c in (*EVENT_KEY_COLUMNS, "symbol", "action"):
        if c not in out:
            out.append(c)
    return [c for c in MBO_SCHEMA.names if c in out]


def key_order(table: pa.Table | pa.RecordBatch, order: str = "feed") -> np.ndarray:
    """Indices that sort ``table`` by the key of ``order`` (stable: ties keep the table's order)."""
    cols = KEY_COLUMNS if order == "feed" else EVENT_KEY_COLUMNS
    first = ints(table.column(cols[0]))
    if len(first) < 2:
        return np.arange(len(first))
    rest = [ints(table.column(c)) for c in cols[1:]]
    return np.lexsort((np.arange(len(first)), *reversed(rest), first))


def is_sorted(order: np.ndarray) -> bool:
    return len(order) < 2 or bool(np.all(order[1:] > order[:-1]))


def sort_table(table: pa.Table, order: str = "feed") -> pa.Table:
    """``table`` sorted by the key of ``order`` (stable); no copy when already sorted."""
    idx = key_order(table, order)
    return table if is_sorted(idx) else table.take(idx)


def skip_until_after(batches: Iterable[pa.RecordBatch], after: Cursor | None) -> Iterator[pa.RecordBatch]:
    """Drop rows up to and including the cursor's position from a feed-ordered stream."""
    if after is None:
        yield from batches
        return
    it = iter(batches)
    to_skip = after.skip
    key = after.key
    for batch in it:
        recv = ints(batch.column("ts_recv"))
        if len(recv) == 0:
            continue
        if recv[-1] < key[0]:
            continue
        iid = ints(batch.column("instrument_id"))
        pub = ints(batch.column("publisher_id"))
        i = int(np.searchsorted(recv, key[0], side="left"))
        n = len(recv)
        while i < n:
            k = (int(recv[i]), int(iid[i]), int(pub[i]))
            if k < key:
                i += 1
            elif k == key and to_skip > 0:
                to_skip -= 1
                i += 1
            else:
                break
        if i < n:
            yield batch.slice(i)
            yield from it
            return


def limit_batches(batches: Iterable[pa.RecordBatch], limit: int | None) -> Iterator[pa.RecordBatch]:
    """At most ``limit`` rows of a stream (all for None); stops reading once reached."""
    if limit is None:
        yield from batches
        return
    left = limit
    if left <= 0:
        return
    for b in batches:
        if b.num_rows >= left:
            yield b.slice(0, left)
            return
        left -= b.num_rows
        yield b


def rebatch(tables: Iterable[pa.Table | pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``batch_rows`` rows from tables or batches (no copies)."""
    for t in tables:
        batches = t.to_batches() if isinstance(t, pa.Table) else [t]
        for b in batches:
            for lo in range(0, b.num_rows, batch_rows):
                yield b.slice(lo, batch_rows)
