"""The ``mbo_ticks`` and ``ingest_log`` tables: DDL text, creation, and the schema check.

The column list is DESIGN.md section 3 plus ``day_seq`` (see ``sql/README.md``): the ordinal of a
record among the records of its instrument_id on its UTC day of ts_recv, in feed order. It makes
every record unique, including records that agree on every field, and is the same whenever the
same day is loaded again, with or without a symbol filter and whatever the file's symbology, so

    DEDUP UPSERT KEYS(ts_event, ts_recv, instrument_id, publisher_id, day_seq)

turns a re-ingest into an exact no-op. ``sql/*.sql`` hold the same text as
:func:`mbo_table_ddl` and :func:`log_table_ddl` generate (a test keeps them equal).

:func:`ensure_tables` creates missing tables and refuses, with a message naming every difference,
an existing table whose columns, designated timestamp, WAL mode or dedup keys do not match. A
table made by an earlier version (keys by ``symbol``, :data:`LEGACY_DEDUP_KEYS`) is refused with
the statements that migrate it (:func:`migration_hint`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from engine.errors import SinkError
from engine.questdb.conf import check_identifier
from engine.questdb.http import QuestDBHttp

__all__ = [
    "DEDUP_KEYS",
    "LEGACY_DEDUP_KEYS",
    "LOG_COLUMNS",
    "MBO_COLUMNS",
    "TableState",
    "ensure_tables",
    "log_table_ddl",
    "mbo_table_ddl",
    "migration_hint",
    "schema_problems",
]

MBO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts_event", "TIMESTAMP_NS"),
    ("symbol", "SYMBOL"),
    ("instrument_id", "INT"),
    ("publisher_id", "SHORT"),
    ("order_id", "LONG"),
    ("price_raw", "LONG"),
    ("price", "DOUBLE"),
    ("size", "INT"),
    ("flags", "INT"),
    ("channel_id", "SHORT"),
    ("action", "SYMBOL"),
    ("side", "SYMBOL"),
    ("ts_recv", "TIMESTAMP_NS"),
    ("ts_in_delta", "INT"),
    ("sequence", "LONG"),
    ("day_seq", "LONG"),
)
"""The table's columns and QuestDB types: DESIGN.md section 3, then ``day_seq``."""

DESIGNATED = "ts_event"
DEDUP_KEYS = ("ts_event", "ts_recv", "instrument_id", "publisher_id", "day_seq")
"""Upsert keys: with ``day_seq`` they identify one MBO record (see ``sql/README.md``)."""
LEGACY_DEDUP_KEYS = ("ts_event", "ts_recv", "symbol", "publisher_id", "day_seq")
"""The keys of tables made before day_seq counted per instrument (it counted per symbol)."""

_COLUMN_OPTIONS = {"symbol": " CAPACITY 16384"}  # full-venue days hold ~12k instruments

LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "TIMESTAMP"),
    ("table_name", "SYMBOL"),
    ("file_key", "SYMBOL"),
    ("filter_key", "SYMBOL"),
    ("symbol", "SYMBOL"),
    ("publisher_id", "INT"),
    ("row_count", "LONG"),
    ("ts_event_min", "LONG"),
    ("ts_event_max", "LONG"),
    ("ts_recv_min", "LONG"),
    ("ts_recv_max", "LONG"),
    ("file_name", "VARCHAR"),
    ("file_size", "LONG"),
    ("symbols_filter", "VARCHAR"),
    ("protocol", "SYMBOL"),
    ("load_seconds", "DOUBLE"),
)
"""The per-file completion record: one row per (symbol, publisher) plus a total row."""

_PARTITION_SQL = {"day": "DAY", "hour": "HOUR"}


def _columns_sql(cols: tuple[tuple[str, str], ...], options: dict[str, str]) -> str:
    return ",\n".join(f"    {name} {typ}{options.get(name, '')}" for name, typ in cols)


def mbo_table_ddl(table: str = "mbo_ticks", partition: str = "day") -> str:
    """``CREATE TABLE IF NOT EXISTS`` of the MBO table, partitioned by ``day`` or ``hour``."""
    check_identifier(table)
    if partition not in _PARTITION_SQL:
        msg = f"partition {partition!r}: expected day or hour"
        raise ValueError(msg)
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n{_columns_sql(MBO_COLUMNS, _COLUMN_OPTIONS)}\n"
        f") TIMESTAMP({DESIGNATED}) PARTITION BY {_PARTITION_SQL[partition]} WAL\n"
        f"DEDUP UPSERT KEYS({', '.join(DEDUP_KEYS)});"
    )


def log_table_ddl(table: str = "ingest_log") -> str:
    """``CREATE TABLE IF NOT EXISTS`` of the ingest log."""
    check_identifier(table, "log table name")
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n{_columns_sql(LOG_COLUMNS, {})}\n"
        ") TIMESTAMP(ts) PARTITION BY MONTH WAL;"
    )


def _type_key(t: str) -> str:
    key = re.sub(r"[^A-Z0-9]", "", str(t).upper())
    return {"TIMESTAMPNANOS": "TIMESTAMPNS", "TIMESTAMPNANO": "TIMESTAMPNS", "STRING": "VARCHAR"}.get(
        key, key
    )


def _truthy(v: Any) -> bool:
    return v is True or str(v).lower() in ("true", "t", "1", "yes")


def schema_problems(
    columns: list[dict[str, Any]],
    table_info: dict[str, Any] | None,
    expected: tuple[tuple[str, str], ...] = MBO_COLUMNS,
    designated: str = DESIGNATED,
    dedup_keys: tuple[str, ...] | None = DEDUP_KEYS,
) -> list[str]:
    """What differs between an existing table and the expected one (empty when it matches).

    Parameters
    ----------
    columns : list of dict
        Rows of ``table_columns('t')``: ``column``, ``type``, ``designated``, ``upsertKey``.
    table_info : dict, optional
        The table's row of ``tables()`` (``walEnabled``, ``designatedTimestamp``, ``dedup``).
    """
    problems = []
    found = {str(c.get("column")): c for c in columns}
    for name, typ in expected:
        c = found.get(name)
        if c is None:
            problems.append(f"column {name} is missing (expected {typ})")
        elif _type_key(c.get("type", "")) != _type_key(typ):
            problems.append(f"column {name} is {c.get('type')}, expected {typ}")
    extra = sorted(set(found) - {n for n, _ in expected})
    if extra:
        problems.append(f"unexpected column(s) {', '.join(extra)}")
    des = [n for n, c in found.items() if _truthy(c.get("designated"))]
    if table_info is not None and table_info.get("designatedTimestamp"):
        des = [str(table_info["designatedTimestamp"])]
    if des != [designated]:
        problems.append(f"designated timestamp is {des[0] if des else 'none'}, expected {designated}")
    if table_info is not None and "walEnabled" in table_info and not _truthy(table_info["walEnabled"]):
        problems.append("the table is not a WAL table (DEDUP needs WAL)")
    if dedup_keys is not None:
        keys = sorted(n for n, c in found.items() if _truthy(c.get("upsertKey")))
        if table_info is not None and "dedup" in table_info and not _truthy(table_info["dedup"]):
            keys = []
        if keys != sorted(dedup_keys):
            problems.append(
                f"dedup upsert keys are ({', '.join(keys) or 'none'}), expected ({', '.join(dedup_keys)}): "
                "a re-ingest would duplicate rows"
            )
    return problems


@dataclass(frozen=True)
class TableState:
    """What :func:`ensure_tables` found or did."""

    created: bool
    partition: str | None
    """The existing table's partitioning (``DAY``, ``HOUR`` ...), or the one created."""


def _table_info(http: QuestDBHttp, table: str) -> dict[str, Any] | None:
    rows = http.exec(f"SELECT * FROM tables() WHERE table_name = '{check_identifier(table)}'").records()
    return rows[0] if rows else None


def migration_hint(table: str) -> str:
    """How to move a table with :data:`LEGACY_DEDUP_KEYS` to :data:`DEDUP_KEYS` (checked on QuestDB 9.4).

    The old ``day_seq`` counted per (symbol, day), the new one per (instrument_id, day). Where every
    (symbol, UTC day of ts_recv) holds one instrument_id, which a file's symbology gives (a symbol
    names one instrument on a day, an unmapped id keeps its own text), the two numberings are the
    same, so changing the keys is the whole migration. Otherwise the table must be rebuilt.
    """
    check_identifier(table)
    keys = ", ".join(DEDUP_KEYS)
    return (
        f"Its dedup keys are those of an earlier datapair ({', '.join(LEGACY_DEDUP_KEYS)}): a file downloaded "
        "again with changed symbol mappings would duplicate its rows. To migrate:\n"
        f"  1. check that every symbol holds one instrument per day (the answer must be 0):\n"
        f"     SELECT count() FROM (SELECT symbol, timestamp_floor('d', ts_recv) AS day, "
        f"count_distinct(instrument_id) AS n FROM {table}) WHERE n > 1;\n"
        f"  2. if it is 0, the stored day_seq values are already the new ones; switch the keys:\n"
        f"     ALTER TABLE {table} DEDUP ENABLE UPSERT KEYS({keys});\n"
        f"  otherwise rebuild: RENAME TABLE {table} TO {table}_old; then load the source files again "
        f"(the table is created with the new keys) and DROP TABLE {table}_old."
    )


def _settle(http: QuestDBHttp, table: str, timeout: float = 30.0) -> None:
    """Wait until the table's WAL is applied (or suspended, or ``timeout`` s passed).

    A WAL table applies ``ALTER TABLE`` asynchronously, like rows: ``table_columns()`` shows new
    dedup keys only once the apply has caught up (checked on QuestDB 9.4).
    """
    deadline = time.monotonic() + timeout
    while True:
        rows = http.exec(f"SELECT * FROM wal_tables() WHERE name = '{check_identifier(table)}'").records()
        if not rows or _truthy(rows[0].get("suspended")) or time.monotonic() > deadline:
            return
        if int(rows[0].get("writerTxn") or 0) >= int(rows[0].get("sequencerTxn") or 0):
            return
        time.sleep(0.05)


def _check(http: QuestDBHttp, table: str, info: dict[str, Any] | None, expected: tuple[tuple[str, str], ...],
           designated: str, keys: tuple[str, ...] | None, ddl_file: str) -> None:  # fmt: skip
    cols = http.exec(f"SELECT * FROM table_columns('{table}')").records()
    problems = schema_problems(cols, info, expected, designated, keys)
    if problems:  # e.g. the migration's ALTER was just run: look again once the WAL is applied
        _settle(http, table)
        info = _table_info(http, table)
        cols = http.exec(f"SELECT * FROM table_columns('{table}')").records()
        problems = schema_problems(cols, info, expected, designated, keys)
    if (
        problems
        and keys == DEDUP_KEYS
        and not schema_problems(cols, info, expected, designated, LEGACY_DEDUP_KEYS)
    ):
        msg = f"QuestDB table {table!r} cannot be loaded as it is. " + migration_hint(table)
        raise SinkError(msg)
    if problems:
        msg = (
            f"QuestDB table {table!r} exists with a different schema; refusing to load it:\n  - "
            + "\n  - ".join(problems)
            + f"\nDrop or rename it, or load into another table; the expected DDL is in {ddl_file}."
        )
        raise SinkError(msg)


def ensure_tables(http: QuestDBHttp, table: str, partition: str, log_table: str) -> TableState:
    """Create ``table`` and ``log_table`` if missing; refuse a mismatching existing ``table``.

    Raises
    ------
    SinkError
        The existing table's columns, designated timestamp, WAL mode or dedup keys differ
        (every difference is listed), or the log table has a different schema.
    """
    check_identifier(table)
    check_identifier(log_table, "log table name")
    info = _table_info(http, table)
    created = info is None
    if created:
        http.exec(mbo_table_ddl(table, partition))
        info = _table_info(http, table)
    _check(http, table, info, MBO_COLUMNS, DESIGNATED, DEDUP_KEYS, "sql/mbo_ticks.sql")
    log_info = _table_info(http, log_table)
    if log_info is None:
        http.exec(log_table_ddl(log_table))
        log_info = _table_info(http, log_table)
    _check(http, log_table, log_info, LOG_COLUMNS, "ts", None, "sql/ingest_log.sql")
    part = None if info is None else info.get("partitionBy")
    return TableState(created, str(part) if part is not None else partition.upper())
