"""Against a real QuestDB (9.1+, reviewed on 9.4): marker ``questdb``, skipped unless ``QUESTDB_URL`` answers.

The ``questdb_url`` fixture (tests/conftest.py) probes ``QUESTDB_URL`` (default
http://localhost:9000) once; every test loads into tables with unique names (``questdb_tables``)
that are dropped afterwards, pass or fail. Rows are read back with ``/exp?fmt=parquet``
(timestamps selected as ``cast(.. AS LONG)``, exact nanoseconds; NULLs turned back into the
sentinels that were sent) and compared column by column with databento's decoding.

``test_documented_server_facts`` checks, on the server itself, each QuestDB behaviour the engine
relies on (type names of ``table_columns()``, ``tables()`` and ``wal_tables()`` columns, epoch
literals on ``TIMESTAMP_NS``, the ``/exec`` JSON shape, ``/exp?fmt=parquet``), so a failure names
the fact that changed rather than a symptom further down.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import questdb

from engine.errors import SinkError
from engine.questdb.conf import parse_questdb_url
from engine.questdb.ddl import DEDUP_KEYS, LOG_COLUMNS, MBO_COLUMNS, mbo_table_ddl
from engine.questdb.http import QuestDBHttp
from engine.questdb.ingest import ingest_questdb
from engine.questdb.protocols import quiet_reconnect_warning
from tests.support.hooks import BLOCK_SENDER_AFTER, patched_env
from tests.support.qdb import (
    SELECT_ALL,
    assert_no_duplicate_keys,
    assert_same_rows,
    count,
    expected_rows,
    export_parquet,
    options,
    qwp_problem,
    read_rows,
    require_protocol,
    wait_count,
    wait_wal,
)
from tests.support.qdb import server as make_server
from tests.support.samples import MBO_SAMPLES, ROOT, sample_path

pytestmark = pytest.mark.questdb

PROTOCOLS = ["qwp", "ilp-http", "ilp-tcp"]


@pytest.fixture(scope="module")
def server(questdb_url: str) -> QuestDBHttp:
    return make_server(questdb_url)


@pytest.fixture
def tables(questdb_tables: Callable[[str], str]) -> tuple[str, str]:
    """(MBO table, ingest-log table) of this test; both dropped afterwards."""
    return questdb_tables("t_mbo"), questdb_tables("t_log")


# -- what the engine relies on -------------------------------------------------------------------------
def test_documented_server_facts(questdb_url: str, server: QuestDBHttp, tables: tuple[str, str]) -> None:
    t = tables[0]
    assert server.exec(mbo_table_ddl(t, "day")).ddl == "OK"
    # table_columns(): the type names QuestDB reports, the designated timestamp and the upsert keys
    cols = server.exec(f"SELECT * FROM table_columns('{t}')").records()
    assert [(c["column"], c["type"]) for c in cols] == list(MBO_COLUMNS)
    assert [c["column"] for c in cols if c["designated"] is True] == ["ts_event"]
    assert sorted(c["column"] for c in cols if c["upsertKey"] is True) == sorted(DEDUP_KEYS)
    # tables(): WAL, dedup, designated timestamp, partitioning
    (info,) = server.exec(f"SELECT * FROM tables() WHERE table_name = '{t}'").records()
    assert (info["walEnabled"], info["dedup"], info["designatedTimestamp"], info["partitionBy"]) == (
        True, True, "ts_event", "DAY",
    )  # fmt: skip
    # two rows over ILP/HTTP with nanosecond timestamps; the second one lacks order_id (NULL)
    ts = 1_761_130_860_010_235_508
    with (
        quiet_reconnect_warning(),
        questdb.Sender.from_conf(parse_questdb_url(questdb_url).ilp_http_conf()) as sender,
    ):
        assert sender.protocol_version >= 2
        for i, extra in enumerate(({"order_id": 2**62 + 7}, {})):
            sender.row(
                t,
                symbols={"symbol": "NVDA", "action": "A", "side": "B"},
                columns={
                    "instrument_id": 11667, "publisher_id": 2, "price_raw": 181_250_000_000, "price": 181.25,
                    "size": 100, "flags": 130, "channel_id": 0, "ts_recv": questdb.TimestampNanos(ts + 17 + i),
                    "ts_in_delta": -5, "sequence": 4_294_967_295, "day_seq": i, **extra,
                },
                at=questdb.TimestampNanos(ts + i),
            )  # fmt: skip
    # wal_tables(): name, suspended, writerTxn, sequencerTxn; rows are visible once writerTxn catches up
    r = wait_wal(server, t)
    assert r["writerTxn"] == r["sequencerTxn"] >= 1
    assert count(server, t) == 2

    # epoch integers on TIMESTAMP_NS columns are nanoseconds (designated or not), not microseconds
    def n(where: str) -> int:
        return int(server.exec(f"SELECT count() AS n FROM {t} WHERE {where}").dataset[0][0])

    assert n(f"ts_event = {ts}") == 1 and n(f"ts_event = {ts // 1000}") == 0
    assert n(f"ts_event BETWEEN {ts} AND {ts + 1} AND ts_recv BETWEEN {ts + 17} AND {ts + 17}") == 1
    assert n(f"ts_recv >= {ts + 18}") == 1
    # ... and so are ISO literals with nine fractional digits
    assert n("ts_event >= '2025-10-22T11:01:00.010235509Z'") == 1
    assert n("ts_recv < '2025-10-22T11:01:00.010235526Z'") == 1
    # /exec JSON: columns [{name, type}], dataset rows, count; TIMESTAMP_NS as an ISO string with
    # nanoseconds, cast(.. AS LONG) exact, SYMBOL as text, a LONG NULL as null
    res = server.exec(
        f"SELECT ts_event, cast(ts_event AS LONG) AS ns, symbol, order_id, sequence FROM {t} ORDER BY ts_event"
    )
    assert res.columns == [("ts_event", "TIMESTAMP_NS"), ("ns", "LONG"), ("symbol", "SYMBOL"),
                           ("order_id", "LONG"), ("sequence", "LONG")]  # fmt: skip
    assert res.count == 2
    assert isinstance(res.dataset[0][0], str) and "2025-10-22T11:01:00.010235508" in res.dataset[0][0]
    assert res.dataset[0][1:] == [ts, "NVDA", 2**62 + 7, 4_294_967_295]
    assert res.dataset[1][1:4] == [ts + 1, "NVDA", None]
    # /exp?fmt=parquet with the export's parameters
    got = export_parquet(server, f"SELECT {SELECT_ALL} FROM {t}")
    assert got.num_rows == 2 and got.column("ts_recv").to_pylist() == [ts + 17, ts + 18]
    assert got.column("symbol").cast(pa.string()).to_pylist() == ["NVDA", "NVDA"]

def test_ilp_dataframe_keeps_nanoseconds_of_tz_aware_columns(
    questdb_url: str, server: QuestDBHttp, tables: tuple[str, str]
) -> None:
    """``Sender.dataframe(df, at=...)`` with ``datetime64[ns, UTC]`` columns into TIMESTAMP_NS columns."""
    t = tables[0]
    server.exec(
        f"CREATE TABLE {t} (ts TIMESTAMP_NS, other TIMESTAMP_NS, v LONG) TIMESTAMP(ts) PARTITION BY DAY WAL"
    )
    ns = np.array([1_761_130_860_010_235_508, 1_761_130_860_010_235_509, 1_761_217_260_999_999_999])
    df = pd.DataFrame({
        "ts": pd.to_datetime(ns, utc=True), "other": pd.to_datetime(ns + 1, utc=True), "v": np.arange(3),
    })  # fmt: skip
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    with (
        quiet_reconnect_warning(),
        questdb.Sender.from_conf(parse_questdb_url(questdb_url).ilp_http_conf()) as sender,
    ):
        sender.dataframe(df, table_name=t, at="ts")
    assert wait_count(server, t, 3) == 3
    got = server.exec(f"SELECT cast(ts AS LONG), cast(other AS LONG), v FROM {t} ORDER BY v").dataset
    assert got == [[int(a), int(a) + 1, i] for i, a in enumerate(ns)]

# -- loads, read back exactly ------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("sample", MBO_SAMPLES, ids=lambda s: s.split("/", 1)[1])
def test_sample_round_trip(
    questdb_url: str, server: QuestDBHttp, tables: tuple[str, str], protocol: str, sample: str
) -> None:
    require_protocol(questdb_url, protocol)
    path = sample_path(sample)
    summary = ingest_questdb([path], options=options(questdb_url, tables, protocol))
    assert summary.ok, summary.failed
    assert summary.protocol == protocol
    want = expected_rows(path)
    assert summary.rows == len(want)
    assert wait_count(server, tables[0], len(want)) == len(want)
    assert_same_rows(read_rows(server, tables[0]), want)

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_generated_day_exact_and_idempotent(
    questdb_url: str, server: QuestDBHttp, tables: tuple[str, str], protocol: str, make_day
) -> None:
    require_protocol(questdb_url, protocol)
    path = make_day(records=300_000, symbols=("NVDA", "AAPL", "MSFT", "TSLA", "AMD"), seed=11)
    opts = options(questdb_url, tables, protocol, flush_rows=20_000, qwp_rows=100_000)
    first = ingest_questdb([path], options=opts)
    assert first.ok, first.failed
    want = expected_rows(path)
    assert first.rows == len(want) == wait_count(server, tables[0], len(want))
    assert_same_rows(read_rows(server, tables[0]), want)
    log = server.exec(f"SELECT symbol, publisher_id, row_count FROM {tables[1]} ORDER BY symbol").records()
    total = [r for r in log if r["symbol"] is None]
    assert len(total) == 1 and total[0]["row_count"] == len(want) and total[0]["publisher_id"] == -1
    per_symbol = {r["symbol"]: r["row_count"] for r in log if r["symbol"] is not None}
    assert per_symbol == want.groupby("symbol").size().to_dict()
    again = ingest_questdb([path], options=opts)  # complete: skipped without decoding
    assert again.ok and again.skipped == 1 and again.rows == 0
    forced = ingest_questdb([path], options=replace(opts, force=True))  # sent again: dedup keeps one copy
    assert forced.ok and forced.skipped == 0 and forced.rows == len(want)
    assert wait_count(server, tables[0], len(want), timeout=5) == len(want)
    assert_no_duplicate_keys(server, tables[0])
    nvda = ingest_questdb([path], options=replace(opts, force=True), symbols={"NVDA"})
    assert nvda.ok and nvda.rows == int((want["symbol"] == "NVDA").sum())
    assert wait_count(server, tables[0], len(want), timeout=5) == len(want)
    assert_same_rows(read_rows(server, tables[0]), want)

def test_table_ddl_partition_and_schema(
    questdb_url: str, server: QuestDBHttp, tables: tuple[str, str], make_day
) -> None:
    path = make_day(records=20_000)
    summary = ingest_questdb([path], options=options(questdb_url, tables, "ilp-http", partition="hour"))
    assert summary.ok, summary.failed
    (info,) = server.exec(f"SELECT * FROM tables() WHERE table_name = '{tables[0]}'").records()
    assert (info["partitionBy"], info["designatedTimestamp"], info["walEnabled"], info["dedup"]) == (
        "HOUR", "ts_event", True, True,
    )  # fmt: skip
    cols = server.exec(f"SELECT * FROM table_columns('{tables[0]}')").records()
    assert [(c["column"], c["type"]) for c in cols] == list(MBO_COLUMNS)
    assert sorted(c["column"] for c in cols if c["upsertKey"] is True) == sorted(DEDUP_KEYS)
    log_cols = server.exec(f"SELECT * FROM table_columns('{tables[1]}')").records()
    assert [(c["column"], c["type"]) for c in log_cols] == list(LOG_COLUMNS)
    parts = server.exec(f"SELECT name FROM table_partitions('{tables[0]}')").records()
    assert len(parts) > 10, parts  # the day spans 04:00-20:00 New York: one partition per hour

def test_mismatching_table_is_refused(
    questdb_url: str, server: QuestDBHttp, tables: tuple[str, str], make_day
) -> None:
    seed_ddl = (
        f"CREATE TABLE {tables[0]} (ts_event TIMESTAMP, symbol SYMBOL, instrument_id INT, order_id LONG, price_raw LONG, "
        "price DOUBLE, size INT, flags INT, channel_id SHORT, action SYMBOL, side SYMBOL, ts_recv TIMESTAMP, "
        "ts_in_delta INT, sequence INT) TIMESTAMP(ts_event) PARTITION BY DAY WAL"
    )
    server.exec(seed_ddl)
    with pytest.raises(SinkError) as info:
        ingest_questdb([make_day(records=5_000)], options=options(questdb_url, tables, "ilp-http"))
    msg = str(info.value)
    assert "different schema" in msg and "column ts_event is TIMESTAMP, expected TIMESTAMP_NS" in msg
    assert "column sequence is INT, expected LONG" in msg and "column day_seq is missing" in msg
    assert "column publisher_id is missing" in msg and "dedup upsert keys are (none)" in msg
    assert count(server, tables[0]) == 0

def test_two_files_in_parallel_auto_protocol(
    questdb_url: str, server: QuestDBHttp, tables: tuple[str, str], make_day
) -> None:
    a = make_day(records=60_000, date="2025-10-22", seed=21)
    b = make_day(records=60_000, date="2025-10-23", seed=22)
    summary = ingest_questdb([a, b], options=options(questdb_url, tables, "auto"), jobs=2)
    assert summary.ok, summary.failed
    assert summary.protocol == ("ilp-http" if qwp_problem(questdb_url) else "qwp")
    want = pd.concat([expected_rows(a), expected_rows(b)], ignore_index=True)
    assert summary.rows == len(want) == wait_count(server, tables[0], len(want))
    assert_same_rows(read_rows(server, tables[0]), want)

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kill_mid_ingest_then_rerun_is_exact(
    questdb_url: str, server: QuestDBHttp, tables: tuple[str, str], protocol: str, make_day, tmp_path
) -> None:
    require_protocol(questdb_url, protocol)
    path = make_day(records=240_000, symbols=("NVDA", "AAPL", "MSFT"), seed=31)  # 7 blocks of 2 MiB
    opts = options(questdb_url, tables, protocol, flush_rows=10_000, qwp_rows=20_000)
    code = textwrap.dedent("""
        import json, sys
        from engine.questdb.conf import QuestDBOptions
        from engine.questdb.ingest import ingest_questdb
        opts = QuestDBOptions(**json.loads(sys.argv[1]))
        ingest_questdb([sys.argv[2]], options=opts)
    """)
    # the load sends two blocks, then hangs: it is mid-file whenever the kill comes
    env = patched_env(tmp_path, BLOCK_SENDER_AFTER.format(sends=2))
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(ROOT)])
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(opts.__dict__), str(path)], cwd=ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if count(server, tables[0]) > 0:
                    break
            except Exception:  # the table is created by the child
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the load ended or failed before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    want = expected_rows(path)
    wait_wal(server, tables[0])  # what the killed load committed, applied (ILP/TCP may still add rows)
    partial = count(server, tables[0])
    if protocol == "ilp-tcp":  # no acks: the server may still apply every row the socket had taken
        assert 0 < partial <= len(want)
    else:
        assert 0 < partial < len(want)
    assert count(server, tables[1]) == 0  # killed before its completion record
    rerun = ingest_questdb([path], options=opts)
    assert rerun.ok, rerun.failed
    assert rerun.skipped == 0 and rerun.rows == len(want)
    assert wait_count(server, tables[0], len(want), timeout=10) == len(want)
    assert_no_duplicate_keys(server, tables[0])
    per_symbol = {
        r["symbol"]: int(r["n"])
        for r in server.exec(f"SELECT symbol, count() AS n FROM {tables[0]}").records()
    }
    assert per_symbol == want.groupby("symbol").size().to_dict()
    assert_same_rows(read_rows(server, tables[0]), want)
    again = ingest_questdb([path], options=opts)
    assert again.ok and again.skipped == 1

def _renamed(path, tmp_path, old: bytes, new: bytes):
    """The same records under other symbology: ``old`` renamed ``new`` in the metadata header."""
    import zstandard

    with open(path, "rb") as f:
        raw = zstandard.ZstdDecompressor().stream_reader(f).read()
    header_len = 8 + int.from_bytes(raw[4:8], "little")
    head = raw[:header_len]
    assert len(old) == len(new) and head.count(old + b"\0") >= 1
    out = tmp_path / path.name.replace(".dbn.zst", "-renamed.dbn")
    out.write_bytes(head.replace(old + b"\0", new + b"\0") + raw[header_len:])
    return out


def test_reload_with_changed_symbology_keeps_one_copy(
    questdb_url: str, server: QuestDBHttp, tables: tuple[str, str], make_day, tmp_path
) -> None:
    """Issue 15.9: a file downloaded again with changed mappings (NVDA now called NVDX) replaces its
    rows (keys by instrument_id), it does not add a second copy under the new name."""
    path = make_day(records=20_000)
    renamed = _renamed(path, tmp_path, b"NVDA", b"NVDX")
    opts = options(questdb_url, tables, "ilp-http")
    first = ingest_questdb([path], options=opts)
    assert first.ok, first.failed
    second = ingest_questdb([renamed], options=opts)
    assert second.ok and second.skipped == 0, second.failed
    want = expected_rows(renamed)
    assert set(want["symbol"]) == {"NVDX", "AAPL", "MSFT", "TSLA"}
    assert count(server, tables[0]) == len(want) == first.rows
    assert_no_duplicate_keys(server, tables[0])
    assert_same_rows(read_rows(server, tables[0]), want)


def test_log_ts_is_microseconds_of_the_load(
    server: QuestDBHttp, questdb_url: str, tables: tuple[str, str], make_day
) -> None:
    """The ingest log's designated ``ts`` (TIMESTAMP, µs) is the wall-clock time of the completion record."""
    before = dt.datetime.now(dt.UTC)
    summary = ingest_questdb([make_day(records=5_000)], options=options(questdb_url, tables, "ilp-http"))
    assert summary.ok, summary.failed
    wait_wal(server, tables[1])
    (row,) = server.exec(f"SELECT cast(ts AS LONG) AS us FROM {tables[1]} WHERE symbol IS NULL").dataset
    after = dt.datetime.now(dt.UTC)
    us = row[0]
    assert before.timestamp() * 1e6 - 1e6 <= us <= after.timestamp() * 1e6 + 1e6
