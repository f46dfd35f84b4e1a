"""Helpers of the tests against a real QuestDB: the row oracle, reading tables back, waiting on WAL.

- :func:`expected_rows`: the rows a load of a DBN file must leave, from databento's decoder, with
  ``day_seq`` numbered per (instrument_id, UTC day of ts_recv) in file order;
- :func:`read_rows`: every row of a table through ``/exp?fmt=parquet`` (timestamps as exact ns,
  NULLs turned back into the sentinels that were sent); :func:`assert_same_rows` compares;
- :func:`wait_count`, :func:`wait_wal`: poll a condition until a generous deadline (WAL tables
  apply asynchronously), never a fixed sleep;
- :func:`options`, :func:`server`, :func:`require_protocol`: load options and clients for a test's tables.
"""

from __future__ import annotations

import io
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import questdb

from engine.dbn.kernels import ACTIONS, NS_PER_DAY, SIDES
from engine.questdb.conf import QuestDBOptions, parse_questdb_url
from engine.questdb.ddl import DEDUP_KEYS, MBO_COLUMNS
from engine.questdb.http import Backoff, QuestDBHttp
from engine.questdb.protocols import _QWP_PARAMS
from tests.support.oracle import dbn_store

__all__ = [
    "CANONICAL",
    "KEY",
    "assert_no_duplicate_keys",
    "assert_same_rows",
    "count",
    "expected_rows",
    "load_arrow",
    "options",
    "qwp_problem",
    "read_rows",
    "require_protocol",
    "server",
    "wait_count",
    "wait_wal",
]

CANONICAL = tuple(c for c, _ in MBO_COLUMNS)
"""The table's columns: DESIGN.md section 3, then day_seq."""
KEY = list(DEDUP_KEYS)
_TYPES = dict(MBO_COLUMNS)
_INT_NULL, _LONG_NULL = -(2**31), -(2**63)
DEADLINE = 120.0
"""Seconds any wait on the server may take before a test gives up (a busy 2-core box is slow)."""


def server(url: str, timeout: float = 300.0) -> QuestDBHttp:
    """An ``/exec`` client of ``url`` that retries for 30 s."""
    return QuestDBHttp(parse_questdb_url(url), backoff=Backoff(timeout=30.0), timeout=timeout)


def options(url: str, names: tuple[str, str], protocol: str = "auto", **kw: Any) -> QuestDBOptions:
    """Load options into the test's (MBO table, log table)."""
    kw.setdefault("verify_timeout_s", DEADLINE)
    return QuestDBOptions.from_env(url=url, protocol=protocol, table=names[0], log_table=names[1], **kw)


def qwp_problem(url: str) -> str | None:
    """Why QWP/WebSocket cannot be used at ``url`` (the client's own error), or None."""
    try:
        conn = questdb.connect(parse_questdb_url(url).qwp_conf(**_QWP_PARAMS))
    except (questdb.QuestDBError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    conn.close()
    return None


def require_protocol(url: str, protocol: str) -> None:
    """Skip, with the reason, when the server does not offer ``protocol``."""
    address = QuestDBOptions.from_env(url=url).address  # QDB_ILP_TCP_PORT as the sink reads it
    if protocol == "qwp" and (why := qwp_problem(url)) is not None:
        pytest.skip(f"QuestDB at {url} does not accept QWP/WebSocket: {why}")
    if protocol == "ilp-tcp":
        try:
            socket.create_connection((address.host, address.tcp_port), timeout=3).close()
        except OSError as exc:
            pytest.skip(f"ILP/TCP port {address.host}:{address.tcp_port} does not accept connections: {exc}")


# -- the oracle ------------------------------------------------------------------------------------
def expected_rows(path: Path, symbols: set[str] | None = None) -> pd.DataFrame:
    """The rows a load of ``path`` must leave, from databento's decoder (day_seq by groupby)."""
    store = dbn_store(path)
    kwargs = {"schema": "mbo"} if store.schema is None else {}
    df = store.to_df(map_symbols=True, price_type="fixed", pretty_ts=False, **kwargs).reset_index()
    rec = np.asarray(store.to_ndarray(**kwargs))
    out = pd.DataFrame({
        "ts_event": rec["ts_event"].astype(np.int64), "symbol": df["symbol"].astype(str).to_numpy(),
        "instrument_id": rec["instrument_id"].view(np.int32).astype(np.int64),
        "publisher_id": rec["publisher_id"].astype(np.int64), "order_id": rec["order_id"].view(np.int64),
        "price_raw": rec["price"].astype(np.int64), "size": rec["size"].view(np.int32).astype(np.int64),
        "flags": rec["flags"].astype(np.int64), "channel_id": rec["channel_id"].astype(np.int64),
        "action": rec["action"].astype("U1"), "side": rec["side"].astype("U1"),
        "ts_recv": rec["ts_recv"].astype(np.int64), "ts_in_delta": rec["ts_in_delta"].astype(np.int64),
        "sequence": rec["sequence"].astype(np.int64),
    })  # fmt: skip
    undef = rec["price"] == 2**63 - 1
    out["price"] = np.where(undef, np.nan, rec["price"] / 1e9)
    out["day_seq"] = (
        out.groupby([out["instrument_id"], out["ts_recv"] // NS_PER_DAY], sort=False)
        .cumcount()
        .astype(np.int64)
    )
    if symbols is not None:  # numbered before filtering: a filter drops whole instruments
        out = out[out["symbol"].isin(symbols)].reset_index(drop=True)
    return out[list(CANONICAL)]


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Every column equal, as a set of rows keyed by the dedup keys (order-free)."""
    assert len(got) == len(want)
    g = got[list(CANONICAL)].sort_values(KEY, kind="stable").reset_index(drop=True)
    w = want[list(CANONICAL)].sort_values(KEY, kind="stable").reset_index(drop=True)
    for c in CANONICAL:
        if c == "price":
            gv = g[c].astype(float).to_numpy()
            wv = w[c].to_numpy()
            np.testing.assert_array_equal(np.isnan(gv), np.isnan(wv))
            np.testing.assert_array_equal(gv[~np.isnan(gv)], wv[~np.isnan(wv)])
        elif c in ("symbol", "action", "side"):
            assert g[c].astype(str).tolist() == w[c].astype(str).tolist(), c
        else:
            np.testing.assert_array_equal(g[c].astype(np.int64).to_numpy(), w[c].to_numpy(), err_msg=c)


# -- reading a table back --------------------------------------------------------------------------
SELECT_ALL = ", ".join(f"cast({c} AS LONG) AS {c}" if c in ("ts_event", "ts_recv") else c for c in CANONICAL)


def export_parquet(http: QuestDBHttp, sql: str) -> pa.Table:
    """``/exp?query=sql&fmt=parquet`` as a table (fails the test with the server's answer otherwise)."""
    url = f"{http.address.http_url}/exp?{urllib.parse.urlencode({'query': sql, 'fmt': 'parquet'})}"
    req = urllib.request.Request(url)
    if auth := http.address.auth_header():
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        pytest.fail(f"/exp?fmt=parquet refused {sql!r}: HTTP {exc.code} {exc.read()[:300]!r}")
    assert body[:4] == body[-4:] == b"PAR1", f"/exp?fmt=parquet did not answer Parquet: {body[:300]!r}"
    return pq.read_table(io.BytesIO(body))


def read_rows(http: QuestDBHttp, table: str) -> pd.DataFrame:
    """Every row of ``table`` (canonical columns + day_seq), timestamps as ns integers, NULLs as sentinels."""
    t = export_parquet(http, f"SELECT {SELECT_ALL} FROM {table}")
    cols = {}
    for name in CANONICAL:
        col = t.column(name).combine_chunks()
        qtype = _TYPES[name]
        if qtype == "SYMBOL":
            col = col.cast(pa.string())
        elif qtype in ("INT", "LONG") and col.null_count:  # QuestDB reads its NULL sentinel back as NULL
            col = col.fill_null(pa.scalar(_INT_NULL if qtype == "INT" else _LONG_NULL, col.type))
        cols[name] = col
    return pa.table(cols).to_pandas()


def count(http: QuestDBHttp, table: str) -> int:
    return int(http.exec(f"SELECT count() AS n FROM {table}").dataset[0][0])


def wait_count(http: QuestDBHttp, table: str, want: int, timeout: float = DEADLINE) -> int:
    """``count()`` once it equals ``want`` (WAL tables apply asynchronously), or what it is at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        n = count(http, table)
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def wait_wal(http: QuestDBHttp, table: str, timeout: float = DEADLINE) -> dict:
    """The table's ``wal_tables()`` row once ``writerTxn`` has caught up with ``sequencerTxn``."""
    deadline = time.monotonic() + timeout
    while True:
        rows = http.exec(f"SELECT * FROM wal_tables() WHERE name = '{table}'").records()
        assert len(rows) == 1, rows
        r = rows[0]
        assert r["suspended"] is False, r
        if r["writerTxn"] >= r["sequencerTxn"] or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def assert_no_duplicate_keys(http: QuestDBHttp, table: str) -> None:
    keys = ", ".join(DEDUP_KEYS)
    res = http.exec(f"SELECT count() AS n FROM (SELECT {keys}, count() AS c FROM {table}) WHERE c > 1")
    assert int(res.dataset[0][0]) == 0


def load_arrow(url: str, names: tuple[str, str], table: pa.Table, reverse: bool = False) -> None:
    """Rows of an :data:`~engine.dbn.columns.MBO_SCHEMA` table into the test's (MBO table, log table),
    ``day_seq`` numbered in the table's order (feed order), over ILP/HTTP; returns once all are visible.

    For tables no DBN file holds (e.g. a lake whose ts_event was cut to make long runs of ties).
    With ``reverse``, day_seq follows the table's order but the rows are sent last first.
    """
    from engine.dbn.columns import ColumnBlock
    from engine.questdb.ddl import ensure_tables
    from engine.questdb.ilp import IlpSender
    from engine.questdb.keys import DaySequencer

    http = server(url)
    ensure_tables(http, names[0], "day", names[1])
    t = table.combine_chunks()
    arrays = {}
    for name in t.column_names:
        col = t.column(name).chunk(0) if t.column(name).num_chunks else t.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            continue
        arrays[name] = col.view(pa.int64()).to_numpy() if pa.types.is_timestamp(col.type) else col.to_numpy()
    sym = t.column("symbol").combine_chunks().cast(pa.string()).dictionary_encode()
    arrays["symbol"] = sym.indices.to_numpy().astype(np.int32)
    for name, cats in (("action", ACTIONS), ("side", SIDES)):
        code = {c: i for i, c in enumerate(cats)}
        arrays[name] = np.array(
            [code[v] for v in t.column(name).cast(pa.string()).to_pylist()], dtype=np.int8
        )
    block = ColumnBlock(arrays, sym.dictionary.to_pylist())
    block.arrays["day_seq"] = DaySequencer().number(block)  # the table's order is the feed order
    if reverse:  # ... but the rows arrive backwards: only the store's ORDER BY can give it back
        block = block.take(np.arange(len(block))[::-1].copy())
    opts = QuestDBOptions.from_env({}, url=url)
    sender = IlpSender(opts.address, opts, names[0], "http")
    try:
        sender.send(block, final=True)
        sender.finish()
    finally:
        sender.close()
    assert wait_count(http, names[0], t.num_rows) == t.num_rows
