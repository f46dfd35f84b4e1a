"""Exact resume: the per-file completion record (``ingest_log``) and ``count()`` verification.

A file is *complete* in a table when the ingest log holds a completion record for it (same file
identity, same symbol filter) and the table still holds, per (symbol, publisher_id) inside the
file's ts_event and ts_recv ranges, exactly the rows the record lists. A rerun skips complete
files without decoding them; any other file is loaded again in full, and the dedup keys make the
rows it had already sent replace themselves, so after a ``kill -9`` mid-file a rerun ends with
exactly the source's rows.

Counts are read only after the table's WAL has been applied (``wal_tables()``:
``writerTxn >= sequencerTxn``), so the summary reports rows visible to queries.

SQL here holds only validated table names, integers and hex digests: never user text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import questdb

from engine.errors import SinkError
from engine.questdb.conf import QuestDBOptions, check_identifier
from engine.questdb.http import QuestDBHttp
from engine.questdb.keys import FileStats
from engine.questdb.protocols import quiet_reconnect_warning

__all__ = [
    "Completion",
    "CountMismatchError",
    "file_key",
    "filter_key",
    "find_completion",
    "stored_counts",
    "verify_counts",
    "wait_wal_applied",
    "write_completion",
]

_SAMPLE = 1 << 20


class CountMismatchError(SinkError):
    """After a load the table does not hold exactly the file's rows."""


def file_key(path: str | os.PathLike[str]) -> str:
    """Identity of a source file: BLAKE2b of its size, first and last MiB (32 hex digits).

    The DBN header (dataset, schema, date range, symbols) lies in the first MiB, so two day
    files never share a key; the size and tail catch a file that grew or was cut.
    """
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.blake2b(digest_size=16)
    h.update(size.to_bytes(8, "little"))
    with open(p, "rb") as f:
        h.update(f.read(_SAMPLE))
        if size > _SAMPLE:
            f.seek(max(_SAMPLE, size - _SAMPLE))
            h.update(f.read(_SAMPLE))
    return h.hexdigest()


def filter_key(symbols: set[str] | frozenset[str] | tuple[str, ...] | None) -> str:
    """Identity of a symbol filter (``all`` for none), 32 hex digits otherwise."""
    if symbols is None:
        return "all"
    text = "\n".join(sorted(set(symbols)))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class Completion:
    """A completion record read back from the ingest log."""

    rows: int
    ts_event_min: int
    ts_event_max: int
    ts_recv_min: int
    ts_recv_max: int
    counts: dict[tuple[str, int], int]


def wait_wal_applied(
    http: QuestDBHttp, table: str, timeout: float, *, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Wait until the table's WAL is applied up to the transactions committed so far.

    Raises :class:`SinkError` if QuestDB suspended the table (with its error message) or the
    apply does not catch up within ``timeout`` seconds.
    """
    check_identifier(table)
    deadline = time.monotonic() + timeout
    target: int | None = None
    delay = 0.02
    while True:
        rows = http.exec(f"SELECT * FROM wal_tables() WHERE name = '{table}'").records()
        if not rows:
            return  # not a WAL table: writes are visible once committed
        r = rows[0]
        if str(r.get("suspended")).lower() in ("true", "1"):
            why = r.get("errorMessage") or r.get("errorTag") or "no message"
            msg = f"QuestDB suspended WAL apply of table {table!r}: {why} (ALTER TABLE {table} RESUME WAL after fixing it)"
            raise SinkError(msg)
        seq, writer = int(r.get("sequencerTxn") or 0), int(r.get("writerTxn") or 0)
        if target is None:
            target = seq
        if writer >= target:
            return
        if time.monotonic() > deadline:
            msg = f"QuestDB did not apply the WAL of {table!r} within {timeout:g} s (applied txn {writer} of {target})"
            raise SinkError(msg)
        sleep(delay)
        delay = min(delay * 1.5, 0.05)  # a poll is one small /exec; a coarser one overshoots the apply


def stored_counts(
    http: QuestDBHttp, table: str, ts_event: tuple[int, int], ts_recv: tuple[int, int]
) -> dict[tuple[str, int], int]:
    """Rows per (symbol, publisher_id) with ts_event and ts_recv inside the given ranges.

    The bounds are epoch integers, which QuestDB reads in the column's own unit: nanoseconds for
    ``TIMESTAMP_NS`` (questdb.com/docs/cookbook/sql/time-series/epoch-timestamps). The rows are
    ordered so that paging through ``/exec`` with ``limit`` is deterministic.
    """
    check_identifier(table)
    e0, e1 = (int(v) for v in ts_event)
    r0, r1 = (int(v) for v in ts_recv)
    sql = (
        f"SELECT symbol, publisher_id, count() AS n FROM {table} "
        f"WHERE ts_event BETWEEN {e0} AND {e1} AND ts_recv BETWEEN {r0} AND {r1} ORDER BY symbol, publisher_id"
    )
    out: dict[tuple[str, int], int] = {}
    for r in http.records(sql):
        key = (str(r["symbol"]), int(r["publisher_id"]))
        out[key] = out.get(key, 0) + int(r["n"])
    return out


def _compare(
    expected: dict[tuple[str, int], int], stored: dict[tuple[str, int], int]
) -> tuple[int, list[str]]:
    """(rows the table holds for the expected groups, differences)."""
    held = 0
    diffs = []
    for key, n in sorted(expected.items()):
        s = stored.get(key, 0)
        held += min(s, n)
        if s != n:
            diffs.append(f"{key[0]} (publisher {key[1]}): table {s}, file {n}")
    return held, diffs


def verify_counts(
    http: QuestDBHttp,
    table: str,
    stats: FileStats | Completion,
    timeout: float,
    *,
    settle: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, list[str]]:
    """Wait for the WAL apply, then compare the table with the file's counts.

    Every row the server acknowledged (QWP, ILP/HTTP) is in a committed WAL transaction, so once
    the apply has caught up with the transactions committed so far one count is final: no waiting
    on a clock. With ``settle`` (ILP/TCP, which has no acknowledgements: rows may still be on
    their way into the server) a short count is polled again until it is complete or ``timeout``
    runs out. Returns ``(rows confirmed, differences)``; no differences means every row of the
    file is visible exactly once.
    """
    deadline = time.monotonic() + timeout
    expected = stats.counts
    if not expected:
        return 0, []
    wait_wal_applied(http, table, timeout, sleep=sleep)
    delay = 0.05
    while True:
        stored = stored_counts(
            http, table, (stats.ts_event_min, stats.ts_event_max), (stats.ts_recv_min, stats.ts_recv_max)
        )
        held, diffs = _compare(expected, stored)
        short = any(stored.get(k, 0) < n for k, n in expected.items())
        if not diffs or not short or not settle or time.monotonic() > deadline:
            return (sum(expected.values()) if not diffs else held), diffs
        sleep(delay)
        delay = min(delay * 2, 1.0)


def find_completion(http: QuestDBHttp, options: QuestDBOptions, fkey: str, skey: str) -> Completion | None:
    """The newest complete completion record of (table, file, filter), if any."""
    log = check_identifier(options.log_table, "log table name")
    table = check_identifier(options.table)
    if not all(c in "0123456789abcdefl" for c in fkey + skey):  # hex digests or "all"
        msg = f"bad ingest-log key {fkey!r}/{skey!r}"
        raise ValueError(msg)
    # a record is written at the end of a load without waiting for its WAL apply (the load's
    # rows are verified by then; only its visibility to the next run is left): the next run waits
    wait_wal_applied(http, log, options.verify_timeout_s)
    rows = http.records(
        f"SELECT ts, symbol, publisher_id, row_count, ts_event_min, ts_event_max, ts_recv_min, ts_recv_max FROM {log} "
        f"WHERE table_name = '{table}' AND file_key = '{fkey}' AND filter_key = '{skey}' ORDER BY ts, symbol"
    )
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r["ts"]), []).append(r)
    for ts in sorted(groups, reverse=True):
        total = [r for r in groups[ts] if r["symbol"] in (None, "")]
        parts = [r for r in groups[ts] if r["symbol"] not in (None, "")]
        if len(total) != 1:
            continue
        t = total[0]
        counts = {(str(r["symbol"]), int(r["publisher_id"])): int(r["row_count"]) for r in parts}
        if sum(counts.values()) != int(t["row_count"]):
            continue
        return Completion(int(t["row_count"]), int(t["ts_event_min"]), int(t["ts_event_max"]), int(t["ts_recv_min"]),
                          int(t["ts_recv_max"]), counts)  # fmt: skip
    return None


def write_completion(
    options: QuestDBOptions,
    path: str | os.PathLike[str],
    fkey: str,
    skey: str,
    symbols: set[str] | None,
    stats: FileStats,
    protocol: str,
    seconds: float,
) -> None:
    """Append the completion record (one row per (symbol, publisher) plus the total) in one transaction."""
    p = Path(path)
    now = dt.datetime.now(dt.UTC)
    common_sym = {"table_name": options.table, "file_key": fkey, "filter_key": skey}
    fname = str(p)
    fsize = p.stat().st_size
    filt = ",".join(sorted(symbols)) if symbols is not None else ""
    conf = options.address.ilp_http_conf(retry_timeout=options.retry_timeout_ms, auto_flush="off")
    try:
        with quiet_reconnect_warning():
            sender = questdb.Sender.from_conf(conf)
            sender.establish()
        try:
            buf = sender.new_buffer()
            for (sym, pub), n in sorted(stats.counts.items()):
                buf.row(
                    options.log_table,
                    symbols={**common_sym, "symbol": sym},
                    columns={"publisher_id": pub, "row_count": n},
                    at=now,
                )
            buf.row(
                options.log_table,
                symbols={**common_sym, "protocol": protocol},
                columns={
                    "publisher_id": -1, "row_count": stats.rows, "ts_event_min": stats.ts_event_min,
                    "ts_event_max": stats.ts_event_max, "ts_recv_min": stats.ts_recv_min,
                    "ts_recv_max": stats.ts_recv_max, "file_name": fname, "file_size": fsize,
                    "symbols_filter": filt, "load_seconds": float(seconds),
                },
                at=now,
            )  # fmt: skip
            sender.flush(buf, transactional=True)
        finally:
            sender.close()
    except questdb.QuestDBError as exc:
        msg = f"{p}: rows are loaded but the ingest log could not be written: {exc}"
        raise SinkError(msg) from None
