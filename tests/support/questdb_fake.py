"""A fake QuestDB HTTP server (``/exec``, ILP ``/write``, ``/exp``, QWP ingress) and the row oracle.

The fake speaks the wire as QuestDB does for what the engine uses: ``/settings`` (ILP protocol
versions), ``/write?precision=n`` (ILP v2 text with binary doubles and ``n`` timestamps; 204 on
success, a JSON error otherwise) and ``/exec`` for the statements the engine issues (DDL,
``tables()``, ``table_columns()``, ``wal_tables()``, the grouped ``count()``, the ingest-log
lookup and plain ``SELECT``s), ``/exp?fmt=parquet`` of a whole table, and, with ``qwp=True``, QWP
ingress over WebSocket on ``/write/v4`` as QuestDB documents it (frames decoded, each column
refused unless sent as exactly its table type, deferred commits, OK/error answers); without it
the upgrade gets 404, so ``auto`` resolves to ILP/HTTP. DEDUP UPSERT KEYS apply on every write.
Faults are injected per request (a status and body, or a dropped connection).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import json
import re
import socket
import struct
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from engine.dbn.kernels import NS_PER_DAY
from tests.support.oracle import dbn_store

CANONICAL = ("ts_event", "symbol", "instrument_id", "publisher_id", "order_id", "price_raw", "price", "size",
             "flags", "channel_id", "action", "side", "ts_recv", "ts_in_delta", "sequence", "day_seq")  # fmt: skip
KEY = ["ts_event", "ts_recv", "symbol", "publisher_id", "day_seq"]


# -- ILP v2 parsing ------------------------------------------------------------------------------
def _token(data: bytes, i: int, stops: bytes) -> tuple[str, int]:
    out = bytearray()
    while i < len(data) and data[i] not in stops:
        if data[i] == 0x5C:  # backslash escape
            i += 1
        out.append(data[i])
        i += 1
    return out.decode(), i


def _scalar(raw: str) -> Any:
    if raw.endswith("i"):
        return int(raw[:-1])
    if raw.endswith("n") and raw[:-1].lstrip("-").isdigit():
        return int(raw[:-1])
    if raw.endswith("t") and raw[:-1].lstrip("-").isdigit():
        return int(raw[:-1]) * 1000
    if raw in ("t", "T", "true", "True"):
        return True
    if raw in ("f", "F", "false", "False"):
        return False
    return float(raw)


def parse_ilp(data: bytes) -> list[tuple[str, dict[str, Any], int | None]]:
    """ILP text (v1 or v2) -> (table, {column: value}, designated timestamp in ns)."""
    rows = []
    i, n = 0, len(data)
    while i < n:
        if data[i] == 0x0A:
            i += 1
            continue
        table, i = _token(data, i, b", ")
        values: dict[str, Any] = {}
        while data[i] == ord(","):
            k, i = _token(data, i + 1, b"=")
            v, i = _token(data, i + 1, b", ")
            values[k] = v
        assert data[i] == ord(" "), f"bad ILP at byte {i}"
        i += 1
        while True:
            k, i = _token(data, i, b"=")
            i += 1
            if data[i] == ord("="):  # binary format: type byte, then the value
                assert data[i + 1] == 16, "only binary doubles are expected"
                values[k] = struct.unpack_from("<d", data, i + 2)[0]
                i += 10
            elif data[i] == ord('"'):
                i += 1
                s = bytearray()
                while data[i] != ord('"'):
                    if data[i] == 0x5C:
                        i += 1
                    s.append(data[i])
                    i += 1
                values[k] = s.decode()
                i += 1
            else:
                raw, i = _token(data, i, b", \n")
                values[k] = _scalar(raw)
            if data[i] == ord(","):
                i += 1
                continue
            break
        ts = None
        if data[i] == ord(" "):
            raw, i = _token(data, i + 1, b"\n")
            ts = int(raw[:-1]) * (1000 if raw.endswith("t") else 1) if raw[-1] in "nt" else int(raw)
        assert data[i] == 0x0A, f"expected end of line at byte {i}"
        i += 1
        rows.append((table, values, ts))
    return rows


# -- QWP ingress (WebSocket) --------------------------------------------------------------------------
# As QuestDB documents it (connect/wire-protocols/qwp-ingress-websocket): a 12-byte header ("QWP1",
# version, flags, table count, payload length), an optional delta symbol dictionary, then table
# blocks (name, row count, column count, column definitions, column data); the designated
# timestamp is the column with an empty name. Each frame is answered in order with an OK (status,
# sequence, per-table seqTxn) or an error (status, sequence, message).
QWP_FLAG_DEFER_COMMIT, QWP_FLAG_GORILLA, QWP_FLAG_DELTA_DICT = 0x01, 0x04, 0x08
QWP_TYPES = {0x01: "BOOLEAN", 0x02: "BYTE", 0x03: "SHORT", 0x04: "INT", 0x05: "LONG", 0x06: "FLOAT",
             0x07: "DOUBLE", 0x09: "SYMBOL", 0x0A: "TIMESTAMP", 0x0B: "DATE", 0x0F: "VARCHAR",
             0x10: "TIMESTAMP_NS"}  # fmt: skip
"""Wire type codes -> the QuestDB column type they write (TIMESTAMP_NANOS lands in TIMESTAMP_NS)."""
_QWP_FIXED = {0x02: "<i1", 0x03: "<i2", 0x04: "<i4", 0x05: "<i8", 0x06: "<f4", 0x07: "<f8", 0x0B: "<i8"}
QWP_SCHEMA_MISMATCH, QWP_PARSE_ERROR, QWP_WRITE_ERROR = 0x03, 0x05, 0x09
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class QwpError(Exception):
    """A frame the fake refuses: ``status`` is the QWP status code of the error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise QwpError(QWP_PARSE_ERROR, f"truncated QWP message at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.u8()
            out |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return out

    def text(self) -> str:
        return self.take(self.varint()).decode()


def _qwp_column(cur: _Cursor, code: int, rows: int, flags: int, dictionary: list[str]) -> list[Any]:
    """One column's values (None for NULL rows)."""
    null_flag = cur.u8()
    nulls = np.zeros(rows, dtype=bool)
    if null_flag:
        bits = np.frombuffer(cur.take((rows + 7) // 8), dtype=np.uint8)
        nulls = np.unpackbits(bits, bitorder="little")[:rows].astype(bool)
    n = rows - int(nulls.sum())
    if code in _QWP_FIXED:
        dt = np.dtype(_QWP_FIXED[code])
        values: list[Any] = np.frombuffer(cur.take(n * dt.itemsize), dtype=dt).tolist()
    elif code in (0x0A, 0x10):
        if flags & QWP_FLAG_GORILLA and cur.u8() != 0:
            raise QwpError(QWP_PARSE_ERROR, "the fake does not decode Gorilla timestamps")
        values = np.frombuffer(cur.take(n * 8), dtype="<i8").tolist()
    elif code == 0x09:
        ids = [cur.varint() for _ in range(n)]
        if any(i >= len(dictionary) for i in ids):
            raise QwpError(QWP_PARSE_ERROR, "symbol id past the connection's dictionary")
        values = [dictionary[i] for i in ids]
    elif code == 0x01:
        values = np.unpackbits(np.frombuffer(cur.take((n + 7) // 8), np.uint8), bitorder="little")[:n]
        values = [bool(v) for v in values]
    elif code == 0x0F:
        offsets = np.frombuffer(cur.take((n + 1) * 4), dtype="<u4")
        blob = cur.take(int(offsets[-1]))
        values = [blob[offsets[i] : offsets[i + 1]].decode() for i in range(n)]
    else:
        raise QwpError(QWP_PARSE_ERROR, f"the fake does not decode type code {code:#x}")
    if not null_flag:
        return values
    it = iter(values)
    return [None if isnull else next(it) for isnull in nulls.tolist()]


def decode_qwp(
    message: bytes, dictionary: list[str]
) -> tuple[int, list[tuple[str, int, list[tuple[str, int, list[Any]]]]]]:
    """A QWP message -> (flags, [(table, rows, [(column, type code, values)])]); extends ``dictionary``."""
    cur = _Cursor(message)
    if cur.take(4) != b"QWP1":
        raise QwpError(QWP_PARSE_ERROR, "bad magic")
    version, flags = cur.u8(), cur.u8()
    n_tables = int.from_bytes(cur.take(2), "little")
    length = int.from_bytes(cur.take(4), "little")
    if version != 1 or length != len(message) - 12:
        raise QwpError(QWP_PARSE_ERROR, f"bad header: version {version}, payload length {length}")
    if flags & QWP_FLAG_DELTA_DICT:
        start, count = cur.varint(), cur.varint()
        if start > len(dictionary):  # a delta may re-register ids (a replay), never skip any
            raise QwpError(
                0x0D, f"dictionary gap: delta starts at {start}, the connection holds {len(dictionary)}"
            )
        entries = [cur.text() for _ in range(count)]
        dictionary[start : start + count] = entries
    blocks = []
    for _ in range(n_tables):
        table, rows, n_cols = cur.text(), cur.varint(), cur.varint()
        schema = [(cur.text(), cur.u8()) for _ in range(n_cols)]
        cols = [(name, code, _qwp_column(cur, code, rows, flags, dictionary)) for name, code in schema]
        blocks.append((table, rows, cols))
    if cur.pos != len(message):
        raise QwpError(QWP_PARSE_ERROR, f"{len(message) - cur.pos} trailing bytes")
    return flags, blocks


def _ws_read(rfile: Any) -> tuple[int, bytes]:
    head = rfile.read(2)
    if len(head) < 2:
        raise EOFError
    op, n = head[0] & 0x0F, head[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", rfile.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", rfile.read(8))[0]
    mask = rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = np.frombuffer(rfile.read(n), dtype=np.uint8)
    key = np.frombuffer((mask * (n // 4 + 1))[:n], dtype=np.uint8)
    return op, (data ^ key).tobytes()


def _ws_write(wfile: Any, op: int, data: bytes) -> None:
    n = len(data)
    head = bytes([0x80 | op]) + (bytes([n]) if n < 126 else b"\x7e" + struct.pack(">H", n) if n < 65536
                                  else b"\x7f" + struct.pack(">Q", n))  # fmt: skip
    wfile.write(head + data)
    wfile.flush()


# -- the fake server ------------------------------------------------------------------------------
class FakeTable:
    def __init__(
        self, name: str, columns: list[tuple[str, str]], designated: str, partition: str, keys: list[str]
    ):
        self.name, self.columns, self.designated, self.partition, self.keys = (
            name,
            columns,
            designated,
            partition,
            keys,
        )
        self.rows: list[dict[str, Any]] = []
        self._index: dict[tuple, int] = {}
        self.txn = 0

    def insert(self, values: dict[str, Any]) -> None:
        types = dict(self.columns)
        row = {c: values.get(c) for c, _ in self.columns}
        for c in values:
            if c not in types:
                msg = f"column {c} does not exist in {self.name}"
                raise ValueError(msg)
        for c, t in self.columns:
            v = row[c]
            if v is not None and t in ("INT", "SHORT", "LONG") and not isinstance(v, int):
                msg = f"cast error: {c} {v!r} into {t}"
                raise ValueError(msg)
        if self.keys:
            k = tuple(row[c] for c in self.keys)
            j = self._index.get(k)
            if j is not None:
                self.rows[j] = row
                return
            self._index[k] = len(self.rows)
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=[c for c, _ in self.columns])


class FakeQuestDB:
    """A threaded fake of QuestDB's HTTP endpoint on 127.0.0.1 (see the module doc)."""

    def __init__(self, qwp: bool = False) -> None:
        self.qwp = qwp
        """Whether ``/write/v4`` accepts QWP WebSocket upgrades (QuestDB 9.4 does); else 404."""
        self.qwp_faults: list[Any] = []
        self.qwp_frames: list[tuple[int, int]] = []  # (bytes, flags) per QWP data frame answered
        self.qwp_columns: dict[str, list[tuple[str, str]]] = {}  # table -> (column, wire type) last sent
        self.tables: dict[str, FakeTable] = {}
        self.lock = threading.Lock()
        self.write_faults: list[Any] = []
        self.exec_faults: list[Any] = []
        self.writes: list[tuple[int, int]] = []  # (bytes, rows) per accepted /write
        self.exec_log: list[str] = []
        self.suspended = False
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _fault(self, faults: list[Any]) -> bool:
                with fake.lock:
                    f = faults.pop(0) if faults else None
                if f is None:
                    return False
                if f == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return True
                status, body = f
                self._send(status, body if isinstance(body, bytes) else json.dumps(body).encode())
                return True

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/settings":
                    self._send(200, json.dumps({"config": {"line.proto.support.versions": [1, 2],
                                                           "cairo.max.file.name.length": 127}}).encode())  # fmt: skip
                    return
                if (
                    url.path in ("/write/v4", "/api/v4/write")
                    and self.headers.get("Upgrade", "").lower() == "websocket"
                ):
                    if not fake.qwp:
                        self._send(404, b"not found", "text/plain")  # a server without QWP
                        return
                    self._qwp_session()
                    return
                if url.path == "/exp":
                    q = urllib.parse.parse_qs(url.query)
                    try:
                        body = fake.export(q["query"][0], q.get("fmt", ["csv"])[0])
                    except Exception as exc:
                        self._send(
                            400,
                            json.dumps({"query": q["query"][0], "error": str(exc), "position": 0}).encode(),
                        )
                        return
                    self._send(200, body, "application/octet-stream")
                    return
                if url.path != "/exec":
                    self._send(404, b"not found", "text/plain")
                    return
                if self._fault(fake.exec_faults):
                    return
                q = urllib.parse.parse_qs(url.query)
                sql = q["query"][0]
                fake.exec_log.append(sql)
                try:
                    status, body = fake.execute(sql, q.get("limit", [None])[0])
                except Exception as exc:
                    status, body = 400, {"query": sql, "error": str(exc), "position": 0}
                self._send(status, json.dumps(body).encode())

            def _qwp_session(self) -> None:
                accept = base64.b64encode(
                    hashlib.sha1(self.headers["Sec-WebSocket-Key"].encode() + _WS_GUID).digest()
                )
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept.decode())
                self.send_header("X-QWP-Version", "1")
                self.send_header("X-QWP-Max-Batch-Size", str(16 << 20))
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                dictionary: list[str] = []
                pending: dict[str, list[dict[str, Any]]] = {}
                seq = 0
                while True:
                    try:
                        op, data = _ws_read(self.rfile)
                    except (EOFError, OSError, struct.error):
                        return
                    if op == 8:  # close
                        with contextlib.suppress(OSError):
                            _ws_write(self.wfile, 8, data[:2])
                        return
                    if op == 9:  # ping
                        _ws_write(self.wfile, 10, data)
                        continue
                    if op != 2:
                        continue
                    with fake.lock:
                        fault = fake.qwp_faults.pop(0) if fake.qwp_faults else None
                    if fault == "drop":  # the connection dies before the frame is answered
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    try:
                        flags, blocks = decode_qwp(data, dictionary)
                        for table, rows, cols in blocks:
                            pending.setdefault(table, []).extend(fake.qwp_rows(table, rows, cols))
                        committed: dict[str, int] = {}
                        if not flags & QWP_FLAG_DEFER_COMMIT:
                            committed = fake.commit(pending)
                            pending = {}
                        body = b"\x00" + struct.pack("<qH", seq, len(committed))
                        for name, txn in committed.items():
                            body += struct.pack("<H", len(name)) + name.encode() + struct.pack("<q", txn)
                    except QwpError as exc:
                        pending = {}
                        msg = str(exc).encode()
                        body = bytes([exc.status]) + struct.pack("<qH", seq, len(msg)) + msg
                    with fake.lock:
                        fake.qwp_frames.append((len(data), data[5]))
                    _ws_write(self.wfile, 2, body)
                    seq += 1

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                data = self.rfile.read(n)
                if self._fault(fake.write_faults):
                    return
                try:
                    rows = fake.write(data)
                except Exception as exc:
                    self._send(
                        400,
                        json.dumps(
                            {"code": "invalid", "message": str(exc), "line": 1, "errorId": "t"}
                        ).encode(),
                    )
                    return
                with fake.lock:
                    fake.writes.append((len(data), rows))
                self._send(204, b"")

        self.tcp_drops = 0  # ILP/TCP connections whose data is thrown away (a server that lost them)
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.tcp_port = self.tcp.getsockname()[1]
        threading.Thread(target=self._tcp_accept, daemon=True).start()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.tcp.close()

    def _tcp_accept(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._tcp_read, args=(conn,), daemon=True).start()

    def _tcp_read(self, conn: socket.socket) -> None:
        chunks = []
        with conn:
            while data := conn.recv(1 << 20):
                chunks.append(data)
        with self.lock:
            drop = self.tcp_drops > 0
            self.tcp_drops -= drop
        if not drop and chunks:
            self.write(b"".join(chunks))

    # -- /write ----------------------------------------------------------------------------------
    def write(self, data: bytes) -> int:
        parsed = parse_ilp(data)
        with self.lock:
            touched = set()
            for table, values, ts in parsed:
                t = self.tables.get(table)
                if t is None:
                    msg = f"table does not exist [table={table}]"
                    raise ValueError(msg)
                if ts is not None:
                    values[t.designated] = ts
                for c, typ in t.columns:  # ILP timestamps arrive in ns; a TIMESTAMP column keeps µs
                    if typ == "TIMESTAMP" and isinstance(values.get(c), int):
                        values[c] //= 1000
                t.insert(values)
                touched.add(table)
            for name in touched:
                self.tables[name].txn += 1
        return len(parsed)

    # -- QWP -------------------------------------------------------------------------------------
    def qwp_rows(self, table: str, rows: int, cols: list[tuple[str, int, list[Any]]]) -> list[dict[str, Any]]:
        """A QWP table block as rows, refused unless every column is sent as exactly its table type."""
        with self.lock:
            t = self.tables.get(table)
            if t is None:
                raise QwpError(QWP_WRITE_ERROR, f"table does not exist [table={table}]")
            types = dict(t.columns)
            names = []
            for name, code, _ in cols:
                col = name or t.designated
                if col not in types:
                    raise QwpError(QWP_SCHEMA_MISMATCH, f"column {col} does not exist in {table}")
                wire = QWP_TYPES.get(code, hex(code))
                if wire != types[col]:
                    msg = f"column {col} is {types[col]}, the frame sends {wire}"
                    raise QwpError(QWP_SCHEMA_MISMATCH, msg)
                names.append(col)
            self.qwp_columns[table] = [(n, QWP_TYPES[c[1]]) for n, c in zip(names, cols, strict=True)]
        return [{n: c[2][i] for n, c in zip(names, cols, strict=True)} for i in range(rows)]

    def commit(self, pending: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        """Insert the pending rows of each table (dedup applied) as one transaction per table."""
        out = {}
        with self.lock:
            for name, rows in pending.items():
                t = self.tables[name]
                for r in rows:
                    t.insert(r)
                t.txn += 1
                out[name] = t.txn
        return out

    # -- /exp ------------------------------------------------------------------------------------
    def export(self, sql: str, fmt: str) -> bytes:
        """``/exp?fmt=parquet`` of ``SELECT col | cast(col AS LONG) AS col, ... FROM t`` (whole table)."""
        import pyarrow as pa

        m = re.fullmatch(r"SELECT (.+) FROM (\w+)", sql.strip())
        if fmt != "parquet" or m is None:
            msg = f"the fake exports only SELECT ... FROM t as parquet: {sql[:80]}"
            raise ValueError(msg)
        with self.lock:
            t = self.tables[m.group(2)]
            frame = t.frame()
            types = dict(t.columns)
        cols = {}
        for item in m.group(1).split(", "):
            cm = re.fullmatch(r"cast\((\w+) AS LONG\) AS (\w+)", item)
            name = cm.group(1) if cm else item
            values = frame[name].tolist()
            typ = "LONG" if cm else types[name]
            arrow = {"SYMBOL": pa.string(), "VARCHAR": pa.string(), "DOUBLE": pa.float64(), "SHORT": pa.int16(),
                     "INT": pa.int32(), "LONG": pa.int64(), "TIMESTAMP_NS": pa.timestamp("ns")}[typ]  # fmt: skip
            if typ == "DOUBLE":
                values = [None if v is None or v != v else v for v in values]  # NaN is DOUBLE's NULL
            if typ == "TIMESTAMP_NS":
                values = pa.array(values, pa.int64()).cast(arrow)
            cols[cm.group(2) if cm else name] = (
                pa.array(values, arrow) if not isinstance(values, pa.Array) else values
            )
        out = io.BytesIO()
        pq.write_table(pa.table(cols), out)
        return out.getvalue()

    # -- /exec -----------------------------------------------------------------------------------
    def execute(self, sql: str, limit: str | None) -> tuple[int, dict[str, Any]]:
        s = sql.strip()
        with self.lock:
            if s in ("SELECT 1 AS ok", "SELECT 1"):
                return 200, _result([("ok", "INT")], [[1]])
            m = re.fullmatch(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+) \((.*)\) TIMESTAMP\((\w+)\) PARTITION BY (\w+) WAL"
                             r"(?:\s+DEDUP UPSERT KEYS\(([^)]*)\))?;?", s, re.S)  # fmt: skip
            if m:
                name = m.group(1)
                if name not in self.tables:
                    cols = []
                    for part in m.group(2).split(","):
                        words = part.split()
                        cols.append((words[0], words[1]))
                    keys = [k.strip() for k in m.group(5).split(",")] if m.group(5) else []
                    self.tables[name] = FakeTable(name, cols, m.group(3), m.group(4), keys)
                return 200, {"ddl": "OK"}
            m = re.fullmatch(r"SELECT \* FROM tables\(\) WHERE table_name = '(\w+)'", s)
            if m:
                t = self.tables.get(m.group(1))
                cols = [("id", "INT"), ("table_name", "STRING"), ("designatedTimestamp", "STRING"),
                        ("partitionBy", "STRING"), ("walEnabled", "BOOLEAN"), ("dedup", "BOOLEAN")]  # fmt: skip
                rows = [] if t is None else [[1, t.name, t.designated, t.partition, True, bool(t.keys)]]
                return 200, _result(cols, rows)
            m = re.fullmatch(r"SELECT \* FROM table_columns\('(\w+)'\)", s)
            if m:
                t = self.tables.get(m.group(1))
                if t is None:
                    msg = f"table does not exist [table={m.group(1)}]"
                    raise ValueError(msg)
                cols = [("column", "STRING"), ("type", "STRING"), ("indexed", "BOOLEAN"), ("designated", "BOOLEAN"),
                        ("upsertKey", "BOOLEAN")]  # fmt: skip
                return 200, _result(
                    cols, [[c, typ, False, c == t.designated, c in t.keys] for c, typ in t.columns]
                )
            m = re.fullmatch(r"SELECT \* FROM wal_tables\(\) WHERE name = '(\w+)'", s)
            if m:
                t = self.tables.get(m.group(1))
                cols = [("name", "STRING"), ("suspended", "BOOLEAN"), ("writerTxn", "LONG"), ("sequencerTxn", "LONG"),
                        ("errorMessage", "STRING")]  # fmt: skip
                rows = (
                    []
                    if t is None
                    else [[t.name, self.suspended, t.txn, t.txn, "disk full" if self.suspended else ""]]
                )
                return 200, _result(cols, rows)
            m = re.fullmatch(r"SELECT symbol, publisher_id, count\(\) AS n FROM (\w+) WHERE ts_event BETWEEN (-?\d+) "
                             r"AND (-?\d+) AND ts_recv BETWEEN (-?\d+) AND (-?\d+) ORDER BY symbol, publisher_id", s)  # fmt: skip
            if m:
                t = self.tables[m.group(1)]
                e0, e1, r0, r1 = (int(m.group(k)) for k in range(2, 6))
                counts: dict[tuple[str, int], int] = {}
                for r in t.rows:
                    if e0 <= r["ts_event"] <= e1 and r0 <= r["ts_recv"] <= r1:
                        k = (r["symbol"], r["publisher_id"])
                        counts[k] = counts.get(k, 0) + 1
                rows = [[k[0], k[1], v] for k, v in sorted(counts.items())]
                return 200, _page(
                    _result([("symbol", "SYMBOL"), ("publisher_id", "SHORT"), ("n", "LONG")], rows), limit
                )
            m = re.fullmatch(r"SELECT (.+) FROM (\w+) WHERE table_name = '(\w+)' AND file_key = '(\w+)' AND "
                             r"filter_key = '(\w+)' ORDER BY ts, symbol", s)  # fmt: skip
            if m:
                names = [c.strip() for c in m.group(1).split(",")]
                t = self.tables[m.group(2)]
                want = {"table_name": m.group(3), "file_key": m.group(4), "filter_key": m.group(5)}
                hits = [r for r in t.rows if all(r.get(k) == v for k, v in want.items())]
                hits.sort(key=lambda r: (r["ts"], r.get("symbol") is not None, r.get("symbol") or ""))
                rows = [[r.get(c) for c in names] for r in hits]
                return 200, _page(_result([(c, "") for c in names], rows), limit)
            m = re.fullmatch(r"SELECT count\(\) AS n FROM (\w+)", s)
            if m:
                t = self.tables.get(m.group(1))
                if t is None:
                    msg = f"table does not exist [table={m.group(1)}]"
                    raise ValueError(msg)
                return 200, _result([("n", "LONG")], [[len(t.rows)]])
            m = re.fullmatch(r"SELECT symbol, count\(\) AS n FROM (\w+)", s)
            if m:
                counts = pd.Series([r["symbol"] for r in self.tables[m.group(1)].rows]).value_counts()
                return 200, _result(
                    [("symbol", "SYMBOL"), ("n", "LONG")], [[k, int(v)] for k, v in counts.items()]
                )
            m = re.fullmatch(
                r"SELECT count\(\) AS n FROM \(SELECT ([\w, ]+), count\(\) AS c FROM (\w+)\) WHERE c > 1", s
            )
            if m:
                keys = [k.strip() for k in m.group(1).split(",")]
                frame = self.tables[m.group(2)].frame()
                return 200, _result([("n", "LONG")], [[int((frame.groupby(keys).size() > 1).sum())]])
            m = re.fullmatch(r"DROP TABLE (?:IF EXISTS )?(\w+);?", s)
            if m:
                self.tables.pop(m.group(1), None)
                return 200, {"ddl": "OK"}
            m = re.fullmatch(r"SELECT (.+?) FROM (\w+)(?: WHERE (.+?))?(?: ORDER BY ([\w, ]+))?", s)
            if m and m.group(2) in self.tables:
                return 200, _page(_select_plain(self, *m.groups()), limit)
        msg = f"the fake does not know this statement: {s[:80]}"
        raise ValueError(msg)


def _select_plain(
    self: FakeQuestDB, items: str, table: str, where: str | None, order: str | None
) -> dict[str, Any]:
    """``SELECT col | cast(col AS LONG) [AS alias], ... FROM t [WHERE c = v AND c IS NULL ...] [ORDER BY ...]``."""
    t = self.tables[table]
    types = dict(t.columns)
    rows = list(t.rows)
    for cond in where.split(" AND ") if where else []:
        if cm := re.fullmatch(r"(\w+) IS NULL", cond):
            rows = [r for r in rows if r.get(cm[1]) is None]
        elif cm := re.fullmatch(r"(\w+) = (-?\d+|'[^']*')", cond):
            v: Any = cm[2][1:-1] if cm[2].startswith("'") else int(cm[2])
            rows = [r for r in rows if r.get(cm[1]) == v]
        else:
            msg = f"the fake does not know the condition {cond!r}"
            raise ValueError(msg)
    if order:
        keys = [k.strip() for k in order.split(",")]
        rows.sort(
            key=lambda r: tuple((r.get(k) is not None, r.get(k) if r.get(k) is not None else 0) for k in keys)
        )
    cols, getters = [], []
    for item in items.split(", "):
        cm = re.fullmatch(r"(?:cast\((\w+) AS LONG\)|(\w+))(?: AS (\w+))?", item)
        if cm is None or (cm[1] or cm[2]) not in types:
            msg = f"the fake does not know the select item {item!r}"
            raise ValueError(msg)
        col = cm[1] or cm[2]
        cols.append((cm[3] or col, "LONG" if cm[1] else types[col]))
        getters.append(col)
    return _result(cols, [[r.get(c) for c in getters] for r in rows])


def _result(cols: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "query": "",
        "columns": [{"name": n, "type": t} for n, t in cols],
        "dataset": rows,
        "count": len(rows),
    }


def _page(res: dict[str, Any], limit: str | None) -> dict[str, Any]:
    if limit:
        lo, hi = (int(v) for v in limit.split(","))
        res["dataset"] = res["dataset"][lo:hi]
        res["count"] = len(res["dataset"])
    return res


# -- the oracle ------------------------------------------------------------------------------------
def expected_rows(path: Path, symbols: set[str] | None = None) -> pd.DataFrame:
    """The rows a load of ``path`` must leave, from databento's decoder (day_seq by groupby)."""
    store = dbn_store(path)
    kwargs = {"schema": "mbo"} if store.schema is None else {}
    df = store.to_df(map_symbols=True, price_type="fixed", pretty_ts=False, **kwargs).reset_index()
    rec = np.asarray(store.to_ndarray(**kwargs))
    out = pd.DataFrame({
        "ts_event": rec["ts_event"].astype(np.int64), "symbol": df["symbol"].astype(str).to_numpy(),
        "instrument_id": rec["instrument_id"].view(np.int32).astype(np.int64),
        "publisher_id": rec["publisher_id"].astype(np.int64), "order_id": rec["order_id"].view(np.int64),
        "price_raw": rec["price"].astype(np.int64), "size": rec["size"].view(np.int32).astype(np.int64),
        "flags": rec["flags"].astype(np.int64), "channel_id": rec["channel_id"].astype(np.int64),
        "action": rec["action"].astype("U1"), "side": rec["side"].astype("U1"),
        "ts_recv": rec["ts_recv"].astype(np.int64), "ts_in_delta": rec["ts_in_delta"].astype(np.int64),
        "sequence": rec["sequence"].astype(np.int64),
    })  # fmt: skip
    undef = rec["price"] == 2**63 - 1
    out["price"] = np.where(undef, np.nan, rec["price"] / 1e9)
    if symbols is not None:
        out = out[out["symbol"].isin(symbols)].reset_index(drop=True)
    out["day_seq"] = (
        out.groupby([out["symbol"], out["ts_recv"] // NS_PER_DAY], sort=False).cumcount().astype(np.int64)
    )
    return out[list(CANONICAL)]


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Every column equal, as a set of rows keyed by the dedup keys (order-free)."""
    assert len(got) == len(want)
    g = got[list(CANONICAL)].sort_values(KEY, kind="stable").reset_index(drop=True)
    w = want[list(CANONICAL)].sort_values(KEY, kind="stable").reset_index(drop=True)
    for c in CANONICAL:
        if c == "price":
            gv = g[c].astype(float).to_numpy()
            wv = w[c].to_numpy()
            np.testing.assert_array_equal(np.isnan(gv), np.isnan(wv))
            np.testing.assert_array_equal(gv[~np.isnan(gv)], wv[~np.isnan(wv)])
        elif c in ("symbol", "action", "side"):
            assert g[c].astype(str).tolist() == w[c].astype(str).tolist(), c
        else:
            np.testing.assert_array_equal(g[c].astype(np.int64).to_numpy(), w[c].to_numpy(), err_msg=c)


