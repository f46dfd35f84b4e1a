"""The one rule for DBN's unsigned fields: stored signed with the same bits, answered unsigned.

A day whose every ``order_id`` is above 2**63 and whose NVDA rows have ``size`` above 2**31 and
``instrument_id`` above 2**31 goes into the lake (and, marker ``questdb``, into the real server);
every answer (``/data`` as JSON, CSV, Arrow and Parquet, the chart's ticks and bars, the query
CLI's rows and OHLCV bars) must give databento's own values (its ``to_df``: the oracle).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from falcon.testing import TestClient

from engine.dbn.columns import ANSWER_SCHEMA, UNSIGNED
from engine.lake.ingest import ingest_parquet
from engine.lake.query import run_query
from engine.questdb.ingest import ingest_questdb
from service import create_app
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore
from tests.support.dbn_bytes import BIG_ID, write_big_values_file
from tests.support.oracle import dbn_store
from tests.support.qdb import options

FIELDS = ("instrument_id", "order_id", "size", "publisher_id", "flags", "channel_id", "sequence")
ALL = {"start_ts": 0, "end_ts": 2**63 - 1, "symbol": "NVDA"}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    d = tmp_path_factory.mktemp("big")
    path = write_big_values_file(d)
    assert ingest_parquet([path], d / "lake", quiet=True, jobs=1).ok
    df = dbn_store(path).to_df(price_type="fixed", pretty_ts=False, map_symbols=True)
    nvda = df[df["symbol"] == "NVDA"].reset_index(drop=True)
    assert nvda["order_id"].min() >= 2**63 and nvda["size"].min() >= 2**31 and (nvda["instrument_id"] == BIG_ID).all()
    return path, d / "lake", nvda


def expected(oracle: pd.DataFrame, name: str) -> list[int]:
    return [int(v) for v in oracle[name]]


def check_arrow(table: pa.Table, oracle: pd.DataFrame) -> None:
    assert table.num_rows == len(oracle)
    for name in FIELDS:
        assert table.schema.field(name).type == UNSIGNED[name], name
        assert table.column(name).to_pylist() == expected(oracle, name), name


def check_answers(client: TestClient, oracle: pd.DataFrame) -> None:
    rows = json.loads(client.simulate_post("/data", json=ALL).text)
    for name in ("instrument_id", "size", "flags", "sequence"):
        assert [r["hd"].get(name, r.get(name)) for r in rows] == expected(oracle, name), name
    assert [int(r["order_id"]) for r in rows] == expected(oracle, "order_id")  # 64-bit as text

    types = {n: UNSIGNED[n] for n in ("instrument_id", "order_id", "size")}  # (else order_id reads as a float)
    got = pacsv.read_csv(
        io.BytesIO(client.simulate_post("/data", json={**ALL, "format": "csv"}).content),
        convert_options=pacsv.ConvertOptions(column_types=types),
    )
    for name in ("instrument_id", "order_id", "size"):
        assert got.column(name).to_pylist() == expected(oracle, name), name

    arrow = ipc.open_stream(client.simulate_post("/data", json={**ALL, "format": "arrow"}).content).read_all()
    assert arrow.schema.remove_metadata() == ANSWER_SCHEMA
    check_arrow(arrow, oracle)
    check_arrow(pq.read_table(io.BytesIO(client.simulate_post("/data", json={**ALL, "format": "parquet"}).content)), oracle)

    q = {"symbol": "NVDA", "start": "0", "end": str(2**63 - 1), "limit": "50000"}
    ticks = client.simulate_get("/api/mbo/ticks", params=q).json["ticks"]
    for name in ("instrument_id", "order_id", "size"):
        assert [t[name] for t in ticks] == expected(oracle, name), name
    arrow_ticks = ipc.open_stream(
        client.simulate_get("/api/mbo/ticks", params=q, headers={"Accept": "application/vnd.apache.arrow.stream"}).content
    ).read_all()
    check_arrow(arrow_ticks, oracle)


def trade_volume_by_minute(oracle: pd.DataFrame) -> dict[int, int]:
    t = oracle[(oracle["action"] == "T")]
    minute = t["ts_event"].astype(np.int64) // 60_000_000_000 * 60_000_000_000
    return {int(k): int(v) for k, v in t["size"].astype(object).groupby(minute).sum().items()}


def day_bars(oracle: pd.DataFrame) -> dict[str, str]:
    ts = oracle["ts_event"].astype(np.int64)
    return {"symbol": "NVDA", "start": str(ts.min()), "end": str(ts.max()), "resolution": "1m"}


def test_lake_answers_are_unsigned(big: tuple[Path, Path, pd.DataFrame]) -> None:
    _, lake, oracle = big
    assert pq.read_schema(next(lake.glob("mbo_*.parquet"))).field("order_id").type == pa.int64()  # storage
    client = TestClient(create_app(LakeStore(lake)))
    check_answers(client, oracle)
    bars = client.simulate_get("/api/mbo/bars", params=day_bars(oracle)).json["bars"]
    want = trade_volume_by_minute(oracle)
    assert want and min(want.values()) >= 2**31
    assert {b["ts"]: b["volume"] for b in bars} == want


def test_query_cli_rows_and_bars_are_unsigned(big: tuple[Path, Path, pd.DataFrame]) -> None:
    _, lake, oracle = big
    rows = run_query(lake, symbol="NVDA", limit=0)
    for name in FIELDS:
        assert rows[name].dtype == pl.from_arrow(pa.array([], UNSIGNED[name])).dtype, name
        assert rows[name].to_list() == expected(oracle, name), name
    assert run_query(lake, symbol="NVDA", sql=f"SELECT count(*) AS n FROM df WHERE order_id >= {2**63}", limit=0)["n"][0] == len(oracle)
    bars = run_query(lake, symbol="NVDA", interval="1m", limit=0)
    got = {int(ts.timestamp()) * 10**9: int(v) for ts, v in zip(bars["ts"], bars["volume"], strict=True)}
    assert got == trade_volume_by_minute(oracle)


@pytest.mark.questdb
def test_questdb_answers_are_unsigned(
    big: tuple[Path, Path, pd.DataFrame], questdb_url: str, questdb_module_tables: Callable[[str], str]
) -> None:
    path, lake, oracle = big
    names = questdb_module_tables("t_big"), questdb_module_tables("t_big_log")
    assert ingest_questdb([path], options=options(questdb_url, names, "auto")).ok
    client = TestClient(create_app(QuestDBStore(questdb_url, names[0])))
    check_answers(client, oracle)
    q = day_bars(oracle)
    lake_bars = TestClient(create_app(LakeStore(lake))).simulate_get("/api/mbo/bars", params=q).json["bars"]
    assert lake_bars and client.simulate_get("/api/mbo/bars", params=q).json["bars"] == lake_bars
