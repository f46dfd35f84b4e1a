"""OHLCV bars of trades for the chart API, from a store's key-ordered trade stream (or by the store).

A bar covers ``[t, t + step)`` with ``t`` a multiple of the step since 1970 UTC (so ``1d`` bars
are UTC days). Only trades count (action ``T`` with a defined price); open and close are the
first and last trade in ``(ts_event, ts_recv, sequence)`` order, which is the order every store
streams; the QuestDB store computes the same bars in the server (``SAMPLE BY``), so the lake and
QuestDB give identical bars. Only bars with a trade are returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from engine.dbn.metadata import UNDEF_PRICE
from engine.errors import QueryError
from engine.lake.arrow import ints

__all__ = ["BAR_COLUMNS", "RESOLUTIONS", "Bars", "bars_from_trades", "pick_resolution"]

NS = 1_000_000_000
RESOLUTIONS = {
    "1s": NS,
    "10s": 10 * NS,
    "1m": 60 * NS,
    "5m": 300 * NS,
    "15m": 900 * NS,
    "1h": 3_600 * NS,
    "1d": 86_400 * NS,
}
"""Bar resolutions of the seed's chart API, in nanoseconds."""

MAX_AUTO_BARS = 1_500
"""``resolution=auto`` picks the finest resolution giving at most this many bars over the span."""

BAR_COLUMNS = (
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "open_raw",
    "high_raw",
    "low_raw",
    "close_raw",
)
_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("ns", tz="UTC")),
        *(pa.field(n, pa.float64()) for n in ("open", "high", "low", "close")),
        pa.field("volume", pa.int64()),
        pa.field("trades", pa.int64()),
        *(pa.field(n, pa.int64()) for n in ("open_raw", "high_raw", "low_raw", "close_raw")),
    ]
)


def pick_resolution(name: str | None, start: int, end: int) -> str:
    """A resolution name, resolving ``auto``/None by the span ``end - start``.

    Raises
    ------
    QueryError
        ``name`` is not ``auto`` or one of :data:`RESOLUTIONS`.
    """
    if name is None or name == "auto":
        span = max(end - start, 1)
        for res, step in RESOLUTIONS.items():
            if span / step <= MAX_AUTO_BARS:
                return res
        return "1d"
    if name not in RESOLUTIONS:
        msg = f"`resolution` must be auto or one of {', '.join(RESOLUTIONS)}, got {name!r}"
        raise QueryError(msg)
    return name


@dataclass
class Bars:
    """Bars as NumPy columns (raw prices are 1e-9 fixed point, floats are raw / 1e9)."""

    ts: np.ndarray
    open_raw: np.ndarray
    high_raw: np.ndarray
    low_raw: np.ndarray
    close_raw: np.ndarray
    volume: np.ndarray
    trades: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def to_arrow(self) -> pa.Table:
        cols = {
            "ts": pa.array(self.ts).view(pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "open": self.open_raw / 1e9,
            "high": self.high_raw / 1e9,
            "low": self.low_raw / 1e9,
            "close": self.close_raw / 1e9,
            "volume": self.volume,
            "trades": self.trades,
            "open_raw": self.open_raw,
            "high_raw": self.high_raw,
            "low_raw": self.low_raw,
            "close_raw": self.close_raw,
        }
        return pa.table(cols, schema=_SCHEMA)

    def to_rows(self) -> list[dict[str, object]]:
        """JSON-ready rows: ``ts`` in ns, float prices and their raw integers."""
        n = len(self)
        cols = {
            "ts": self.ts.tolist(),
            "open": (self.open_raw / 1e9).tolist(),
            "high": (self.high_raw / 1e9).tolist(),
            "low": (self.low_raw / 1e9).tolist(),
            "close": (self.close_raw / 1e9).tolist(),
            "volume": self.volume.tolist(),
            "trades": self.trades.tolist(),
            "open_raw": self.open_raw.tolist(),
            "high_raw": self.high_raw.tolist(),
            "low_raw": self.low_raw.tolist(),
            "close_raw": self.close_raw.tolist(),
        }
        return [{k: cols[k][i] for k in BAR_COLUMNS} for i in range(n)]


def _aggregate(ts: np.ndarray, price: np.ndarray, size: np.ndarray, step: int) -> Bars:
    bucket = ts // step
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    return Bars(
        bucket[starts] * step,
        price[starts],
        np.maximum.reduceat(price, starts),
        np.minimum.reduceat(price, starts),
        price[ends],
        np.add.reduceat(size, starts),
        np.diff(np.r_[starts, len(ts)]).astype(np.int64),
    )


def _join(a: Bars, b: Bars) -> Bars:
    if len(a) == 0:
        return b
    if len(b) == 0:
        return a
    if a.ts[-1] == b.ts[0]:
        head = Bars(
            b.ts[:1], a.open_raw[-1:], np.maximum(a.high_raw[-1:], b.high_raw[:1]), np.minimum(a.low_raw[-1:], b.low_raw[:1]),
            b.close_raw[:1], a.volume[-1:] + b.volume[:1], a.trades[-1:] + b.trades[:1],
        )  # fmt: skip
        a = Bars(*(np.r_[x[:-1], y] for x, y in zip(_cols(a), _cols(head), strict=True)))
        b = Bars(*(x[1:] for x in _cols(b)))
    return Bars(*(np.r_[x, y] for x, y in zip(_cols(a), _cols(b), strict=True)))


def _cols(b: Bars) -> tuple[np.ndarray, ...]:
    return (b.ts, b.open_raw, b.high_raw, b.low_raw, b.close_raw, b.volume, b.trades)


def _empty() -> Bars:
    z = np.empty(0, dtype=np.int64)
    return Bars(z, z, z, z, z, z, z)


def bars_from_trades(batches: Iterable[pa.RecordBatch], step: int) -> Bars:
    """Aggregate a key-ordered stream of trades (``ts_event``, ``price_raw``, ``size``) into bars."""
    out = _empty()
    for b in batches:
        if b.num_rows == 0:
            continue
        ts = ints(b.column("ts_event"))
        price = ints(b.column("price_raw"))
        size = b.column("size").to_numpy(zero_copy_only=False).view(np.uint32).astype(np.int64)
        ok = price != UNDEF_PRICE
        if not ok.all():
            ts, price, size = ts[ok], price[ok], size[ok]
        if len(ts):
            out = _join(out, _aggregate(ts, price, size, step))
    return out
