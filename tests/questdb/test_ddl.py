"""DDL generation, the sql/ files, and (on the real server) creation, refusal and migration of tables."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.dbn.columns import COLUMNS
from engine.errors import ConfigError, SinkError
from engine.questdb.ddl import (
    DEDUP_KEYS,
    LEGACY_DEDUP_KEYS,
    LOG_COLUMNS,
    MBO_COLUMNS,
    ensure_tables,
    log_table_ddl,
    mbo_table_ddl,
    migration_hint,
    schema_problems,
)
from engine.questdb.ingest import ingest_questdb
from tests.support.qdb import (
    assert_no_duplicate_keys,
    assert_same_rows,
    count,
    expected_rows,
    options,
    read_rows,
    server,
    wait_count,
)
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


def _columns(http, table: str) -> list[dict]:
    return http.exec(f"SELECT * FROM table_columns('{table}')").records()


@pytest.mark.questdb
def test_ensure_tables_creates_then_accepts(questdb_url: str, questdb_tables: Callable[[str], str]) -> None:
    t, log = questdb_tables("t_ddl"), questdb_tables("t_ddllog")
    http = server(questdb_url)
    state = ensure_tables(http, t, "hour", log)
    assert state.created and state.partition == "HOUR"
    cols = _columns(http, t)
    assert [(c["column"], c["type"]) for c in cols] == list(MBO_COLUMNS)
    assert sorted(c["column"] for c in cols if c["upsertKey"]) == sorted(DEDUP_KEYS)
    assert [c["column"] for c in cols if c["designated"]] == ["ts_event"]
    assert [(c["column"], c["type"]) for c in _columns(http, log)] == list(LOG_COLUMNS)
    again = ensure_tables(http, t, "day", log)  # exists: kept as it is
    assert not again.created and again.partition == "HOUR"


@pytest.mark.questdb
def test_mismatching_table_is_refused_with_a_clear_message(
    questdb_url: str, questdb_tables: Callable[[str], str]
) -> None:
    t, log = questdb_tables("t_ddl"), questdb_tables("t_ddllog")
    http = server(questdb_url)
    wrong = ", ".join(f"{c} {'INT' if c == 'sequence' else typ}" for c, typ in MBO_COLUMNS if c != "day_seq")
    http.exec(f"CREATE TABLE {t} ({wrong}) TIMESTAMP(ts_event) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts_event)")
    with pytest.raises(SinkError) as info:
        ensure_tables(http, t, "day", log)
    msg = str(info.value)
    assert f"{t!r} exists with a different schema" in msg
    assert "column sequence is INT, expected LONG" in msg and "column day_seq is missing" in msg
    assert "dedup upsert keys are (ts_event)" in msg and "sql/mbo_ticks.sql" in msg
    assert [c["column"] for c in _columns(http, t)][-1] == "sequence"  # untouched


def _legacy_ddl(table: str) -> str:
    return mbo_table_ddl(table).replace(", ".join(DEDUP_KEYS), ", ".join(LEGACY_DEDUP_KEYS))


@pytest.mark.questdb
def test_table_with_symbol_keys_is_refused_then_migrated_exactly(
    questdb_url: str, questdb_tables: Callable[[str], str], make_day
) -> None:
    """A table an earlier version loaded (keys by symbol, day_seq per symbol) is refused with the
    statements that migrate it; run as printed, a reload of the same file then leaves one copy."""
    t, log = questdb_tables("t_old"), questdb_tables("t_oldlog")
    http = server(questdb_url)
    path = make_day(records=20_000)
    http.exec(_legacy_ddl(t))
    old = expected_rows(path)
    old["day_seq"] = old.groupby([old["symbol"], old["ts_recv"] // 86_400_000_000_000]).cumcount()
    _load_frame(questdb_url, t, old)
    assert wait_count(http, t, len(old)) == len(old)
    with pytest.raises(SinkError) as info:
        ingest_questdb([path], options=options(questdb_url, (t, log), "ilp-http"))
    msg = str(info.value)
    assert msg == f"QuestDB table {t!r} cannot be loaded as it is. " + migration_hint(t)
    check, alter = (line.strip() for line in msg.splitlines() if line.strip().startswith(("SELECT", "ALTER")))
    assert int(http.exec(check.rstrip(";")).dataset[0][0]) == 0
    http.exec(alter.rstrip(";"))
    again = ingest_questdb([path], options=options(questdb_url, (t, log), "ilp-http"))
    assert again.ok, again.failed
    assert count(http, t) == len(old)
    assert_no_duplicate_keys(http, t)
    assert_same_rows(read_rows(http, t), expected_rows(path))


def _load_frame(url: str, table: str, frame) -> None:
    """Rows of an expected_rows() frame into ``table`` over ILP/HTTP (the client's own dataframe path)."""
    import pandas as pd
    import questdb

    from engine.questdb.conf import parse_questdb_url
    from engine.questdb.protocols import quiet_reconnect_warning

    df = frame.copy()
    for c in ("ts_event", "ts_recv"):
        df[c] = pd.to_datetime(df[c], utc=True)
    for c in ("symbol", "action", "side"):
        df[c] = df[c].astype("category")
    df["publisher_id"] = df["publisher_id"].astype("int16")
    df["channel_id"] = df["channel_id"].astype("int16")
    with quiet_reconnect_warning(), questdb.Sender.from_conf(parse_questdb_url(url).ilp_http_conf()) as sender:
        sender.dataframe(df, table_name=table, symbols=["symbol", "action", "side"], at="ts_event")
