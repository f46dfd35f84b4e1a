"""``/data``: the original server's record endpoint, streamed, pageable, in five formats.

``POST /data {"start_ts", "end_ts"}`` answers NVDA's records with ``start_ts <= ts_event <=
end_ts`` as a JSON array in databento's JSON encoding, in feed order (the file's order, as the
original server answered; see :mod:`service.stores.base`). Optional: ``symbol``, ``limit`` (page size) and ``cursor``
(from the previous page's ``X-Next-Cursor`` header), ``format`` (json, ndjson, csv, arrow,
parquet; or the Accept header) and ``tz`` (for date-time text in ``start_ts``/``end_ts``).
``GET /data?start_ts=...`` takes the same parameters from the query string.

An answer above the row cap without ``limit`` is refused with 413 before anything is read.
Answers of at most ``buffer_rows`` rows (a few MB) go out in one piece with a Content-Length
(the fastest path through waitress); larger ones stream chunked, batch by batch, so memory
does not depend on the answer's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import falcon
import numpy as np
import pyarrow as pa

from engine.errors import QueryError
from service.encoders import FORMATS, encode, negotiate
from service.errors import TooManyRowsError
from service.resources.params import Params, known_symbol
from service.serving import ServeLimits, StreamSlots
from service.stores.base import KEY_COLUMNS, Cursor, RangeQuery, Store, ints, limit_batches

__all__ = ["DATA_PARAMS", "DataResource", "page_end"]

DATA_PARAMS = ("start_ts", "end_ts", "symbol", "limit", "cursor", "format", "tz")


@dataclass
class PageEnd:
    """What the key-only pass over a page found: its rows and the cursor after it, if more follow."""

    rows: int
    next_cursor: Cursor | None


def page_end(store: Store, query: RangeQuery, limit: int, batch_rows: int = 65_536) -> PageEnd:
    """Find where a page of ``limit`` rows ends, reading only the key columns.

    The cursor's ``skip`` counts the rows at the end of the page (and, if the run of equal keys
    started before it, on earlier pages) that share the last key, so the next page starts exactly
    after them.
    """
    rows = 0
    last: tuple[int, int, int] | None = None
    run = 0
    run_from_start = True
    more = False
    for b in store.scan(query, columns=KEY_COLUMNS, batch_rows=batch_rows):
        take = min(b.num_rows, limit - rows)
        if take <= 0:
            more = b.num_rows > 0
            if more:
                break
            continue
        k0, k1, k2 = (ints(b.column(c))[:take] for c in KEY_COLUMNS)
        key = (int(k0[-1]), int(k1[-1]), int(k2[-1]))
        same = (k0 == key[0]) & (k1 == key[1]) & (k2 == key[2])
        tail = take - int(np.flatnonzero(~same)[-1]) - 1 if not same.all() else take
        if tail == take and key == last:
            run += take
        else:
            run = tail
            run_from_start = rows == 0 and tail == take
        if tail < take:
            run_from_start = False
        last = key
        rows += take
        if take < b.num_rows:
            more = True
            break
    if not more or last is None:
        return PageEnd(rows, None)
    skip = run
    a = query.after
    if a is not None and run_from_start and a.key == last:
        skip += a.skip
    return PageEnd(rows, Cursor(last[0], last[1], last[2], skip))


class DataResource:
    """``POST /data`` and ``GET /data``."""

    def __init__(
        self,
        store: Store,
        max_rows: int,
        default_symbol: str = "NVDA",
        batch_rows: int = 16_384,
        max_body_bytes: int = 65_536,
        buffer_rows: int = 32_768,
        slots: StreamSlots | None = None,
    ) -> None:
        self.store = store
        self.slots = slots or StreamSlots(ServeLimits().slots)
        self.buffer_rows = buffer_rows
        self.max_rows = max_rows
        self.default_symbol = default_symbol
        self.batch_rows = batch_rows
        self.max_body_bytes = max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._serve(req, resp, Params.from_body(req, DATA_PARAMS, self.max_body_bytes))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._serve(req, resp, Params.from_query(req, DATA_PARAMS))

    def _serve(self, req: falcon.Request, resp: falcon.Response, p: Params) -> None:
        tz = p.tz()
        start, end = p.time_range(tz, "start_ts", "end_ts")
        limit = p.integer("limit", 1, self.max_rows)
        token = p.get("cursor")
        cursor = Cursor.decode(token) if token is not None else None
        fmt = negotiate(p.get("format"), req.get_header("Accept"))
        symbol = known_symbol(self.store, p.get("symbol", self.default_symbol))
        query = RangeQuery(symbol, start, end, after=cursor)
        if (
            cursor is not None and cursor.ts_recv < start
        ):  # ts_event <= ts_recv: no row of the range is before it
            msg = f"`cursor` points at ts_recv {cursor.ts_recv}, before start_ts ({start}); send the same range as the page it came from"
            raise QueryError(msg)
        if limit is None:
            n = self.store.count(query, cap=self.max_rows)
            if n > self.max_rows:
                msg = (
                    f"the range holds more than {self.max_rows} rows for {symbol} (the row cap); "
                    f'page it: add "limit" (at most {self.max_rows}) and send each answer\'s X-Next-Cursor '
                    'header back as "cursor", or ask for a shorter range'
                )
                raise TooManyRowsError(msg)
            if cursor is None:
                resp.set_header("X-Row-Count", str(n))
            batches: Iterator[pa.RecordBatch] = self.store.scan(query, batch_rows=self.batch_rows)
        else:
            end_of_page = page_end(self.store, query, limit, self.batch_rows)
            n = end_of_page.rows
            resp.set_header("X-Row-Count", str(n))
            if end_of_page.next_cursor is not None:
                resp.set_header("X-Next-Cursor", end_of_page.next_cursor.encode())
            batches = limit_batches(self.store.scan(query, batch_rows=self.batch_rows), limit)
        resp.set_header("X-Symbol", symbol)
        resp.content_type = FORMATS[fmt]
        if fmt == "parquet":
            resp.set_header(
                "Content-Disposition", f'attachment; filename="mbo_{symbol}_{start}_{end}.parquet"'
            )
        body = encode(fmt, batches)
        if n <= self.buffer_rows:
            resp.data = b"".join(body)  # a small answer goes out in one write, with a Content-Length
        else:  # a large one streams chunked, one batch in memory at a time, in one of the few slots
            resp.stream = self.slots.wrap(body)
