"""The book of one symbol at any nanosecond, from the lake: :func:`book_snapshot`.

The book at ``T`` is the books after every row of the symbol with ``ts_recv <= T`` of ``T``'s
lake day (the UTC date of ts_recv), replayed in feed order: Databento's day files open with a
snapshot (CME) or a clear per instrument (XNAS), so a day's rows alone make its books. The
replay starts from the latest checkpoint at or before ``T`` (:mod:`engine.book.index`) when one
exists and is not stale, which gives exactly the books a full replay gives.

Answer (JSON-ready; the CLI's ``--format json`` and ``GET /api/mbo/book``)::

    {"symbol": "NVDA", "at": T, "ts_recv": ns of the last applied row (None if none),
     "bids": [{"price": 187.5, "price_raw": 187500000000, "size": 300, "count": 2}, ...],  # best first
     "asks": [...]}

Levels of every book of the symbol (each ``(instrument_id, publisher_id)``) are merged by price
(sizes and counts summed) unless ``publisher`` picks one venue. With ``orders`` each level also
lists its orders in queue order (``order_id``, ``size``, ``publisher_id``; across publishers by
the order of their arrival at the back of a queue).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.book.book import OrderBooks
from engine.book.codes import SIDE_ASK, SIDE_BID
from engine.book.index import load_checkpoint
from engine.book.rows import BOOK_READ, day_of, day_source, iter_symbol_blocks
from engine.errors import QueryError
from engine.inputs import nearest
from engine.lake.scan import lake_symbols
from engine.lake.store import LakePath, is_remote

__all__ = ["MAX_DEPTH", "ReplayStats", "book_answer", "book_snapshot", "check_book_args", "replay_blocks"]

MAX_DEPTH = 1000
_MAX_TS = 2**63 - 1


@dataclass
class ReplayStats:
    """How a snapshot was made: the checkpoint used (its boundary, None: from the day's start) and rows replayed."""

    checkpoint: int | None = None
    rows: int = 0


def check_book_args(at: object, depth: object, publisher: object) -> tuple[int, int, int | None]:
    """``at`` (ns), ``depth`` (1..1000) and ``publisher`` (None or 0..65535) checked; QueryError naming the field."""
    if isinstance(at, bool) or not isinstance(at, int | np.integer) or not 0 <= int(at) <= _MAX_TS:
        msg = f"`at` must be nanoseconds since 1970 UTC, 0 to {_MAX_TS}, got {at!r}"
        raise QueryError(msg)
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or not 1 <= int(depth) <= MAX_DEPTH:
        msg = f"`depth` must be an integer from 1 to {MAX_DEPTH}, got {depth!r}"
        raise QueryError(msg)
    if publisher is not None and (
        isinstance(publisher, bool)
        or not isinstance(publisher, int | np.integer)
        or not 0 <= int(publisher) <= 0xFFFF
    ):
        msg = f"`publisher` must be a publisher_id from 0 to 65535, got {publisher!r}"
        raise QueryError(msg)
    return int(at), int(depth), None if publisher is None else int(publisher)


def replay_blocks(books: OrderBooks, blocks: Iterable[Mapping[str, np.ndarray]]) -> tuple[int, int | None]:
    """Apply blocks of rows in feed order; returns rows applied and the ts_recv of the last one (None if none)."""
    n = 0
    last = None
    for block in blocks:
        books.apply(block)
        k = len(block["ts_recv"])
        if k:
            n += k
            last = int(block["ts_recv"][-1])
    return n, last


def _uint64(v: int) -> int:
    return v & 0xFFFFFFFFFFFFFFFF


def _side(
    books: OrderBooks, keys: list[tuple[int, int]], side: int, depth: int, orders: bool
) -> list[dict[str, Any]]:
    merged: dict[int, list[int]] = {}
    for iid, pid in keys:
        lv = books.levels(iid, pid, side, depth)
        for price, size, count in zip(lv.price.tolist(), lv.size.tolist(), lv.count.tolist(), strict=True):
            acc = merged.setdefault(price, [0, 0])
            acc[0] += size
            acc[1] += count
    prices = sorted(merged, reverse=side == SIDE_BID)[:depth]
    out = []
    for price in prices:
        size, count = merged[price]
        level: dict[str, Any] = {"price": price / 1e9, "price_raw": price, "size": size, "count": count}
        if orders:
            queue: list[tuple[int, int, int, int]] = []
            for iid, pid in keys:
                q = books.orders(iid, pid, side, price)
                queue += zip(
                    q.priority.tolist(),
                    q.order_id.tolist(),
                    q.size.tolist(),
                    [pid] * len(q.size),
                    strict=True,
                )
            queue.sort()
            level["orders"] = [{"order_id": _uint64(o), "size": s, "publisher_id": p} for _, o, s, p in queue]
        out.append(level)
    return out


def book_answer(
    books: OrderBooks,
    symbol: str,
    at: int,
    ts_recv: int | None,
    depth: int = 10,
    publisher: int | None = None,
    orders: bool = False,
) -> dict[str, Any]:
    """The answer of the module doc from replayed ``books`` (every book in them is the symbol's)."""
    keys = [(iid, pid) for iid, pid in books.books() if publisher is None or pid == publisher]
    return {
        "symbol": symbol,
        "at": int(at),
        "ts_recv": ts_recv,
        "bids": _side(books, keys, SIDE_BID, depth, orders),
        "asks": _side(books, keys, SIDE_ASK, depth, orders),
    }


def _unknown_symbol(lake_dir: LakePath, symbol: str) -> None:
    known = sorted(lake_symbols(lake_dir))
    if symbol not in known:
        near = nearest(symbol, known)
        hint = f"; nearest: {', '.join(near)}" if near else ""
        msg = f"no rows for symbol {symbol!r} in {lake_dir}{hint}"
        raise QueryError(msg)


def book_snapshot(
    lake: str | os.PathLike[str],
    symbol: str,
    at_ns: int,
    depth: int = 10,
    publisher: int | None = None,
    orders: bool = False,
    *,
    checkpoints: bool = True,
    stats: ReplayStats | None = None,
) -> dict[str, Any]:
    """The book of ``symbol`` after every row with ``ts_recv <= at_ns`` of that day (see the module doc).

    Parameters
    ----------
    lake : path-like
        The lake directory (checkpoints are read from its ``_book`` folder).
    symbol, at_ns, depth, publisher, orders
        What to show: levels per side (best first), one venue or all merged, each level's orders.
    checkpoints : bool
        Start from the nearest checkpoint (default); False replays the day from its start.
    stats : ReplayStats, optional
        Filled with the checkpoint used and the rows replayed.

    Raises
    ------
    QueryError
        Bad ``at``/``depth``/``publisher``, a missing lake, or a symbol the lake has no rows for.
    """
    at, depth, publisher = check_book_args(at_ns, depth, publisher)
    remote = is_remote(lake)  # an object-store lake: read as it is, checkpoints live beside local lakes only
    lake_dir: LakePath = str(lake) if remote else Path(lake)
    stats = stats if stats is not None else ReplayStats()
    src = day_source(lake_dir, symbol, day_of(at))
    books = OrderBooks()
    last: int | None = None
    lo = None
    if src is not None and checkpoints and not remote:
        cp = load_checkpoint(lake_dir, src, symbol, at)
        if cp is not None:
            books, last, lo = cp.books, cp.last_ts_recv, cp.boundary
            stats.checkpoint = cp.boundary
    if src is not None:
        n, newest = replay_blocks(books, iter_symbol_blocks(src, symbol, lo, at, BOOK_READ))
        stats.rows = n
        last = newest if newest is not None else last
    if last is None and not books.books():
        _unknown_symbol(lake_dir, symbol)
    return book_answer(books, symbol, at, last, depth, publisher, orders)
