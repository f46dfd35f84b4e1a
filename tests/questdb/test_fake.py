"""The QuestDB sink against the fake server (tests/support/questdb_fake.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.questdb.conf import QuestDBOptions
from engine.questdb.ddl import MBO_COLUMNS
from engine.questdb.ingest import ingest_questdb
from engine.questdb.sink import QuestDBSink
from tests.support.questdb_fake import (
    QWP_FLAG_DEFER_COMMIT,
    FakeQuestDB,
    assert_same_rows,
    expected_rows,
    parse_ilp,
)


@pytest.fixture
def fake() -> Iterator[FakeQuestDB]:
    f = FakeQuestDB()
    yield f
    f.close()


def fake_options(fake: FakeQuestDB, **kw: Any) -> QuestDBOptions:
    kw.setdefault("retry_timeout_ms", 2000)
    kw.setdefault("verify_timeout_s", 5)
    return QuestDBOptions.from_env({}, url=fake.url, **kw)


# -- tests ------------------------------------------------------------------------------------------
def test_ilp_parser_reads_what_the_client_writes() -> None:
    import questdb

    frame = pd.DataFrame({
        "s": pd.Categorical(["A b", "C,d"]), "x": np.array([1, -2], np.int16), "p": [1.5, np.nan],
        "t": np.array([1_761_130_860_010_235_508, 1], "datetime64[ns]"),
        "at": np.array([1_761_130_860_010_235_501, 2], "datetime64[ns]"),
    })  # fmt: skip
    buf = questdb._client.Buffer(protocol_version=2)
    buf.dataframe(frame, table_name="t", symbols=["s"], at="at")
    rows = parse_ilp(bytes(buf))
    assert rows[0] == (
        "t",
        {"s": "A b", "x": 1, "p": 1.5, "t": 1_761_130_860_010_235_508},
        1_761_130_860_010_235_501,
    )
    assert rows[1][1]["s"] == "C,d" and np.isnan(rows[1][1]["p"]) and rows[1][2] == 2


def test_ingest_sample_through_fake_ilp_http(fake: FakeQuestDB, mbo_sample: Path) -> None:
    summary = ingest_questdb([mbo_sample], options=fake_options(fake, table="mbo_t", log_table="log_t"))
    assert summary.ok, summary.failed
    assert summary.protocol == "ilp-http"
    want = expected_rows(mbo_sample)
    assert summary.rows == len(want)
    assert_same_rows(fake.tables["mbo_t"].frame(), want)
    again = ingest_questdb([mbo_sample], options=fake_options(fake, table="mbo_t", log_table="log_t"))
    assert again.ok and again.skipped == 1 and again.rows == 0
    assert len(fake.tables["mbo_t"].rows) == len(want)


def test_generated_day_rerun_forced_leaves_one_copy(fake: FakeQuestDB, make_day) -> None:
    path = make_day(records=30_000)
    opts = fake_options(fake, table="mbo_g", log_table="log_g", batch_bytes=200_000, flush_rows=5_000)
    first = ingest_questdb([path], options=opts)
    assert first.ok, first.failed
    want = expected_rows(path)
    assert first.rows == len(want)
    assert all(rows <= 5_000 and nbytes <= 200_000 for nbytes, rows in fake.writes[:-1])
    forced = ingest_questdb([path], options=replace(opts, force=True))
    assert forced.ok and forced.skipped == 0 and forced.rows == len(want)
    assert_same_rows(fake.tables["mbo_g"].frame(), want)


def test_symbol_filter_then_full_load_is_exact(fake: FakeQuestDB, make_day) -> None:
    path = make_day(records=20_000)
    opts = fake_options(fake, table="mbo_f", log_table="log_f")
    part = ingest_questdb([path], options=opts, symbols={"NVDA"})
    assert part.ok, part.failed
    assert part.rows == len(expected_rows(path, {"NVDA"})) > 0
    full = ingest_questdb([path], options=opts)  # another filter: loads all, NVDA rows replace themselves
    assert full.ok and full.skipped == 0
    assert_same_rows(fake.tables["mbo_f"].frame(), expected_rows(path))


def test_mid_file_failure_then_rerun_is_exact(fake: FakeQuestDB, make_day) -> None:
    path = make_day(records=30_000)
    opts = fake_options(fake, table="mbo_k", log_table="log_k", flush_rows=4_000)
    fake.write_faults[:] = [
        None,
        None,
        None,
        (400, {"code": "invalid", "message": "cast error on line 7", "line": 7}),
    ]
    failed = ingest_questdb([path], options=opts)
    assert not failed.ok and failed.exit_code == 1
    assert "cast error on line 7" in failed.failed[0][1]
    assert 0 < len(fake.tables["mbo_k"].rows) < 30_000
    assert not fake.tables["log_k"].rows  # no completion record for a failed file
    rerun = ingest_questdb([path], options=opts)
    assert rerun.ok and rerun.skipped == 0
    assert_same_rows(fake.tables["mbo_k"].frame(), expected_rows(path))


def test_dropped_connections_are_retried(fake: FakeQuestDB, make_day) -> None:
    path = make_day(records=20_000)
    fake.write_faults[:] = ["drop", None, "drop", (503, b"busy"), None]
    summary = ingest_questdb(
        [path], options=fake_options(fake, table="mbo_r", log_table="log_r", flush_rows=3_000)
    )
    assert summary.ok, summary.failed
    assert_same_rows(fake.tables["mbo_r"].frame(), expected_rows(path))


def test_lost_rows_are_detected_and_the_file_is_not_marked_done(fake: FakeQuestDB, make_day) -> None:
    path = make_day(records=10_000)
    opts = fake_options(fake, table="mbo_l", log_table="log_l", verify_timeout_s=0.5)
    fake.write_faults[:] = [(204, b"")]  # the server acks the first batch but keeps nothing
    summary = ingest_questdb([path], options=opts)
    assert not summary.ok
    assert "does not hold exactly" in summary.failed[0][1]
    assert not fake.tables["log_l"].rows


def test_suspended_wal_is_reported(fake: FakeQuestDB, make_day) -> None:
    path = make_day(records=5_000)
    fake.suspended = True
    summary = ingest_questdb([path], options=fake_options(fake, table="mbo_s", log_table="log_s"))
    assert (
        not summary.ok
        and "suspended WAL apply" in summary.failed[0][1]
        and "disk full" in summary.failed[0][1]
    )


def test_ilp_tcp_load_and_lost_connection_second_pass(fake: FakeQuestDB, make_day) -> None:
    path = make_day(records=15_000)
    opts = fake_options(fake, table="mbo_tcp", log_table="log_tcp", protocol="ilp-tcp", tcp_port=fake.tcp_port,
                        verify_timeout_s=1.0)  # fmt: skip
    fake.tcp_drops = 1  # the server loses the first connection's rows: no ack on TCP, count() notices
    summary = ingest_questdb([path], options=opts)
    assert summary.ok, summary.failed
    assert summary.protocol == "ilp-tcp" and summary.results[0].attempts == 2
    assert_same_rows(fake.tables["mbo_tcp"].frame(), expected_rows(path))


def test_sink_for_the_pipeline(fake: FakeQuestDB, make_day) -> None:
    from engine.dbn.columns import iter_column_blocks

    path = make_day(records=12_000)
    opts = fake_options(fake, table="mbo_p", log_table="log_p")
    sink = QuestDBSink(path, opts)
    assert not sink.skipped
    for block in iter_column_blocks(path, 1 << 16):
        sink.write(block)
    result = sink.close()
    assert result.rows == len(expected_rows(path))
    assert sum(result.rows_by_day.values()) == result.rows
    assert sink.confirmed == result.rows
    again = QuestDBSink(path, opts)
    assert again.skipped
    for block in iter_column_blocks(path, 1 << 16):
        again.write(block)
    res2 = again.close()
    assert res2.skipped and res2.rows == result.rows


def test_abort_writes_no_completion(fake: FakeQuestDB, make_day) -> None:
    from engine.dbn.columns import iter_column_blocks

    path = make_day(records=12_000)
    opts = fake_options(fake, table="mbo_a", log_table="log_a")
    sink = QuestDBSink(path, opts)
    for i, block in enumerate(iter_column_blocks(path, 1 << 16)):
        sink.write(block)
        if i == 2:
            break
    sink.abort()
    assert not fake.tables["log_a"].rows
    assert QuestDBSink(path, opts).skipped is False


def test_ingest_cli_feeds_lake_and_questdb_from_one_decode(
    fake: FakeQuestDB, make_day, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    from engine.ingest import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QDB_LOG_TABLE", "log_cli")
    monkeypatch.setenv("QDB_VERIFY_TIMEOUT", "5")
    path = make_day(records=12_000)
    lake = tmp_path / "lake"
    argv = [
        str(path),
        "--parquet",
        str(lake),
        "--questdb",
        fake.url,
        "--protocol",
        "ilp-http",
        "--table",
        "mbo_cli",
        "-q",
    ]
    assert main(argv) == 0
    want = expected_rows(path)
    assert_same_rows(fake.tables["mbo_cli"].frame(), want)
    (day_file,) = lake.glob("mbo_*.parquet")
    assert pq.read_metadata(day_file).num_rows == len(want)


def test_ingest_cli_questdb_alone_writes_no_lake(
    fake: FakeQuestDB,
    make_day,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from engine.ingest import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATAPAIR_LAKE", raising=False)
    monkeypatch.setenv("QDB_LOG_TABLE", "log_cli2")
    monkeypatch.setenv("QDB_VERIFY_TIMEOUT", "5")
    path = make_day(records=12_000)
    assert (
        main([str(path), "--questdb", fake.url, "--protocol", "ilp-http", "--table", "mbo_cli2", "-q"]) == 0
    )
    assert_same_rows(fake.tables["mbo_cli2"].frame(), expected_rows(path))
    assert not (tmp_path / "data").exists()
    out = capsys.readouterr().out
    assert "questdb mbo_cli2 via ilp-http" in out
    assert f"{len(expected_rows(path)):,} rows" in out


def test_a_burst_of_senders_raises_no_reconnect_warning(fake: FakeQuestDB) -> None:
    """One sender per file and per completion record is deliberate: the client's warning about a burst
    of reconnections (an error under ``filterwarnings = error``) must not fail a load."""
    from engine.questdb.ddl import ensure_tables
    from engine.questdb.http import Backoff, QuestDBHttp
    from engine.questdb.keys import FileStats
    from engine.questdb.protocols import IlpSender
    from engine.questdb.resume import write_completion

    opts = fake_options(fake, table="mbo_b", log_table="log_b")
    ensure_tables(QuestDBHttp(opts.address, backoff=Backoff(timeout=1)), "mbo_b", "day", "log_b")
    for _ in range(40):  # the client warns from about 25 connections in a burst
        IlpSender(opts.address, opts, "mbo_b", "http").close()
        write_completion(opts, Path(__file__), "ab", "all", None, FileStats(), "ilp-http", 0.1)
    assert len(fake.tables["log_b"].rows) == 40


# -- QWP/WebSocket ------------------------------------------------------------------------------------
@pytest.fixture
def fake_qwp() -> Iterator[FakeQuestDB]:
    f = FakeQuestDB(qwp=True)
    yield f
    f.close()


def test_auto_resolves_to_qwp_only_where_offered(fake: FakeQuestDB, fake_qwp: FakeQuestDB) -> None:
    from engine.questdb.protocols import detect_protocol

    assert detect_protocol(fake_options(fake).address) == "ilp-http"  # /write/v4 answers 404
    assert detect_protocol(fake_options(fake_qwp).address) == "qwp"


def test_generated_day_through_fake_qwp(fake_qwp: FakeQuestDB, make_day) -> None:
    path = make_day(records=30_000)
    opts = fake_options(fake_qwp, table="mbo_q", log_table="log_q", flush_rows=4_000, qwp_rows=9_000)
    first = ingest_questdb([path], options=opts, block_bytes=1 << 18)
    assert first.ok, first.failed
    assert first.protocol == "qwp"
    want = expected_rows(path)
    assert first.rows == len(want)
    assert_same_rows(fake_qwp.tables["mbo_q"].frame(), want)
    # every column went out as exactly its table type (the fake refuses anything else)
    sent = fake_qwp.qwp_columns["mbo_q"]
    assert len(sent) == len(MBO_COLUMNS) and dict(sent) == dict(MBO_COLUMNS)
    assert sent[-1] == ("ts_event", "TIMESTAMP_NS")  # the designated column (empty name) comes last
    # several committed bulk loads, each cut into frames of at most flush_rows rows
    assert sum(1 for _, flags in fake_qwp.qwp_frames if not flags & QWP_FLAG_DEFER_COMMIT) >= 3
    again = ingest_questdb([path], options=opts)
    assert again.ok and again.skipped == 1
    forced = ingest_questdb([path], options=replace(opts, force=True))
    assert forced.ok and forced.rows == len(want)
    assert_same_rows(fake_qwp.tables["mbo_q"].frame(), want)


def test_qwp_sample_exact(fake_qwp: FakeQuestDB) -> None:
    from tests.support.samples import sample_path

    path = sample_path("databento-python/GLBX.MDP3/test_data.mbo.dbn.zst")
    summary = ingest_questdb([path], options=fake_options(fake_qwp, table="mbo_s", log_table="log_s"))
    assert summary.ok and summary.protocol == "qwp", summary.failed
    assert_same_rows(fake_qwp.tables["mbo_s"].frame(), expected_rows(path))


@pytest.mark.parametrize("at_frame", [0, 2, 7])
def test_qwp_dropped_connection_is_retried(fake_qwp: FakeQuestDB, make_day, at_frame: int) -> None:
    path = make_day(records=20_000)
    fake_qwp.qwp_faults[:] = [None] * at_frame + ["drop"]
    opts = fake_options(fake_qwp, table="mbo_d", log_table="log_d", flush_rows=3_000, qwp_rows=7_000)
    summary = ingest_questdb([path], options=opts)
    assert summary.ok, summary.failed
    assert not fake_qwp.qwp_faults  # the fault did happen
    assert_same_rows(fake_qwp.tables["mbo_d"].frame(), expected_rows(path))


def test_qwp_refused_frame_is_a_sink_error(fake_qwp: FakeQuestDB) -> None:
    from engine.errors import SinkError
    from engine.questdb.ddl import ensure_tables
    from engine.questdb.http import Backoff, QuestDBHttp
    from engine.questdb.protocols import QwpSender
    from tests.support.blocks import block_of

    opts = fake_options(fake_qwp, table="mbo_x", log_table="log_x", protocol="qwp")
    ensure_tables(QuestDBHttp(opts.address, backoff=Backoff(timeout=1)), "mbo_x", "day", "log_x")
    t = fake_qwp.tables["mbo_x"]
    t.columns = [
        (c, "INT" if c == "publisher_id" else typ) for c, typ in t.columns
    ]  # changed behind our back
    sender = QwpSender(opts.address, opts, "mbo_x")
    try:
        with pytest.raises(SinkError, match="column publisher_id is INT, the frame sends SHORT"):
            sender.send(block_of(100), final=True)
    finally:
        sender.close()
    assert not t.rows
