"""MBP-1 / MBP-10 / BBO-1s / BBO-1m series of a lake day, as Parquet with Databento's field names.

``derive_day(lake, "mbp-10", day, symbols, output)`` replays each symbol's rows of the day (feed
order, row group by row group, bounded memory) and writes ``OUTPUT/mbp-10_YYYY-MM-DD.parquet``:
the symbols one after the other (sorted), each in feed order. Emission rules:

- ``mbp-N``: :mod:`engine.book.mbp`: one row per Trade, and per Add/Cancel/Modify/Clear that
  changed a level within the top N of its side (before or after the change); each row is the
  book *after* its record. Fills, None and records that change no level emit nothing.
- ``bbo-1s`` / ``bbo-1m``: :mod:`engine.book.bbo`: per book and interval ``[k*I, (k+1)*I)`` of
  ts_recv in which the top of book (sampled after F_LAST records) or a trade changed, one row with
  ``ts_recv = (k+1)*I``, the last top of book and the last trade (forward-filled).

Columns, in Databento's order (``DBNStore.to_df()`` of those schemas): ``ts_recv``, ``ts_event``
(ns UTC timestamps), ``publisher_id``, ``instrument_id``, ``action`` and ``side`` (letters),
``depth`` (MBP), ``price`` (float, NaN when undefined) and ``price_raw`` (the exact 1e-9
integer, the project's extra column), ``size``, ``flags``, ``ts_in_delta`` (MBP), ``sequence``,
then per level ``bid_px_NN``, ``ask_px_NN`` (float, NaN for a missing level, as Databento's
DataFrame), ``bid_sz_NN``, ``ask_sz_NN``, ``bid_ct_NN``, ``ask_ct_NN`` (int64: an aggregate
never wraps), and ``symbol``. Written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.book.bbo import BboSampler
from engine.book.book import OrderBooks
from engine.book.codes import ACTIONS, SIDES
from engine.book.mbp import iter_mbp, price_to_float
from engine.book.rows import DERIVE_READ, day_source, iter_symbol_blocks
from engine.errors import QueryError
from engine.inputs import nearest
from engine.lake.scan import lake_symbols
from engine.lake.store import LakePath, is_remote
from engine.tempfiles import replacing

__all__ = ["SCHEMAS", "DeriveSummary", "derive_day", "output_path"]

SCHEMAS: dict[str, int | str] = {"mbp-1": 1, "mbp-10": 10, "bbo-1s": "1s", "bbo-1m": "1m"}
"""Schema names and their depth (MBP) or interval (BBO)."""

_TS = pa.timestamp("ns", tz="UTC")


@dataclass
class DeriveSummary:
    """What :func:`derive_day` wrote: the file, input rows replayed, output rows."""

    path: Path
    rows_in: int = 0
    rows_out: int = 0
    symbols: int = 0


def output_path(output: str | os.PathLike[str], schema: str, day: dt.date) -> Path:
    return Path(output) / f"{schema}_{day.isoformat()}.parquet"


def _letters(codes: np.ndarray, letters: tuple[str, ...]) -> pa.Array:
    table = np.array([*letters, "?"], dtype=object)
    idx = np.where((codes >= 0) & (codes < len(letters)), codes, len(letters))
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int8)), pa.array(list(table), pa.string()))


def _level_order(depth: int) -> list[str]:
    return [
        f"{f}_{k:02d}"
        for k in range(depth)
        for f in ("bid_px", "ask_px", "bid_sz", "ask_sz", "bid_ct", "ask_ct")
    ]


def _table(rows: dict[str, np.ndarray], symbol: str, depth: int, mbp: bool) -> pa.Table:
    n = len(rows["ts_recv"])
    cols: dict[str, pa.Array] = {
        "ts_recv": pa.array(rows["ts_recv"], pa.int64()).cast(_TS),
        "ts_event": pa.array(rows["ts_event"], pa.int64()).cast(_TS),
        "publisher_id": pa.array(rows["publisher_id"].astype(np.int16)),
        "instrument_id": pa.array(rows["instrument_id"].astype(np.int32)),
    }
    if mbp:
        cols["action"] = _letters(rows["action"], ACTIONS)
    cols["side"] = _letters(rows["side"], SIDES)
    if mbp:
        cols["depth"] = pa.array(rows["depth"].astype(np.int16))
    cols["price"] = pa.array(price_to_float(rows["price_raw"]))
    cols["price_raw"] = pa.array(rows["price_raw"].astype(np.int64))
    cols["size"] = pa.array(rows["size"].astype(np.int64))
    cols["flags"] = pa.array(rows["flags"].astype(np.int16))
    if mbp:
        cols["ts_in_delta"] = pa.array(rows["ts_in_delta"].astype(np.int32))
    cols["sequence"] = pa.array(rows["sequence"].astype(np.int64))
    for name in _level_order(depth):
        v = rows[name]
        cols[name] = pa.array(price_to_float(v) if "_px_" in name else v.astype(np.int64))
    cols["symbol"] = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array([symbol]))
    return pa.table(cols)


def _symbol_rows(
    src_blocks: Iterable[dict[str, np.ndarray]], schema: str
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """``(input rows, output rows)`` per block of one symbol's replay."""
    books = OrderBooks()
    kind = SCHEMAS[schema]
    if isinstance(kind, int):
        for block in src_blocks:
            n = len(block["ts_recv"])
            chunks = list(iter_mbp(books, block, kind))
            for k, chunk in enumerate(chunks):
                yield (n if k == 0 else 0), chunk
            if not chunks:
                yield n, {}
        return
    sampler = BboSampler(books, str(kind))
    for block in src_blocks:
        yield len(block["ts_recv"]), sampler.apply(block)
    yield 0, sampler.flush()


def _empty_table(depth: int, mbp: bool) -> pa.Table:
    """A table of the output schema with no rows (a day without any)."""
    ints64 = (
        "ts_recv",
        "ts_event",
        "publisher_id",
        "instrument_id",
        "price_raw",
        "size",
        "flags",
        "sequence",
    )
    empty = {k: np.empty(0, np.int64) for k in (*ints64, "ts_in_delta", "depth", *_level_order(depth))}
    empty.update({k: np.empty(0, np.int8) for k in ("action", "side")})
    return _table(empty, "", depth, mbp)


def derive_day(
    lake: str | os.PathLike[str],
    schema: str,
    day: dt.date,
    output: str | os.PathLike[str],
    symbols: Iterable[str] | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> DeriveSummary:
    """Write the ``schema`` series of ``day`` (see the module doc); returns what was written.

    ``on_progress(symbol, input_rows_so_far)`` follows the replay.
    """
    if schema not in SCHEMAS:
        msg = f"`--schema` must be one of {', '.join(SCHEMAS)}, got {schema!r}"
        raise QueryError(msg)
    lake_dir: LakePath = str(lake) if is_remote(lake) else Path(lake)  # s3:// lakes are read as they are
    if isinstance(lake_dir, Path) and not lake_dir.is_dir():
        msg = f"lake directory {lake_dir} does not exist or is not a directory"
        raise QueryError(msg)
    known = sorted(lake_symbols(lake_dir, day, day + dt.timedelta(days=1)))
    if not known:
        msg = f"no lake rows on {day} in {lake_dir}"
        raise QueryError(msg)
    wanted = known if symbols is None else list(symbols)
    for s in wanted:
        if s not in known:
            near = nearest(s, known)
            hint = f"; nearest: {', '.join(near)}" if near else ""
            msg = f"no rows for symbol {s!r} on {day} in {lake_dir}{hint}"
            raise QueryError(msg)
    kind = SCHEMAS[schema]
    depth = kind if isinstance(kind, int) else 1
    final = output_path(output, schema, day)
    final.parent.mkdir(parents=True, exist_ok=True)
    summary = DeriveSummary(final)
    writer: pq.ParquetWriter | None = None
    with replacing(final) as tmp:
        try:
            for symbol in sorted(wanted):
                src = day_source(lake_dir, symbol, day)
                if src is None:  # pragma: no cover - listed above
                    continue
                summary.symbols += 1
                done = 0
                for n_in, rows in _symbol_rows(iter_symbol_blocks(src, symbol, columns=DERIVE_READ), schema):
                    done += n_in
                    summary.rows_in += n_in
                    if rows and len(rows["ts_recv"]):
                        t = _table(rows, symbol, depth, isinstance(kind, int))
                        if writer is None:
                            writer = pq.ParquetWriter(tmp, t.schema, compression="zstd")
                        writer.write_table(t.cast(writer.schema))
                        summary.rows_out += t.num_rows
                    if on_progress is not None:
                        on_progress(symbol, done)
            if writer is None:  # no rows at all: an empty file of the schema
                writer = pq.ParquetWriter(
                    tmp, _empty_table(depth, isinstance(kind, int)).schema, compression="zstd"
                )
        finally:
            if writer is not None:
                writer.close()
    return summary
