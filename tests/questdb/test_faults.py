"""The QuestDB sink against the real server, with faults from a proxy in between (marker ``questdb``).

What the server does by itself (DDL, dedup, WAL, counts, refusals, a suspended WAL) is the real
server's doing; what it does not do on demand (a connection dropped mid-request or mid-response,
a 5xx, a lying acknowledgement) comes from :class:`tests.support.faultproxy.FaultProxy`. Every
table is unique to its test and dropped afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.dbn.columns import iter_column_blocks
from engine.errors import SinkError
from engine.questdb.conf import QuestDBOptions, parse_questdb_url
from engine.questdb.ddl import ensure_tables
from engine.questdb.http import QuestDBHttp
from engine.questdb.ilp import IlpSender
from engine.questdb.ingest import ingest_questdb
from engine.questdb.keys import FileStats
from engine.questdb.protocols import QwpSender, detect_protocol
from engine.questdb.resume import write_completion
from engine.questdb.sink import QuestDBSink
from tests.support.blocks import block_of
from tests.support.faultproxy import FaultProxy, drop_request, drop_response, status
from tests.support.qdb import (
    assert_no_duplicate_keys,
    assert_same_rows,
    count,
    expected_rows,
    options,
    read_rows,
    require_protocol,
    server,
    wait_count,
)

pytestmark = pytest.mark.questdb

ILP_ERROR = '{"code":"invalid","message":"cast error on line 7","line":7,"errorId":"x-1"}'


@pytest.fixture
def names(questdb_tables: Callable[[str], str]) -> tuple[str, str]:
    """(MBO table, ingest-log table) of this test; both dropped afterwards."""
    return questdb_tables("t_mbo"), questdb_tables("t_log")


@pytest.fixture
def http(questdb_url: str) -> QuestDBHttp:
    return server(questdb_url)


@pytest.fixture
def proxy(questdb_url: str) -> Iterator[FaultProxy]:
    """A proxy to the server's HTTP port; faults hit ILP/HTTP ``/write`` requests only."""
    a = parse_questdb_url(questdb_url)
    with FaultProxy((a.host, a.port), match="/write") as p:
        yield p


def via(
    p: FaultProxy, questdb_url: str, names: tuple[str, str], protocol: str, **kw: object
) -> QuestDBOptions:
    """Options that send through the proxy (``/exec`` too) with a short retry budget."""
    kw.setdefault("retry_timeout_ms", 10_000)
    return options(p.url, names, protocol, **kw)


def test_symbol_filter_then_full_load_is_exact(questdb_url: str, http: QuestDBHttp, names, make_day) -> None:
    path = make_day(records=20_000)
    opts = options(questdb_url, names, "ilp-http")
    part = ingest_questdb([path], options=opts, symbols={"NVDA"})
    assert part.ok, part.failed
    assert part.rows == len(expected_rows(path, {"NVDA"})) > 0
    full = ingest_questdb([path], options=opts)  # another filter: loads all, NVDA rows replace themselves
    assert full.ok and full.skipped == 0
    want = expected_rows(path)
    assert wait_count(http, names[0], len(want)) == len(want)
    assert_same_rows(read_rows(http, names[0]), want)


@pytest.mark.parametrize("connections", [1, 2])
def test_rejected_batch_mid_file_then_rerun_is_exact(
    questdb_url: str, http: QuestDBHttp, proxy: FaultProxy, names, make_day, connections: int
) -> None:
    path = make_day(records=30_000)
    opts = via(proxy, questdb_url, names, "ilp-http", flush_rows=4_000, ilp_connections=connections)
    proxy.faults.extend([None, None, None, status(400, ILP_ERROR)])
    failed = ingest_questdb([path], options=opts)
    assert not failed.ok and failed.exit_code == 1
    assert "cast error on line 7" in failed.failed[0][1]
    # one connection: the three batches before the refusal, then nothing. Two: also whatever was
    # already on its way beside the refused one (at most one or two batches), never the whole file.
    # Either way every batch but the refused one landed.
    writes = sum(r.startswith("POST /write") for r in proxy.requests)
    assert writes == 4 if connections == 1 else 4 <= writes < 30_000 // 4_000
    assert wait_count(http, names[0], (writes - 1) * 4_000) == (writes - 1) * 4_000
    assert count(http, names[1]) == 0  # no completion record for a failed file
    rerun = ingest_questdb([path], options=opts)
    assert rerun.ok and rerun.skipped == 0, rerun.failed
    assert_same_rows(read_rows(http, names[0]), expected_rows(path))


def test_dropped_connections_and_5xx_are_retried(
    questdb_url: str, http: QuestDBHttp, proxy: FaultProxy, names, make_day
) -> None:
    path = make_day(records=20_000)
    # mid-request, mid-response (the server committed the batch: it is sent again and dedup keeps
    # one copy), a 503 the client retries itself
    proxy.faults.extend([drop_request(after=1000), None, drop_response(after=10), status(503, "busy"), None])
    summary = ingest_questdb([path], options=via(proxy, questdb_url, names, "ilp-http", flush_rows=3_000))
    assert summary.ok, summary.failed
    assert not proxy.faults and len(proxy.applied) == 3  # every fault happened
    assert_same_rows(read_rows(http, names[0]), expected_rows(path))
    assert_no_duplicate_keys(http, names[0])


def test_acknowledged_but_lost_rows_are_detected_at_once(
    questdb_url: str, http: QuestDBHttp, proxy: FaultProxy, names, make_day
) -> None:
    """The first batch is answered 204 but never reaches the server: count() after the WAL apply says so."""
    path = make_day(records=10_000)
    proxy.faults.append(status(204))
    summary = ingest_questdb([path], options=via(proxy, questdb_url, names, "ilp-http", flush_rows=4_000))
    assert not summary.ok
    assert "does not hold exactly" in summary.failed[0][1]
    assert count(http, names[1]) == 0


def test_suspended_wal_is_reported(questdb_url: str, http: QuestDBHttp, names, make_day) -> None:
    ensure_tables(http, names[0], "day", names[1])
    http.exec(f"ALTER TABLE {names[0]} SUSPEND WAL WITH 28, 'No space left on device'")
    summary = ingest_questdb([make_day(records=5_000)], options=options(questdb_url, names, "ilp-http"))
    assert not summary.ok
    msg = summary.failed[0][1]
    assert "suspended WAL apply" in msg and "No space left on device" in msg and "RESUME WAL" in msg


def test_ilp_tcp_lost_connection_second_pass(questdb_url: str, http: QuestDBHttp, names, make_day) -> None:
    """ILP/TCP has no acks: the proxy drops the first connection after 64 KB, the rows in flight are
    lost, the sender reconnects; count() then finds rows missing and the file is sent again at once."""
    require_protocol(questdb_url, "ilp-tcp")
    path = make_day(records=150_000, seed=5)  # ~40 MB of ILP: far more than the socket buffers hold
    a = QuestDBOptions.from_env(url=questdb_url).address
    with FaultProxy((a.host, a.tcp_port), http=False, faults=[drop_request(after=65_536)]) as tcp:
        opts = options(questdb_url, names, "ilp-tcp", tcp_port=tcp.port, flush_rows=2_000)
        summary = ingest_questdb([path], options=opts)
        assert tcp.applied and tcp.connections >= 3  # dropped, reconnected, second pass
    assert summary.ok, summary.failed
    assert summary.protocol == "ilp-tcp" and summary.results[0].attempts == 2
    assert_same_rows(read_rows(http, names[0]), expected_rows(path))


def test_sink_for_the_pipeline(questdb_url: str, http: QuestDBHttp, names, make_day) -> None:
    path = make_day(records=12_000)
    opts = options(questdb_url, names, "ilp-http")
    sink = QuestDBSink(path, opts)
    assert not sink.skipped
    for block in iter_column_blocks(path, 1 << 16):
        sink.write(block)
    result = sink.close()
    want = expected_rows(path)
    assert result.rows == len(want) == sink.confirmed == count(http, names[0])
    assert sum(result.rows_by_day.values()) == result.rows
    again = QuestDBSink(path, opts)
    assert again.skipped
    for block in iter_column_blocks(path, 1 << 16):
        again.write(block)
    res2 = again.close()
    assert res2.skipped and res2.rows == result.rows


def test_abort_writes_no_completion(questdb_url: str, http: QuestDBHttp, names, make_day) -> None:
    path = make_day(records=12_000)
    opts = options(questdb_url, names, "ilp-http")
    sink = QuestDBSink(path, opts)
    for i, block in enumerate(iter_column_blocks(path, 1 << 16)):
        sink.write(block)
        if i == 2:
            break
    sink.abort()
    assert count(http, names[1]) == 0
    assert QuestDBSink(path, opts).skipped is False


def test_ingest_cli_feeds_lake_and_questdb_from_one_decode(
    questdb_url: str, http: QuestDBHttp, names, make_day, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.ingest import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QDB_LOG_TABLE", names[1])
    path = make_day(records=12_000)
    lake = tmp_path / "lake"
    argv = [str(path), "--parquet", str(lake), "--questdb", questdb_url, "--protocol", "ilp-http",
            "--table", names[0], "-q"]  # fmt: skip
    assert main(argv) == 0
    want = expected_rows(path)
    assert_same_rows(read_rows(http, names[0]), want)
    (day_file,) = lake.glob("mbo_*.parquet")
    assert pq.read_metadata(day_file).num_rows == len(want)


def test_ingest_cli_questdb_alone_writes_no_lake(
    questdb_url: str,
    http: QuestDBHttp,
    names,
    make_day,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from engine.ingest import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATAPAIR_LAKE", raising=False)
    monkeypatch.setenv("QDB_LOG_TABLE", names[1])
    path = make_day(records=12_000)
    assert (
        main([str(path), "--questdb", questdb_url, "--protocol", "ilp-http", "--table", names[0], "-q"]) == 0
    )
    want = expected_rows(path)
    assert_same_rows(read_rows(http, names[0]), want)
    assert not (tmp_path / "data").exists()
    out = capsys.readouterr().out
    assert f"questdb {names[0]} via ilp-http" in out and f"{len(want):,} rows" in out


def test_ingest_cli_questdb_alone_names_the_file_that_failed(
    questdb_url: str, names, make_day, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from engine.ingest import main

    monkeypatch.setenv("QDB_LOG_TABLE", names[1])
    good = make_day(records=5_000)
    bad = tmp_path / "cut.dbn.zst"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # ends inside a zstd frame
    argv = [str(good), str(bad), "--questdb", questdb_url, "--protocol", "ilp-http", "--table", names[0], "-q"]  # fmt: skip
    assert main(argv) == 1
    cap = capsys.readouterr()
    (line,) = [ln for ln in cap.err.splitlines() if "FAILED" in ln]
    assert line.startswith(f"datapair-ingest: FAILED {bad}") and "zstd" in line
    assert "1 failed" in cap.out


def test_a_burst_of_senders_raises_no_reconnect_warning(questdb_url: str, http: QuestDBHttp, names) -> None:
    """One sender per file and per completion record is deliberate: the client's warning about a burst
    of reconnections (an error under ``filterwarnings = error``) must not fail a load."""
    opts = options(questdb_url, names, "ilp-http")
    ensure_tables(http, names[0], "day", names[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(40):  # the client warns from about 25 connections in a burst
            IlpSender(opts.address, opts, names[0], "http").close()
            write_completion(opts, Path(__file__), "ab", "all", None, FileStats(), "ilp-http", 0.1)
    assert wait_count(http, names[1], 40) == 40


# -- QWP/WebSocket ------------------------------------------------------------------------------------
def test_auto_resolves_to_qwp_only_where_offered(questdb_url: str) -> None:
    require_protocol(questdb_url, "qwp")
    a = parse_questdb_url(questdb_url)
    assert detect_protocol(a) == "qwp"
    with FaultProxy((a.host, a.port), default=status(404, "Not Found")) as p:  # an older server: no QWP
        assert detect_protocol(parse_questdb_url(p.url)) == "ilp-http"
        assert p.applied


@pytest.mark.parametrize("after", [0, 300_000, 3_000_000])
def test_qwp_dropped_connection_is_retried(
    questdb_url: str, http: QuestDBHttp, names, make_day, after: int
) -> None:
    """The WebSocket is reset after ``after`` bytes of frames; the load reconnects and ends exact."""
    require_protocol(questdb_url, "qwp")
    path = make_day(records=60_000, seed=3)
    a = parse_questdb_url(questdb_url)
    with FaultProxy((a.host, a.port), match="/api/v4/write", faults=[drop_request(after=after)]) as p:
        opts = options(p.url, names, "qwp", flush_rows=3_000, qwp_rows=20_000)
        summary = ingest_questdb([path], options=opts)
        assert summary.ok, summary.failed
        assert p.applied and not p.faults  # the fault did happen
    assert_same_rows(read_rows(http, names[0]), expected_rows(path))


def test_qwp_refused_frame_is_a_sink_error(questdb_url: str, http: QuestDBHttp, names) -> None:
    """A table changed behind our back: the server refuses the frame and the sender says why."""
    require_protocol(questdb_url, "qwp")
    opts = options(questdb_url, names, "qwp", retry_timeout_ms=2_000)
    ensure_tables(http, names[0], "day", names[1])
    http.exec(f"ALTER TABLE {names[0]} DROP COLUMN price")
    http.exec(f"ALTER TABLE {names[0]} ADD COLUMN price BOOLEAN")
    sender = QwpSender(opts.address, opts, names[0])
    try:
        with pytest.raises(SinkError, match=r"cannot write DOUBLE to column \[column=price, type=BOOLEAN\]"):
            sender.send(block_of(100), final=True)
    finally:
        sender.close()
    assert count(http, names[0]) == 0


def test_forced_rerun_through_qwp_leaves_one_copy(
    questdb_url: str, http: QuestDBHttp, names, make_day
) -> None:
    require_protocol(questdb_url, "qwp")
    path = make_day(records=30_000)
    opts = options(questdb_url, names, "qwp", flush_rows=4_000, qwp_rows=9_000)
    first = ingest_questdb([path], options=opts, block_bytes=1 << 18)
    assert first.ok and first.protocol == "qwp", first.failed
    forced = ingest_questdb([path], options=replace(opts, force=True))
    assert forced.ok and forced.rows == first.rows
    assert_same_rows(read_rows(http, names[0]), expected_rows(path))
