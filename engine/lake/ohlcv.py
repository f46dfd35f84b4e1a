"""OHLCV bars from MBO trades, over Polars lazy frames.

Bars are built from trades only (action ``T`` with a defined price, i.e. not NaN), grouped by symbol and by
the start of the bar: ``ts_event`` truncated to the interval, in UTC or in a time zone's local
calendar (so ``1d`` bars in ``America/New_York`` start at New York midnight, and ``1h`` bars
follow the local clock across a DST change). Only bars holding at least one trade are returned.

Example
-------
>>> import polars as pl
>>> from engine.lake.ohlcv import ohlcv
>>> bars = ohlcv(pl.scan_parquet("lake/mbo_2025-10-22.parquet"), "1m", tz="America/New_York")
>>> bars.collect()  # doctest: +SKIP
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from engine.errors import QueryError

__all__ = ["BAR_COLUMNS", "INTERVAL_UNITS", "TRADE_ACTION", "ohlcv", "parse_interval", "parse_tz"]

TRADE_ACTION = "T"
INTERVAL_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
BAR_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume", "trades", "vwap")
"""Columns of :func:`ohlcv`'s result, in order. ``ts`` is the bar's start."""

_INTERVAL = re.compile(r"^([1-9][0-9]{0,8})([smhd])$")


def _unsigned_size(lazy_frame: pl.LazyFrame) -> pl.Expr:
    """``size`` as DBN's u32 whether the frame holds the lake's signed bits or unsigned values."""
    dtype = lazy_frame.collect_schema()["size"]
    return pl.col("size").reinterpret(signed=False) if dtype.is_signed_integer() else pl.col("size")


def parse_interval(text: str) -> str:
    """Validate a bar interval (``30s``, ``1m``, ``4h``, ``1d``) and return it as a Polars duration.

    Raises
    ------
    QueryError
        If ``text`` is not a positive integer followed by one unit of s, m, h or d.
    """
    m = _INTERVAL.match(str(text).strip())
    if m is None:
        msg = f"bad OHLCV interval {text!r}: expected a positive integer and a unit s, m, h or d (e.g. 30s, 1m, 4h, 1d)"
        raise QueryError(msg)
    return f"{int(m[1])}{m[2]}"


def parse_tz(tz: str | None) -> str | None:
    """Validate an IANA time zone name (None and ``UTC`` mean UTC).

    Raises
    ------
    QueryError
        If the zone is unknown.
    """
    if tz is None or tz == "UTC":
        return None
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"unknown time zone {tz!r}: expected an IANA name such as America/New_York or UTC"
        raise QueryError(msg) from None
    return tz


def ohlcv(lazy_frame: pl.LazyFrame, interval: str, tz: str | None = None) -> pl.LazyFrame:
    """OHLCV bars of the trades in ``lazy_frame``, per symbol and interval.

    Parameters
    ----------
    lazy_frame : pl.LazyFrame
        MBO rows with at least ``symbol``, ``ts_event``, ``action``, ``price`` and ``size``. Trades
        that share a ts_event count in input order for open and close (the lake keeps them in
        arrival order), so the rows need not be sorted.
    interval : str
        Bar length: a positive integer and a unit ``s``, ``m``, ``h`` or ``d``.
    tz : str, optional
        IANA time zone whose calendar the bars align to (default UTC); ``ts`` is then given in
        that zone.

    Returns
    -------
    pl.LazyFrame
        One row per (symbol, bar) holding a trade, sorted by symbol then ``ts``, with columns
        :data:`BAR_COLUMNS`: ``open``/``high``/``low``/``close`` (float prices), ``volume``
        (sum of sizes, int64), ``trades`` (count, int64) and ``vwap`` (sum(price*size)/volume).

    Raises
    ------
    QueryError
        If the interval or time zone is malformed.
    """
    every = parse_interval(interval)
    zone = parse_tz(tz)
    names = lazy_frame.collect_schema().names()
    missing = [c for c in ("symbol", "ts_event", "action", "price", "size") if c not in names]
    if missing:
        msg = f"OHLCV needs the MBO columns {missing} that the input does not have"
        raise QueryError(msg)
    ts = pl.col("ts_event")
    if zone is not None:
        ts = ts.dt.convert_time_zone(zone)
    trades = lazy_frame.filter((pl.col("action") == TRADE_ACTION) & pl.col("price").is_not_nan()).select(
        pl.col("symbol"),
        ts.dt.truncate(every).alias("ts"),
        pl.col("ts_event"),
        pl.col("price"),
        _unsigned_size(lazy_frame).cast(pl.Int64),
    )
    # open/close without sorting the trades: the price at the first/last ts_event of the bar; among
    # trades sharing that ts_event, the first/last in input order (arrival order in the lake).
    return (
        trades.group_by(["symbol", "ts"])
        .agg(
            pl.col("price").get(pl.col("ts_event").arg_min()).alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").reverse().get(pl.col("ts_event").reverse().arg_max()).alias("close"),
            pl.col("size").sum().alias("volume"),
            pl.len().cast(pl.Int64).alias("trades"),
            (pl.col("price") * pl.col("size")).sum().alias("notional"),
        )
        .with_columns(pl.col("symbol").cast(pl.String), (pl.col("notional") / pl.col("volume")).alias("vwap"))
        .select(BAR_COLUMNS)
        .sort(["symbol", "ts"])
    )
