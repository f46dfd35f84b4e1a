"""DDL generation, the sql/ files, and the refusal of a table whose schema differs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.dbn.columns import COLUMNS
from engine.errors import ConfigError, SinkError
from engine.questdb.conf import parse_questdb_url
from engine.questdb.ddl import (
    DEDUP_KEYS,
    LOG_COLUMNS,
    MBO_COLUMNS,
    ensure_tables,
    log_table_ddl,
    mbo_table_ddl,
    schema_problems,
)
from engine.questdb.http import Backoff, QuestDBHttp
from tests.support.questdb_fake import FakeQuestDB, FakeTable
from tests.support.samples import ROOT

SQL = ROOT / "sql"


def _statement(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.startswith("--")).strip()


def test_sql_files_are_what_the_engine_runs() -> None:
    assert _statement(SQL / "mbo_ticks.sql") == mbo_table_ddl("mbo_ticks", "day")
    assert _statement(SQL / "mbo_ticks_hourly.sql") == mbo_table_ddl("mbo_ticks", "hour")
    assert _statement(SQL / "ingest_log.sql") == log_table_ddl("ingest_log")
    assert "day_seq" in (SQL / "README.md").read_text()


@pytest.mark.parametrize("partition", ["day", "hour"])
def test_mbo_ddl(partition: str) -> None:
    ddl = mbo_table_ddl("t1", partition)
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS t1 (")
    body = ddl[ddl.index("(") + 1 : ddl.index(") TIMESTAMP")]
    cols = [line.strip().rstrip(",").split()[:2] for line in body.strip().splitlines()]
    assert [c[0] for c in cols] == [*COLUMNS, "day_seq"]  # the canonical columns, in order, then day_seq
    types = dict(cols)
    assert types["ts_event"] == types["ts_recv"] == "TIMESTAMP_NS"
    assert types["sequence"] == types["price_raw"] == types["order_id"] == types["day_seq"] == "LONG"
    assert types["symbol"] == types["action"] == types["side"] == "SYMBOL"
    assert types["publisher_id"] == types["channel_id"] == "SHORT" and types["flags"] == "INT"
    assert f"TIMESTAMP(ts_event) PARTITION BY {partition.upper()} WAL" in ddl
    keys = re.search(r"DEDUP UPSERT KEYS\(([^)]*)\)", ddl)
    assert keys is not None
    assert [k.strip() for k in keys.group(1).split(",")] == list(DEDUP_KEYS)
    assert DEDUP_KEYS[0] == "ts_event" and set(DEDUP_KEYS) <= set(types)


def test_ddl_refuses_bad_names() -> None:
    with pytest.raises(ConfigError):
        mbo_table_ddl("t; DROP TABLE mbo_ticks")
    with pytest.raises(ValueError, match="partition"):
        mbo_table_ddl("t", "week")


def _cols(
    spec: tuple[tuple[str, str], ...], designated: str = "ts_event", keys: tuple[str, ...] = DEDUP_KEYS
) -> list[dict]:
    return [{"column": c, "type": t, "designated": c == designated, "upsertKey": c in keys} for c, t in spec]


def test_schema_problems_lists_every_difference() -> None:
    assert (
        schema_problems(
            _cols(MBO_COLUMNS), {"walEnabled": True, "dedup": True, "designatedTimestamp": "ts_event"}
        )
        == []
    )
    seed = tuple((c, {"ts_event": "TIMESTAMP", "ts_recv": "TIMESTAMP", "sequence": "INT"}.get(c, t))
                 for c, t in MBO_COLUMNS if c not in ("day_seq", "publisher_id"))  # fmt: skip
    problems = schema_problems([*_cols(seed, keys=("ts_event",)), {"column": "extra", "type": "INT"}], None)
    text = "\n".join(problems)
    assert "column ts_event is TIMESTAMP, expected TIMESTAMP_NS" in text
    assert "column ts_recv is TIMESTAMP, expected TIMESTAMP_NS" in text
    assert "column sequence is INT, expected LONG" in text
    assert "column day_seq is missing" in text and "column publisher_id is missing" in text
    assert "unexpected column(s) extra" in text
    assert "dedup upsert keys are (ts_event)" in text
    assert any("not a WAL table" in p for p in schema_problems(_cols(MBO_COLUMNS), {"walEnabled": False}))
    assert any(
        "designated timestamp is ts_recv" in p for p in schema_problems(_cols(MBO_COLUMNS, "ts_recv"), None)
    )


@pytest.fixture
def fake() -> Iterator[FakeQuestDB]:
    f = FakeQuestDB()
    yield f
    f.close()


def _http(fake: FakeQuestDB) -> QuestDBHttp:
    return QuestDBHttp(parse_questdb_url(fake.url), backoff=Backoff(timeout=1.0))


def test_ensure_tables_creates_then_accepts(fake: FakeQuestDB) -> None:
    state = ensure_tables(_http(fake), "mbo_x", "hour", "log_x")
    assert state.created and state.partition == "HOUR"
    t = fake.tables["mbo_x"]
    assert t.columns == list(MBO_COLUMNS) and t.keys == list(DEDUP_KEYS) and t.designated == "ts_event"
    assert fake.tables["log_x"].columns == list(LOG_COLUMNS)
    again = ensure_tables(_http(fake), "mbo_x", "day", "log_x")  # exists: kept as it is
    assert not again.created and again.partition == "HOUR"
    assert sum(s.startswith("CREATE TABLE") for s in fake.exec_log) == 2


def test_mismatching_table_is_refused_with_a_clear_message(fake: FakeQuestDB) -> None:
    wrong = [(c, "INT" if c == "sequence" else t) for c, t in MBO_COLUMNS if c != "day_seq"]
    fake.tables["mbo_ticks"] = FakeTable("mbo_ticks", wrong, "ts_event", "DAY", ["ts_event"])
    with pytest.raises(SinkError) as info:
        ensure_tables(_http(fake), "mbo_ticks", "day", "ingest_log")
    msg = str(info.value)
    assert "'mbo_ticks' exists with a different schema" in msg
    assert "column sequence is INT, expected LONG" in msg and "column day_seq is missing" in msg
    assert "dedup upsert keys" in msg and "sql/mbo_ticks.sql" in msg
    assert not any(s.startswith("CREATE TABLE IF NOT EXISTS mbo_ticks") for s in fake.exec_log)
