"""Helpers for tests and benchmarks of the service (in the spirit of ``falcon.testing``).

- :func:`make_lake`: generate days with :mod:`engine.synth.day` and ingest them into a lake.
- :class:`FakeQuestDB`: a threaded HTTP server that answers QuestDB's ``/exec`` JSON for exactly
  the statements :class:`~service.stores.questdb.QuestDBStore` sends, over an in-memory table
  kept in designated-timestamp order (ties in insertion order), with QuestDB's NULL sentinels.
  Anything else gets QuestDB's error shape, so a test notices a statement it does not know.
- :func:`serve`: the app on waitress on a free loopback port, in a thread.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FakeQuestDB", "lake_table", "make_lake", "serve"]

_QDB_TYPES = {
    "ts_event": "TIMESTAMP_NS", "symbol": "SYMBOL", "instrument_id": "INT", "publisher_id": "SHORT",
    "order_id": "LONG", "price_raw": "LONG", "price": "DOUBLE", "size": "INT", "flags": "INT",
    "channel_id": "SHORT", "action": "SYMBOL", "side": "SYMBOL", "ts_recv": "TIMESTAMP_NS",
    "ts_in_delta": "INT", "sequence": "LONG",
}  # fmt: skip


def make_lake(
    out_dir: str | Path,
    records: int,
    symbols: Sequence[str] = ("NVDA", "AAPL", "MSFT", "TSLA"),
    dates: Sequence[str] = ("2025-10-22",),
    seed: int = 7,
    *,
    by_symbol: bool = False,
) -> tuple[Path, list[Path]]:
    """Generate one DBN day per date and ingest them all into ``out_dir/lake``.

    Returns the lake directory and the DBN files (the oracle's input).
    """
    from engine.lake.ingest import ingest_parquet
    from engine.synth.day import write_day

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, d in enumerate(dates):
        p = out / f"XNAS.ITCH-{d}.dbn.zst"
        if not p.exists():
            write_day(p, records, tuple(symbols), d, seed=seed + i)
        files.append(p)
    lake = out / "lake"
    summary = ingest_parquet(files, lake, by_symbol=by_symbol, quiet=True, jobs=1)
    if summary.failed:
        msg = f"ingest failed: {summary.failed}"
        raise RuntimeError(msg)
    return lake, files


def lake_table(lake_dir: str | Path) -> pa.Table:
    """Every row of a lake's day files, in file order."""
    files = sorted(Path(lake_dir).glob("mbo_????-??-??.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).combine_chunks()


class FakeQuestDB:
    """An ``/exec`` endpoint over ``table`` (columns of :data:`engine.dbn.columns.MBO_SCHEMA`).

    Parameters
    ----------
    table : pa.Table
        The rows; kept sorted by ``ts_event`` (stable), as QuestDB stores a table whose
        designated timestamp is ``ts_event``.
    name : str
        The table name it answers for; other names get "table does not exist".
    """

    def __init__(self, table: pa.Table, name: str = "mbo_ticks") -> None:
        ts = table.column("ts_event").cast(pa.int64()).to_numpy()
        order = np.argsort(ts, kind="stable")
        t = table.take(order)
        self.name = name
        self.cols: dict[str, np.ndarray] = {}
        for c in t.column_names:
            col = t.column(c).combine_chunks()
            if pa.types.is_dictionary(col.type):
                self.cols[c] = np.asarray(col.cast(pa.string()).to_pylist(), dtype=object)
            elif pa.types.is_timestamp(col.type):
                self.cols[c] = col.cast(pa.int64()).to_numpy()
            else:
                self.cols[c] = col.to_numpy(zero_copy_only=False)
        self.queries: list[str] = []
        self.down = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- SQL -------------------------------------------------------------------------------------

    def _mask(self, where: str | None) -> np.ndarray:
        n = len(self.cols["ts_event"])
        mask = np.ones(n, dtype=np.bool_)
        if not where:
            return mask
        ts = self.cols["ts_event"]
        for cond in where.split(" AND "):
            if m := re.fullmatch(r"symbol = '([^']*)'", cond):
                mask &= self.cols["symbol"] == m[1]
            elif m := re.fullmatch(r"ts_event (>=|<=|=) (\d+)", cond):
                v = int(m[2])
                mask &= (ts >= v) if m[1] == ">=" else (ts <= v) if m[1] == "<=" else (ts == v)
            elif m := re.fullmatch(r"action IN \(((?:'[A-Z]'(?:, )?)+)\)", cond):
                mask &= np.isin(self.cols["action"], re.findall(r"'([A-Z])'", m[1]))
            else:
                raise ValueError(f"unsupported condition [{cond}]")
        return mask

    @staticmethod
    def _json_value(name: str, typ: str, v: object) -> object:
        if typ == "DOUBLE":
            return None if math.isnan(float(v)) else float(v)  # type: ignore[arg-type]
        if typ == "SYMBOL":
            return v
        iv = int(v)  # type: ignore[call-overload]
        if (typ == "INT" and iv == -(2**31)) or (typ == "LONG" and iv == -(2**63)):
            return None  # QuestDB's NULL sentinels
        return iv

    def execute(self, sql: str) -> dict:
        """The ``/exec`` JSON answer for ``sql`` (raises ValueError for what it does not know)."""
        m = re.fullmatch(
            r"SELECT (?P<sel>.+?) FROM (?P<table>\w+)(?: WHERE (?P<where>.+?))?(?: LIMIT (?P<limit>\d+))?",
            sql,
        )
        if m is None:
            raise ValueError("unsupported statement")
        if m["table"] != self.name:
            raise LookupError(f"table does not exist [table={m['table']}]")
        mask = self._mask(m["where"])
        sel = m["sel"]
        if sel == "count()":
            return {"columns": [{"name": "count", "type": "LONG"}], "dataset": [[int(mask.sum())]]}
        if sel == "DISTINCT symbol":
            names = sorted(set(self.cols["symbol"][mask].tolist()))
            return {"columns": [{"name": "symbol", "type": "SYMBOL"}], "dataset": [[s] for s in names]}
        if sel == "cast(min(ts_event) AS LONG), cast(max(ts_event) AS LONG), count()":
            ts = self.cols["ts_event"][mask]
            row = [int(ts.min()), int(ts.max()), len(ts)] if len(ts) else [None, None, 0]
            return {
                "columns": [
                    {"name": "min", "type": "LONG"},
                    {"name": "max", "type": "LONG"},
                    {"name": "count", "type": "LONG"},
                ],
                "dataset": [row],
            }
        names, types = [], []
        for item in sel.split(", "):
            if cm := re.fullmatch(r"cast\((\w+) AS LONG\) AS (\w+)_ns", item):
                if cm[1] != cm[2] or _QDB_TYPES.get(cm[1]) != "TIMESTAMP_NS":
                    raise ValueError(f"unsupported select item [{item}]")
                names.append(cm[1])
                types.append("LONG")
            elif item in _QDB_TYPES:
                names.append(item)
                types.append(_QDB_TYPES[item])
            else:
                raise ValueError(f"unsupported select item [{item}]")
        idx = np.flatnonzero(mask)
        if m["limit"] is not None:
            idx = idx[: int(m["limit"])]
        columns = [
            [self._json_value(n, t, v) for v in self.cols[n][idx].tolist()]
            for n, t in zip(names, types, strict=True)
        ]
        dataset = [list(r) for r in zip(*columns, strict=True)] if len(idx) else []
        out_names = [
            f"{n}_ns" if t == "LONG" and _QDB_TYPES[n] == "TIMESTAMP_NS" else n
            for n, t in zip(names, types, strict=True)
        ]
        return {
            "columns": [{"name": n, "type": t} for n, t in zip(out_names, types, strict=True)],
            "dataset": dataset,
        }

    # -- HTTP ------------------------------------------------------------------------------------

    def start(self) -> str:
        """Listen on a free loopback port; return ``http://127.0.0.1:PORT``."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/exec":
                    self._send(404, {"error": "not found"})
                    return
                sql = parse_qs(parts.query).get("query", [""])[0]
                fake.queries.append(sql)
                if fake.down:
                    self._send(500, b"<html>internal error</html>")
                    return
                try:
                    doc = fake.execute(sql)
                except LookupError as exc:
                    self._send(400, {"query": sql, "error": str(exc).strip("'\""), "position": 0})
                    return
                except ValueError as exc:
                    self._send(400, {"query": sql, "error": f"fake QuestDB: {exc}", "position": 0})
                    return
                doc = {"query": sql, **doc, "timestamp": -1, "count": len(doc["dataset"])}
                self._send(200, doc)

            def _send(self, status: int, doc: dict | bytes) -> None:
                body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


@contextmanager
def serve(app: object, host: str = "127.0.0.1", threads: int = 4) -> Iterator[str]:
    """Run ``app`` on waitress at a free port of ``host`` in a thread; yield its base URL."""
    from service.serving import ServeLimits, create_server, stop_server

    server = create_server(app, host, 0, ServeLimits(threads=threads))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.effective_port}"
    finally:
        stop_server(server, thread)
