"""Issue 5: exporting QuestDB days into the lake.

Everything up to the wire runs against a fake QuestDB (a local HTTP server answering ``/exec``
and ``/exp?fmt=parquet`` from a generated day, shaped as QuestDB exports it: plain strings for
SYMBOL columns, INT for flags, NULL for NaN prices, an extra helper column, columns in another
order), including its failures. The ``questdb`` test runs the same export against a real server.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine.dbn.columns import COLUMNS, MBO_SCHEMA
from engine.errors import ConfigError, QueryError, SinkError, StoreUnavailableError
from engine.export import main
from engine.lake.encode import ParquetOptions
from engine.lake.ingest import ingest_parquet
from engine.lake.layout import lake_file_name, read_lake_info
from engine.lake.query import run_query
from engine.questdb.export import export_days
from engine.questdb.read import ExportClient, check_symbol, day_query, to_mbo_batch

DATE = dt.date(2025, 10, 22)
NEXT = DATE + dt.timedelta(days=1)
SYMBOLS = ("NVDA", "AAPL", "BRN FMJ0024!", "BRK_B")
N = 40_000
SMALL = ParquetOptions(stripe_rows=16_384, row_group_rows=2_048, max_row_group_rows=4_096)
_WHERE = re.compile(
    r"^SELECT (?P<what>count\(\) AS n|(?:(?:cast\(\w+ AS LONG\) AS )?\w+(?:, )?)+) FROM (?P<table>\w+) WHERE "
    r"ts_recv >= '(?P<lo>[0-9T:.\-]+)Z' AND ts_recv < '(?P<hi>[0-9T:.\-]+)Z' AND ts_event < '(?P<ev>[0-9T:.\-]+)Z'"
    r"(?: AND symbol = '(?P<symbol>(?:[^']|'')*)')?(?P<order> ORDER BY symbol, ts_event, ts_recv, sequence)?$"
)


def questdb_shape(lake_table: pa.Table) -> pa.Table:
    """A lake table as QuestDB would export ``mbo_ticks``: what our reader must undo."""
    t = lake_table
    price = t["price"].combine_chunks()
    cols = {
        "dedup_key": pa.array(np.arange(t.num_rows, dtype=np.int64)),  # an unknown helper column
        "ts_event": t["ts_event"].cast(pa.timestamp("ns")),
        "symbol": t["symbol"].cast(pa.string()),
        "order_id": t["order_id"],
        "instrument_id": t["instrument_id"],
        "publisher_id": t["publisher_id"],
        "price_raw": t["price_raw"],
        "price": pc.if_else(pc.is_nan(price), pa.scalar(None, pa.float64()), price),
        "size": t["size"],
        "flags": t["flags"].cast(pa.int32()),
        "channel_id": t["channel_id"],
        "action": t["action"].cast(pa.string()),
        "side": t["side"].cast(pa.string()),
        "ts_recv": t["ts_recv"].cast(pa.timestamp("ns")),
        "ts_in_delta": t["ts_in_delta"],
        "sequence": t["sequence"],
    }
    return pa.table(cols)


class FakeQuestDB:
    """A local HTTP server playing QuestDB's ``/exec`` and ``/exp`` for the queries the export sends.

    ``faults`` is a list of what to do to the next ``/exp`` requests: ``"500"``, ``"reset"``
    (close without answering), ``"truncate"`` (half the body), ``"garbage"`` (200 with a non-Parquet
    body), ``"short"`` (drop the last rows: a count mismatch).
    """

    def __init__(self, tables: dict[str, pa.Table]) -> None:
        self.tables = tables
        self.faults: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.auth: list[str | None] = []  # the Authorization header of each request
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(url.query))
                fake.requests.append((url.path, params))
                fake.auth.append(self.headers.get("Authorization"))
                fake.handle(self, url.path, params)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def send(
        h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str, length: int | None = None
    ) -> None:
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        h.wfile.write(body)

    def error(self, h: BaseHTTPRequestHandler, sql: str, message: str, position: int = 0) -> None:
        body = json.dumps({"query": sql, "error": message, "position": position}).encode()
        self.send(h, 400, body, "application/json")

    def select(self, sql: str) -> tuple[re.Match[str] | None, pa.Table | None]:
        m = _WHERE.match(sql)
        if m is None or m["table"] not in self.tables:
            return m, None
        t = self.tables[m["table"]]
        lo = pa.scalar(pd.Timestamp(m["lo"]).value, pa.int64()).cast(pa.timestamp("ns"))
        hi = pa.scalar(pd.Timestamp(m["hi"]).value, pa.int64()).cast(pa.timestamp("ns"))
        ev = pa.scalar(pd.Timestamp(m["ev"]).value, pa.int64()).cast(pa.timestamp("ns"))
        mask = pc.and_(
            pc.and_(pc.greater_equal(t["ts_recv"], lo), pc.less(t["ts_recv"], hi)), pc.less(t["ts_event"], ev)
        )
        if m["symbol"] is not None:
            mask = pc.and_(mask, pc.equal(t["symbol"], m["symbol"].replace("''", "'")))
        return m, t.filter(mask)

    def handle(self, h: BaseHTTPRequestHandler, path: str, params: dict[str, str]) -> None:
        sql = params.get("query", "")
        if path == "/exec":
            m, rows = self.select(sql)
            if m is None:
                return self.error(h, sql, "unexpected token", 7)
            if rows is None:
                return self.error(h, sql, f"table does not exist [table={m['table']}]", sql.index(m["table"]))
            doc = {
                "query": sql,
                "columns": [{"name": "n", "type": "LONG"}],
                "timestamp": -1,
                "dataset": [[rows.num_rows]],
                "count": 1,
            }
            return self.send(h, 200, json.dumps(doc).encode(), "application/json")
        if path != "/exp":
            return self.send(h, 404, b"Not Found", "text/plain")
        fault = self.faults.pop(0) if self.faults else None
        if fault == "500":
            return self.send(h, 500, b'{"error":"internal"}', "application/json")
        if fault == "reset":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return None
        if fault == "garbage":
            return self.send(h, 200, b"<html>proxy error</html>" * 100, "text/html")
        m, rows = self.select(sql)
        if m is None:
            return self.error(h, sql, "unexpected token", 7)
        if rows is None:
            return self.error(h, sql, f"table does not exist [table={m['table']}]", sql.index(m["table"]))
        assert params.get("fmt") == "parquet" and m["order"], "the export asks for sorted Parquet"
        items = [c.strip() for c in m["what"].split(",")]
        casts = {}
        for item in items:
            if cm := re.fullmatch(r"cast\((\w+) AS LONG\) AS (\w+)", item):
                assert cm[1] == cm[2] and pa.types.is_timestamp(rows[cm[1]].type), item
                casts[cm[1]] = True
        cols = [re.sub(r"^cast\((\w+) AS LONG\) AS \w+$", r"\1", c) for c in items]
        if m["order"]:
            idx = pc.sort_indices(
                rows, sort_keys=[(k, "ascending") for k in ("symbol", "ts_event", "ts_recv", "sequence")]
            )
            rows = rows.take(idx)
        rows = rows.select(cols)
        for c in casts:  # cast(TIMESTAMP_NS AS LONG): the epoch nanoseconds
            rows = rows.set_column(rows.schema.get_field_index(c), c, rows[c].cast(pa.int64()))
        if fault == "short":
            rows = rows.slice(0, max(rows.num_rows - 3, 0))
        buf = io.BytesIO()
        pq.write_table(
            rows, buf, row_group_size=int(params.get("row_group_size", 100_000)), compression="lz4"
        )
        body = buf.getvalue()
        if fault == "truncate":
            self.send(h, 200, body[: len(body) // 2], "application/octet-stream", length=len(body))
            h.close_connection = True
            return None
        return self.send(h, 200, body, "application/octet-stream")

    def exp_requests(self) -> list[dict[str, str]]:
        return [p for path, p in self.requests if path == "/exp"]


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


@pytest.fixture
def fake(lake: Path) -> Iterator[FakeQuestDB]:
    table = pq.read_table(lake / lake_file_name(DATE))
    server = FakeQuestDB({"mbo_ticks": questdb_shape(table)})
    yield server
    server.close()


def client(fake: FakeQuestDB, retries: int = 3) -> ExportClient:
    return ExportClient(fake.url, timeout=10, retries=retries, backoff=0.01)


def canonical(path: Path) -> pl.DataFrame:
    """A lake file's rows in a fixed order, symbols as text."""
    df = pl.read_parquet(path).with_columns(pl.col("symbol", "action", "side").cast(pl.String))
    return df.sort("symbol", "ts_event", "ts_recv", "sequence", "order_id")


def assert_same_lake_file(exported: Path, ingested: Path) -> None:
    assert pq.read_schema(exported).remove_metadata().equals(MBO_SCHEMA)
    a, b = canonical(exported), canonical(ingested)
    assert a.height == b.height > 0
    assert a.equals(b), "rows and values differ"
    info = read_lake_info(exported)
    assert info.complete and info.rows == a.height


def assert_clustered(path: Path, options: ParquetOptions = SMALL) -> None:
    """Rows sorted by (symbol, ts_event); a row group mixes symbols only when small."""
    df = pl.read_parquet(path).with_columns(pl.col("symbol").cast(pl.String))
    assert df.equals(df.sort("symbol", "ts_event", maintain_order=True))
    md = pq.read_metadata(path)
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        st = rg.column(COLUMNS.index("symbol")).statistics
        assert rg.num_rows <= options.max_row_group_rows
        assert st.min == st.max or rg.num_rows <= options.row_group_rows + options.max_row_group_rows


def no_temps(d: Path) -> bool:
    return not [p for p in d.iterdir() if p.name.startswith(".mbo_")]


def test_export_day_equals_the_ingested_lake(fake: FakeQuestDB, lake: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    s = export_days([DATE], out, client=client(fake), options=SMALL)
    assert s.rows == N and len(s.written) == 1
    assert_same_lake_file(out / "mbo_2025-10-22.parquet", lake / "mbo_2025-10-22.parquet")
    assert_clustered(out / "mbo_2025-10-22.parquet")
    assert no_temps(out)
    md = pq.read_metadata(out / "mbo_2025-10-22.parquet").metadata
    assert md[b"datapair.day"] == b"2025-10-22" and b"datapair.symbol" not in md
    # The query layer sees the same thing in both lakes.
    a = run_query(out, interval="1m", tz="America/New_York", limit=0)
    b = run_query(lake, interval="1m", tz="America/New_York", limit=0)
    assert a.height > 0 and a.equals(b)


@pytest.mark.parametrize("symbol", ["NVDA", "BRN FMJ0024!", "BRK_B"])
def test_export_one_symbol(fake: FakeQuestDB, lake: Path, tmp_path: Path, symbol: str) -> None:
    out = tmp_path / "exported"
    s = export_days([DATE], out, symbol=symbol, client=client(fake), options=SMALL)
    name = lake_file_name(DATE, symbol)
    assert [d.path.name for d in s.written] == [name]
    assert_same_lake_file(out / name, lake / name)
    assert pq.read_metadata(out / name).metadata[b"datapair.symbol"] == symbol.encode()
    sql = fake.exp_requests()[-1]["query"]
    assert f"symbol = '{symbol}'" in sql


def test_skip_then_force_then_reexport_when_the_count_changes(fake: FakeQuestDB, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    c = client(fake)
    export_days([DATE], out, client=c, options=SMALL)
    assert len(fake.exp_requests()) == 1
    s = export_days([DATE], out, client=c, options=SMALL)
    assert len(s.skipped) == 1 and s.rows == 0
    assert len(fake.exp_requests()) == 1  # counted, not downloaded
    s = export_days([DATE], out, client=c, force=True, options=SMALL)
    assert len(s.written) == 1 and len(fake.exp_requests()) == 2
    t = fake.tables["mbo_ticks"]
    fake.tables["mbo_ticks"] = t.slice(0, t.num_rows - 10)
    s = export_days([DATE], out, client=c, options=SMALL)
    assert len(s.written) == 1 and s.rows == N - 10
    assert read_lake_info(out / "mbo_2025-10-22.parquet").rows == s.rows


def test_day_range_end_exclusive_and_empty_days(
    fake: FakeQuestDB, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    rc = main(
        ["--start", "2025-10-21", "--end", "2025-10-23", "--output", str(out), "--url", fake.url, "--quiet"]
    )
    assert rc == 0
    counted = [p["query"] for path, p in fake.requests if path == "/exec"]
    assert len(counted) == 2 and "2025-10-21T" in counted[0] and "2025-10-22T" in counted[1]
    assert "2025-10-23T00:00:00.000000000Z' AND ts_event" in counted[1]
    assert sorted(p.name for p in out.glob("mbo_*.parquet")) == ["mbo_2025-10-22.parquet"]
    err = capsys.readouterr().err
    assert re.search(r"export: 1 file, 40,000 rows in [0-9.]+ s \(.* rows/s\), 0 skipped, 0 failed", err), err


@pytest.mark.parametrize("fault", ["500", "reset", "truncate", "garbage"])
def test_transient_failures_are_retried(fake: FakeQuestDB, lake: Path, tmp_path: Path, fault: str) -> None:
    out = tmp_path / "exported"
    fake.faults = [fault, fault]
    s = export_days([DATE], out, client=client(fake), options=SMALL)
    assert s.rows == N
    assert len(fake.exp_requests()) == 3
    assert_same_lake_file(out / "mbo_2025-10-22.parquet", lake / "mbo_2025-10-22.parquet")
    assert no_temps(out)


@pytest.mark.parametrize("fault", ["500", "truncate"])
def test_persistent_failure_leaves_nothing(fake: FakeQuestDB, tmp_path: Path, fault: str) -> None:
    out = tmp_path / "exported"
    fake.faults = [fault] * 10
    with pytest.raises(StoreUnavailableError, match=r"after 3 attempts|HTTP 500"):
        export_days([DATE], out, client=client(fake, retries=2), options=SMALL)
    assert len(fake.exp_requests()) == 3
    assert list(out.iterdir()) in ([], [out / ".datapair.lock"])


def test_count_mismatch_fails_and_keeps_the_old_file(fake: FakeQuestDB, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    export_days([DATE], out, client=client(fake), options=SMALL)
    before = (out / "mbo_2025-10-22.parquet").read_bytes()
    fake.faults = ["short"]
    with pytest.raises(SinkError, match=r"count\(\) for 2025-10-22 is .* but its export gave"):
        export_days([DATE], out, client=client(fake), force=True, options=SMALL)
    assert (out / "mbo_2025-10-22.parquet").read_bytes() == before
    assert no_temps(out)


def test_server_errors_are_clear(
    fake: FakeQuestDB, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["--date", "2025-10-22", "--output", str(tmp_path), "--url", fake.url, "--table", "nope", "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "HTTP 400" in err and "table does not exist [table=nope]" in err and "Traceback" not in err
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(
        [
            "--date",
            "2025-10-22",
            "--output",
            str(tmp_path),
            "--url",
            f"http://127.0.0.1:{port}",
            "--retries",
            "1",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "did not answer /exec after 2 attempts" in err and "Traceback" not in err


@pytest.mark.parametrize("symbol", ["", "x" * 71, "NV\nDA", " NVDA", "\x00"])
def test_bad_symbols_never_reach_sql(fake: FakeQuestDB, tmp_path: Path, symbol: str) -> None:
    with pytest.raises(QueryError, match="`symbol` must be 1 to 70 printable characters"):
        export_days([DATE], tmp_path, symbol=symbol, client=client(fake))
    assert fake.requests == []


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


def test_questdb_url_forms_and_credentials(fake: FakeQuestDB, lake: Path, tmp_path: Path) -> None:
    port = fake.url.rsplit(":", 1)[1]
    conf = f"http::addr=127.0.0.1:{port};username=admin;password=quest;"
    s = export_days([DATE], tmp_path, client=ExportClient(conf, timeout=10, retries=0), options=SMALL)
    assert s.rows == N
    basic = "Basic " + base64.b64encode(b"admin:quest").decode()
    assert fake.auth == [basic, basic]  # count() and the export
    ExportClient(f"http://u%40x:p%3Bw@127.0.0.1:{port}", retries=0).count(
        day_query("mbo_ticks", DATE).count_sql
    )
    assert fake.auth[-1] == "Basic " + base64.b64encode(b"u@x:p;w").decode()
    assert ExportClient(f"127.0.0.1:{port}").url == fake.url
    with pytest.raises(ConfigError, match="bad QuestDB URL"):
        ExportClient("ftp://127.0.0.1:9000")


# -- a real QuestDB ------------------------------------------------------------------------------


@pytest.mark.questdb
def test_dbn_to_questdb_to_lake_equals_direct_lake(
    questdb_url: str, questdb_tables, day: Path, lake: Path, tmp_path: Path
) -> None:
    """The DBN day loaded by the QuestDB sink (protocol auto) and exported equals the lake ingested from it."""
    from engine.questdb.conf import QuestDBOptions
    from engine.questdb.ingest import ingest_questdb

    table, log = questdb_tables("t_export"), questdb_tables("t_export_log")
    opts = QuestDBOptions.from_env(url=questdb_url, table=table, log_table=log, protocol="auto")
    loaded = ingest_questdb([day], options=opts)
    assert loaded.ok, loaded.failed
    assert loaded.rows == N  # confirmed by count() after the WAL apply
    out = tmp_path / "exported"
    days = [DATE - dt.timedelta(days=1), DATE, NEXT]
    s = export_days(days, out, url=questdb_url, table=table, options=SMALL)
    assert (
        s.rows == N and [d.day for d in s.written] == [DATE] and [d.day for d in s.empty] == [days[0], NEXT]
    )
    assert_same_lake_file(out / lake_file_name(DATE), lake / lake_file_name(DATE))
    assert_clustered(out / lake_file_name(DATE))
    assert no_temps(out)
    again = export_days([DATE], out, url=questdb_url, table=table, options=SMALL)
    assert len(again.skipped) == 1  # complete and equal to count(): not downloaded again
    for symbol in SYMBOLS:
        s = export_days([DATE], out, url=questdb_url, table=table, symbol=symbol, options=SMALL)
        name = lake_file_name(DATE, symbol)
        assert [d.path.name for d in s.written] == [name]
        assert_same_lake_file(out / name, lake / name)
    a = run_query(out, interval="1m", tz="America/New_York", limit=0)
    b = run_query(lake, interval="1m", tz="America/New_York", limit=0)
    assert a.height > 0 and a.equals(b)
