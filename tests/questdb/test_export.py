"""Issue 5: exporting QuestDB days into the lake, against the real server (marker ``questdb``).

A generated day goes into a table of its own through the QuestDB sink, and is exported back over
both transports (``/exp?fmt=parquet`` and the client's QWP query); every exported file must equal
the lake ingested directly from the DBN day. Failures come from
:class:`~tests.support.faultproxy.FaultProxy` between the export and the server (a 500, a reset,
a body cut short, garbage, a QWP stream broken mid-day); the table changing during an export is
the real server's doing. The SQL building, the batch conversion and the CLI's usage need no server.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import questdb

from engine.dbn.columns import COLUMNS, MBO_SCHEMA
from engine.errors import ConfigError, QueryError, SinkError, StoreUnavailableError
from engine.export import main
from engine.lake.ingest import ingest_parquet
from engine.lake.layout import lake_file_name, read_lake_info
from engine.lake.options import ParquetOptions
from engine.lake.query import run_query
from engine.questdb.conf import parse_questdb_url
from engine.questdb.export import export_days
from engine.questdb.ingest import ingest_questdb
from engine.questdb.protocols import quiet_reconnect_warning
from engine.questdb.qwp_read import QwpExportClient
from engine.questdb.read import ExportClient, check_symbol, day_query, to_mbo_batch
from tests.support.dbn_bytes import write_midnight_file
from tests.support.faultproxy import FaultProxy, drop_request, drop_response, status
from tests.support.qdb import options, server, wait_count

DATE = dt.date(2025, 10, 22)
NEXT = DATE + dt.timedelta(days=1)
SYMBOLS = ("NVDA", "AAPL", "BRN FMJ0024!", "BRK_B")
N = 40_000
SMALL = ParquetOptions(stripe_rows=16_384, row_group_rows=2_048, max_row_group_rows=4_096)
TRANSPORTS = ("exp", "qwp")


@pytest.fixture(scope="module")
def day(make_day) -> Path:
    return make_day(records=N, symbols=SYMBOLS, date=DATE.isoformat(), seed=11)


@pytest.fixture(scope="module")
def lake(day: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lake written directly from the DBN day (day files and per-symbol files)."""
    out = tmp_path_factory.mktemp("lake")
    s = ingest_parquet([day], out, jobs=1, by_symbol=True, options=SMALL)
    assert s.rows == N and not s.failed
    return out


@pytest.fixture(scope="module")
def table(questdb_url: str, questdb_module_tables: Callable[[str], str], day: Path) -> str:
    """The day loaded by the QuestDB sink (protocol auto), confirmed by count()."""
    names = questdb_module_tables("t_export"), questdb_module_tables("t_export_log")
    loaded = ingest_questdb([day], options=options(questdb_url, names, "auto"))
    assert loaded.ok and loaded.rows == N, loaded.failed
    return names[0]


@pytest.fixture
def proxy(questdb_url: str) -> Iterator[FaultProxy]:
    """A proxy to the server; faults hit /exp and QWP query connections only (/exec is counted)."""
    a = parse_questdb_url(questdb_url)
    with FaultProxy((a.host, a.port), match="/exp") as p:
        yield p


def client(url: str, transport: str, retries: int = 3) -> ExportClient:
    cls = QwpExportClient if transport == "qwp" else ExportClient
    return cls(url, timeout=60, retries=retries, backoff=0.01)


def requests_to(p: FaultProxy, endpoint: str) -> list[dict[str, str]]:
    """Query parameters of the proxy's requests to ``/endpoint``."""
    out = []
    for r in p.requests:
        url = urllib.parse.urlsplit(r.split(" ", 1)[1])
        if url.path == f"/{endpoint}":
            out.append(dict(urllib.parse.parse_qsl(url.query)))
    return out


def canonical(path: Path) -> pl.DataFrame:
    """A lake file's rows by symbol, each symbol's rows in the file's order, symbols as text."""
    df = pl.read_parquet(path).with_columns(pl.col("symbol", "action", "side").cast(pl.String))
    return df.sort("symbol", maintain_order=True)


def assert_same_lake_file(exported: Path, ingested: Path) -> None:
    assert pq.read_schema(exported).remove_metadata().equals(MBO_SCHEMA)
    a, b = canonical(exported), canonical(ingested)
    assert a.height == b.height > 0
    assert a.equals(b), "rows, values or a symbol's feed order differ"
    info = read_lake_info(exported)
    assert info.complete and info.rows == a.height


def assert_clustered(path: Path, options: ParquetOptions = SMALL) -> None:
    """Rows sorted by symbol, each symbol's in feed order; a row group mixes symbols only when small."""
    df = pl.read_parquet(path).with_columns(pl.col("symbol").cast(pl.String))
    assert df.equals(df.sort("symbol", "ts_recv", maintain_order=True))
    md = pq.read_metadata(path)
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        st = rg.column(COLUMNS.index("symbol")).statistics
        assert rg.num_rows <= options.max_row_group_rows
        assert st.min == st.max or rg.num_rows <= options.row_group_rows + options.max_row_group_rows


def no_temps(d: Path) -> bool:
    return not [p for p in d.iterdir() if p.name.startswith(".mbo_")]


@pytest.mark.questdb
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_export_day_equals_the_ingested_lake(
    questdb_url: str, table: str, lake: Path, tmp_path: Path, transport: str
) -> None:
    out = tmp_path / "exported"
    days = [DATE - dt.timedelta(days=1), DATE, NEXT]
    s = export_days(days, out, table=table, client=client(questdb_url, transport), options=SMALL)
    assert s.rows == N and [d.day for d in s.written] == [DATE] and [d.day for d in s.empty] == [days[0], NEXT]
    assert_same_lake_file(out / lake_file_name(DATE), lake / lake_file_name(DATE))
    assert_clustered(out / lake_file_name(DATE))
    assert no_temps(out)
    md = pq.read_metadata(out / lake_file_name(DATE)).metadata
    assert md[b"datapair.day"] == b"2025-10-22" and b"datapair.symbol" not in md
    again = export_days([DATE], out, table=table, client=client(questdb_url, transport), options=SMALL)
    assert len(again.skipped) == 1  # complete and equal to count(): not read again
    # The query layer sees the same thing in both lakes.
    a = run_query(out, interval="1m", tz="America/New_York", limit=0)
    b = run_query(lake, interval="1m", tz="America/New_York", limit=0)
    assert a.height > 0 and a.equals(b)


@pytest.mark.questdb
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_export_keeps_feed_order_where_ts_event_goes_back(
    questdb_url: str, questdb_tables: Callable[[str], str], tmp_path: Path, transport: str
) -> None:
    """A day with a snapshot stamped days earlier in mid-day exports in the file's order, as ingested."""
    path = write_midnight_file(tmp_path, ("NVDA", "AAPL"), n=3_000, snapshot_at=1_000)
    lake = tmp_path / "lake"
    assert ingest_parquet([path], lake, jobs=1, options=SMALL).ok
    names = questdb_tables("t_midnight"), questdb_tables("t_midnight_log")
    assert ingest_questdb([path], options=options(questdb_url, names, "auto")).ok
    out = tmp_path / "exported"
    s = export_days([DATE, NEXT], out, table=names[0], client=client(questdb_url, transport), options=SMALL)
    assert [d.day for d in s.written] == [DATE, NEXT]
    for day in (DATE, NEXT):
        assert_same_lake_file(out / lake_file_name(day), lake / lake_file_name(day))
    nvda = canonical(out / lake_file_name(NEXT)).filter(pl.col("symbol") == "NVDA")["ts_event"].to_numpy()
    assert (np.diff(nvda.astype(np.int64)) < 0).any()  # the snapshot: ts_event goes back


@pytest.mark.questdb
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_export_one_symbol(
    proxy: FaultProxy, table: str, lake: Path, tmp_path: Path, symbol: str, transport: str
) -> None:
    out = tmp_path / "exported"
    s = export_days([DATE], out, symbol=symbol, table=table, client=client(proxy.url, transport), options=SMALL)
    name = lake_file_name(DATE, symbol)
    assert [d.path.name for d in s.written] == [name]
    assert_same_lake_file(out / name, lake / name)
    assert pq.read_metadata(out / name).metadata[b"datapair.symbol"] == symbol.encode()
    if transport == "exp":
        assert f"symbol = '{symbol}'" in requests_to(proxy, "exp")[-1]["query"]
    else:  # the symbol is a bind parameter: no /exp, and no SQL text in any URL
        assert requests_to(proxy, "exp") == [] and any(r.startswith("GET /read/v1") for r in proxy.requests)


def _add_rows(url: str, table: str, n: int, day: dt.date = DATE) -> None:
    """``n`` more NVDA rows on ``day`` (fresh dedup keys), visible once this returns."""
    http = server(url)
    before = int(http.exec(f"SELECT count() FROM {table}").dataset[0][0])
    t0 = (day - dt.date(1970, 1, 1)).days * 86_400 * 10**9 + 12 * 3_600 * 10**9
    with quiet_reconnect_warning(), questdb.Sender.from_conf(parse_questdb_url(url).ilp_http_conf()) as sender:
        for i in range(n):
            sender.row(
                table, symbols={"symbol": "NVDA", "action": "A", "side": "B"},
                columns={"instrument_id": 999_999, "publisher_id": 2, "order_id": i, "price_raw": 10**11, "price": 100.0,
                         "size": 1, "flags": 0, "channel_id": 0, "ts_recv": questdb.TimestampNanos(t0 + i),
                         "ts_in_delta": 0, "sequence": i, "day_seq": 10**9 + i},
                at=questdb.TimestampNanos(t0 + i),
            )  # fmt: skip
    assert wait_count(http, table, before + n) == before + n


@pytest.fixture
def small_table(questdb_url: str, questdb_tables: Callable[[str], str], make_day) -> tuple[str, int]:
    """A table of its own (a small day) for tests that change it."""
    names = questdb_tables("t_exps"), questdb_tables("t_exps_log")
    loaded = ingest_questdb([make_day(records=5_000, date=DATE.isoformat())], options=options(questdb_url, names, "auto"))
    assert loaded.ok, loaded.failed
    return names[0], loaded.rows


@pytest.mark.questdb
def test_skip_then_force_then_reexport_when_the_count_changes(
    questdb_url: str, proxy: FaultProxy, small_table: tuple[str, int], tmp_path: Path
) -> None:
    t, rows = small_table
    out = tmp_path / "exported"
    c = client(proxy.url, "exp")
    export_days([DATE], out, table=t, client=c, options=SMALL)
    assert len(requests_to(proxy, "exp")) == 1
    s = export_days([DATE], out, table=t, client=c, options=SMALL)
    assert len(s.skipped) == 1 and s.rows == 0
    assert len(requests_to(proxy, "exp")) == 1  # counted, not downloaded
    s = export_days([DATE], out, table=t, client=c, force=True, options=SMALL)
    assert len(s.written) == 1 and len(requests_to(proxy, "exp")) == 2
    _add_rows(questdb_url, t, 10)
    s = export_days([DATE], out, table=t, client=c, options=SMALL)
    assert len(s.written) == 1 and s.rows == rows + 10
    assert read_lake_info(out / "mbo_2025-10-22.parquet").rows == s.rows


@pytest.mark.questdb
def test_day_range_end_exclusive_and_empty_days(
    proxy: FaultProxy, table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    argv = ["--start", "2025-10-21", "--end", "2025-10-23", "--output", str(out), "--url", proxy.url,
            "--table", table, "--quiet"]  # fmt: skip
    assert main(argv) == 0
    counted = [p["query"] for p in requests_to(proxy, "exec")]
    assert len(counted) == 2 and "2025-10-21T" in counted[0] and "2025-10-22T" in counted[1]
    assert "2025-10-23T00:00:00.000000000Z' AND ts_event" in counted[1]
    assert sorted(p.name for p in out.glob("mbo_*.parquet")) == ["mbo_2025-10-22.parquet"]
    err = capsys.readouterr().err
    assert re.search(r"export: 1 file, 40,000 rows in [0-9.]+ s \(.* rows/s\), 0 skipped, 0 failed", err), err


FAULTS = {
    "500": status(500, '{"error":"internal"}'),
    "reset": drop_request(),
    "truncate": drop_response(after=20_000),
    "garbage": status(200, b"<html>proxy error</html>" * 100),
}


@pytest.mark.questdb
@pytest.mark.parametrize("fault", list(FAULTS))
def test_transient_failures_are_retried(proxy: FaultProxy, table: str, lake: Path, tmp_path: Path, fault: str) -> None:
    out = tmp_path / "exported"
    proxy.faults.extend([FAULTS[fault]] * 2)
    s = export_days([DATE], out, table=table, client=client(proxy.url, "exp"), options=SMALL)
    assert s.rows == N
    assert len(requests_to(proxy, "exp")) == 3 and not proxy.faults
    assert_same_lake_file(out / "mbo_2025-10-22.parquet", lake / "mbo_2025-10-22.parquet")
    assert no_temps(out)


@pytest.mark.questdb
@pytest.mark.parametrize("after", [0, 200_000])
def test_qwp_stream_broken_mid_day_is_started_again(
    questdb_url: str, table: str, lake: Path, tmp_path: Path, after: int
) -> None:
    a = parse_questdb_url(questdb_url)
    with FaultProxy((a.host, a.port), match="/read/v1", faults=[drop_response(after=after)]) as p:
        out = tmp_path / "exported"
        s = export_days([DATE], out, table=table, client=client(p.url, "qwp"), options=SMALL)
        assert s.rows == N and p.applied and not p.faults
    assert_same_lake_file(out / "mbo_2025-10-22.parquet", lake / "mbo_2025-10-22.parquet")
    assert no_temps(out)


@pytest.mark.questdb
@pytest.mark.parametrize("fault", ["500", "truncate"])
def test_persistent_failure_leaves_nothing(questdb_url: str, table: str, tmp_path: Path, fault: str) -> None:
    a = parse_questdb_url(questdb_url)
    out = tmp_path / "exported"
    with FaultProxy((a.host, a.port), match="/exp", default=FAULTS[fault]) as p:
        with pytest.raises(StoreUnavailableError, match=r"after 3 attempts|HTTP 500"):
            export_days([DATE], out, table=table, client=client(p.url, "exp", retries=2), options=SMALL)
        assert len(requests_to(p, "exp")) == 3
    assert list(out.iterdir()) in ([], [out / ".datapair.lock"])


class _Changing(ExportClient):
    """Adds rows to the day between its count() and its export: the table changes under the export."""

    def __init__(self, url: str, table: str) -> None:
        super().__init__(url, timeout=60, retries=0)
        self.server_url, self.table = url, table

    def read_day(self, q, scratch, progress=None):  # type: ignore[no-untyped-def]
        _add_rows(self.server_url, self.table, 3)
        return super().read_day(q, scratch, progress)


@pytest.mark.questdb
def test_count_mismatch_fails_and_keeps_the_old_file(
    questdb_url: str, small_table: tuple[str, int], tmp_path: Path
) -> None:
    t, rows = small_table
    out = tmp_path / "exported"
    export_days([DATE], out, table=t, client=client(questdb_url, "exp"), options=SMALL)
    before = (out / "mbo_2025-10-22.parquet").read_bytes()
    with pytest.raises(SinkError, match=rf"count\(\) for 2025-10-22 is {rows:,} rows but its export gave {rows + 3:,}"):
        export_days([DATE], out, table=t, client=_Changing(questdb_url, t), force=True, options=SMALL)
    assert (out / "mbo_2025-10-22.parquet").read_bytes() == before
    assert no_temps(out)


@pytest.mark.questdb
def test_server_errors_are_clear(questdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--date", "2025-10-22", "--output", str(tmp_path), "--url", questdb_url, "--table", "nope", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "HTTP 400" in err and "table does not exist [table=nope]" in err and "Traceback" not in err


def test_unreachable_server_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["--date", "2025-10-22", "--output", str(tmp_path), "--url", f"http://127.0.0.1:{port}", "--retries", "1",
            "--quiet"]  # fmt: skip
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1 and "did not answer /exec after 2 attempts" in err and "Traceback" not in err


@pytest.mark.parametrize("symbol", ["", "x" * 71, "NV\nDA", " NVDA", "\x00"])
def test_bad_symbols_never_reach_sql(tmp_path: Path, symbol: str) -> None:
    with FaultProxy(None, default=status(500)) as p:  # anything sent would show here
        with pytest.raises(QueryError, match="`symbol` must be 1 to 70 printable characters"):
            export_days([DATE], tmp_path, symbol=symbol, client=ExportClient(p.url))
        assert p.requests == []


def test_quotes_in_a_symbol_are_sql_string_escapes() -> None:
    q = day_query("mbo_ticks", DATE, "NVDA'; DROP TABLE mbo_ticks; --")
    assert q.where.endswith("AND symbol = 'NVDA''; DROP TABLE mbo_ticks; --'")


def test_sql_is_built_from_validated_parts() -> None:
    q = day_query("mbo_ticks", DATE, "BRN FMJ0024!")
    assert q.where == (
        "ts_recv >= '2025-10-22T00:00:00.000000000Z' AND ts_recv < '2025-10-23T00:00:00.000000000Z' "
        "AND ts_event < '2025-10-24T00:00:00.000000000Z' AND symbol = 'BRN FMJ0024!'"
    )
    cols = ", ".join(f"cast({c} AS LONG) AS {c}" if c in ("ts_event", "ts_recv") else c for c in COLUMNS)
    assert q.select_sql.startswith(f"SELECT {cols} FROM mbo_ticks WHERE ")
    assert q.count_sql == f"SELECT count() AS n FROM mbo_ticks WHERE {q.where}"
    sql, binds = q.statement()  # the QWP query: bounds and symbol as bind parameters
    assert "BRN" not in sql and sql.endswith(
        "AND symbol = $4 ORDER BY symbol, ts_recv, instrument_id, publisher_id, day_seq"
    )
    assert binds[3] == "BRN FMJ0024!" and [b.value for b in binds[:3]] == [  # type: ignore[attr-defined]
        1761091200 * 10**9, 1761177600 * 10**9, 1761264000 * 10**9,
    ]
    assert check_symbol("ES.c.0") == "ES.c.0"
    for bad in ("mbo ticks", "t;drop", "1t", ""):
        with pytest.raises(ConfigError):
            day_query(bad, DATE)
    with pytest.raises(QueryError):
        day_query("mbo_ticks", "2025-10-22")  # type: ignore[arg-type]


def test_to_mbo_batch_restores_questdb_nulls_and_types() -> None:
    b = pa.record_batch(
        {
            "extra": pa.array([1, 2]),
            "ts_event": pa.array([1, 2], pa.int64()).cast(pa.timestamp("us")),
            "symbol": pa.array(["A", "B"]).dictionary_encode(),
            "instrument_id": pa.array([None, 7], pa.int32()),  # u32 2**31 is INT's NULL
            "publisher_id": pa.array([2, 2], pa.int16()),
            "order_id": pa.array([None, 5], pa.int64()),  # u64 2**63 is LONG's NULL
            "price_raw": pa.array([2**63 - 1, 10], pa.int64()),
            "price": pa.array([None, 1e-8]),
            "size": pa.array([0, 4294967295 - 2**32], pa.int32()),
            "flags": pa.array([200, 8], pa.int32()),
            "channel_id": pa.array([0, 1], pa.int16()),
            "action": pa.array(["R", "T"]),
            "side": pa.array(["N", "B"]),
            "ts_recv": pa.array([3, 4], pa.int64()).cast(pa.timestamp("ns")),
            "ts_in_delta": pa.array([-5, None], pa.int32()),
            "sequence": pa.array([4294967295, 1], pa.int64()),
        }
    )
    out = to_mbo_batch(b)
    assert out.schema.equals(MBO_SCHEMA)
    assert out["ts_event"].cast(pa.int64()).to_pylist() == [1000, 2000]
    assert out["instrument_id"].to_numpy().view(np.uint32).tolist() == [2**31, 7]
    assert out["order_id"].to_numpy().view(np.uint64).tolist() == [2**63, 5]
    assert np.isnan(out["price"].to_numpy()[0])
    assert out["flags"].to_pylist() == [200, 8]
    assert out["size"].to_numpy().view(np.uint32).tolist() == [0, 4294967295]
    assert out["ts_in_delta"].to_pylist() == [-5, -(2**31)]
    assert out["action"].to_pylist() == ["R", "T"] and out["side"].to_pylist() == ["N", "B"]
    with pytest.raises(SinkError, match="unknown action values \\['X'\\]"):
        to_mbo_batch(b.set_column(11, "action", pa.array(["X", "T"])))
    with pytest.raises(SinkError, match="no column 'sequence'"):
        to_mbo_batch(b.drop_columns(["sequence"]))


def test_cli_usage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "exclusive" in capsys.readouterr().out
    for argv in (
        ["--output", str(tmp_path)],
        ["--start", "2025-10-22", "--output", str(tmp_path)],
        ["--start", "2025-10-22", "--end", "2025-10-22", "--output", str(tmp_path)],
        ["--date", "2025-10-22", "--end", "2025-10-23", "--output", str(tmp_path)],
        ["--date", "22/10/2025", "--output", str(tmp_path)],
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv


@pytest.mark.questdb
def test_questdb_url_forms_and_credentials(proxy: FaultProxy, table: str, tmp_path: Path) -> None:
    conf = f"http::addr=127.0.0.1:{proxy.port};username=admin;password=quest;"
    s = export_days([DATE], tmp_path, table=table, client=ExportClient(conf, timeout=60, retries=0), options=SMALL)
    assert s.rows == N
    basic = "Basic " + base64.b64encode(b"admin:quest").decode()
    assert [h.get("authorization") for h in proxy.headers] == [basic, basic]  # count() and the export
    ExportClient(f"http://u%40x:p%3Bw@127.0.0.1:{proxy.port}", retries=0).count(day_query(table, DATE).count_sql)
    assert proxy.headers[-1]["authorization"] == "Basic " + base64.b64encode(b"u@x:p;w").decode()
    assert ExportClient(f"127.0.0.1:{proxy.port}").url == proxy.url
    with pytest.raises(ConfigError, match="bad QuestDB URL"):
        ExportClient("ftp://127.0.0.1:9000")
