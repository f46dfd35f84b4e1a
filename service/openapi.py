"""The OpenAPI 3.1 description of every route, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from service.bars import RESOLUTIONS
from service.encoders import FORMATS
from service.resources.page import STATIC_FILES
from service.timeparse import ACCEPTED_FORMS

__all__ = ["build_spec"]

_ERR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request: bad JSON, a missing, unknown or wrong-typed parameter, start after end, bad cursor",
        404: "Unknown symbol (well formed, but the store has no rows for it)",
        406: "The Accept header names no format we can write",
        413: "More rows than the row cap: page with `limit` and `cursor`",
        503: "The store (lake or QuestDB) is unavailable: {title, description} naming the kind of store",
    }
    return {
        str(c): {"description": text[c], "content": {"application/json": {"schema": _ERR}}} for c in codes
    }


def _q(name: str, desc: str, schema: dict[str, Any] | None = None, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": desc,
        "schema": schema or {"type": "string"},
    }


_TS = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, {"type": "string"}]}
_TS_DESC = f"ns since 1970 UTC (integer or digit string) or date-time text. {ACCEPTED_FORMS}"

_DATA_PROPS: dict[str, Any] = {
    "start_ts": {**_TS, "description": "First ts_event (inclusive). " + _TS_DESC},
    "end_ts": {**_TS, "description": "Last ts_event (inclusive)."},
    "symbol": {"type": "string", "default": "NVDA"},
    "limit": {
        "type": "integer",
        "minimum": 1,
        "description": "Page size; the answer's X-Next-Cursor header continues it",
    },
    "cursor": {"type": "string", "description": "X-Next-Cursor of the previous page (same range)"},
    "format": {"type": "string", "enum": list(FORMATS), "default": "json"},
    "tz": {"type": "string", "description": "IANA zone for naive date-time text, e.g. America/New_York"},
}

_DATA_RESPONSES: dict[str, Any] = {
    "200": {
        "description": "Records in (ts_event, ts_recv, sequence) order, streamed. JSON: an array of databento "
        "JSON records; ndjson: one per line; csv/arrow/parquet: the canonical columns.",
        "headers": {
            "X-Row-Count": {"schema": {"type": "integer"}, "description": "Rows in this answer"},
            "X-Next-Cursor": {
                "schema": {"type": "string"},
                "description": "Present when more rows follow this page",
            },
        },
        "content": {
            **{
                ct.split(";")[0]: {"schema": {"type": "string", "format": "binary"}}
                for ct in FORMATS.values()
            },
            "application/json": {
                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/DatabentoMbo"}}
            },
        },
    },
    **_errors(400, 404, 406, 413, 503),
}

_TIME_ANSWER = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/TimeAnswer"}}}}


_FOLD_TEXT = (
    "which reading of a local time a daylight-saving change repeats or skips (PEP 495); "
    "without it such a time is a 400 naming both"
)
_FOLD: dict[str, Any] = {"type": "integer", "enum": [0, 1], "description": _FOLD_TEXT}


def build_spec(version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI document (a plain dict, JSON-ready)."""
    sym = _q("symbol", "Symbol (default NVDA)")
    start = _q("start", "First ts_event, inclusive (default: the symbol's first). " + _TS_DESC, _TS)
    end = _q("end", "Last ts_event, inclusive (default: the symbol's last)", _TS)
    tz = _q("tz", "IANA zone for naive date-time text")
    arrow = {"application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "datapair",
            "version": version,
            "description": "Databento MBO records from a Parquet lake or QuestDB: the seed's /data and /time "
            "contract, a chart API, health. Errors are JSON {title, description}.",
        },
        "paths": {
            "/data": {
                "post": {
                    "summary": "Records of a symbol in a ts_event range (the seed's endpoint)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object", "required": ["start_ts", "end_ts"], "additionalProperties": False, "properties": _DATA_PROPS}}},
                    },
                    "responses": _DATA_RESPONSES,
                },
                "get": {
                    "summary": "Same as POST, parameters in the query string",
                    "parameters": [_q(n, s.get("description", n), s, n in ("start_ts", "end_ts")) for n, s in _DATA_PROPS.items()],
                    "responses": _DATA_RESPONSES,
                },
            },
            "/time/to_timestamp": {
                m: {
                    "summary": "Date-time text -> ns since 1970 UTC",
                    **(
                        {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["datetime"], "properties": {"datetime": {"type": "string", "description": ACCEPTED_FORMS}, "tz": {"type": "string"}, "fold": _FOLD}}}}}}
                        if m == "post"
                        else {"parameters": [_q("datetime", ACCEPTED_FORMS, required=True), tz, _q("fold", _FOLD_TEXT, _FOLD)]}
                    ),
                    "responses": {"200": {"description": "The timestamp", **_TIME_ANSWER}, **_errors(400)},
                }
                for m in ("post", "get")
            },
            "/time/to_datetime": {
                m: {
                    "summary": "ns since 1970 UTC -> date-time text (UTC, and local/ISO with tz)",
                    **(
                        {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["timestamp_ns"], "properties": {"timestamp_ns": _TS, "tz": {"type": "string"}}}}}}}
                        if m == "post"
                        else {"parameters": [_q("timestamp_ns", "ns since 1970 UTC", _TS, True), tz]}
                    ),
                    "responses": {"200": {"description": "The date-time", **_TIME_ANSWER}, **_errors(400)},
                }
                for m in ("post", "get")
            },
            "/api/mbo/symbols": {"get": {"summary": "Symbols with rows", "responses": {"200": {"description": "{symbols, count}"}, **_errors(400, 503)}}},
            "/api/mbo/range": {"get": {"summary": "First/last ts_event and rows of a symbol", "parameters": [sym], "responses": {"200": {"description": "{symbol, start, end, rows, start_utc, end_utc}"}, **_errors(400, 404, 503)}}},
            "/api/mbo/bars": {
                "get": {
                    "summary": "OHLCV + trade count of trades (action T) per bar; bar ts is its start (ns)",
                    "parameters": [sym, start, end, _q("resolution", "Bar size or auto (by span)", {"type": "string", "enum": ["auto", *RESOLUTIONS]}), tz],
                    "responses": {"200": {"description": "{symbol, resolution, step_ns, start, end, count, bars: [{ts, open, high, low, close, volume, trades, open_raw, ...}]}", "content": {"application/json": {}, **arrow}}, **_errors(400, 404, 503)},
                }
            },
            "/api/mbo/ticks": {
                "get": {
                    "summary": "Records in key order, paged by offset",
                    "parameters": [sym, start, end, _q("limit", "At most 50000 (default 1000)", {"type": "integer", "minimum": 1, "maximum": 50_000}), _q("offset", "Rows to skip", {"type": "integer", "minimum": 0}), tz],
                    "responses": {"200": {"description": "{symbol, start, end, offset, limit, count, has_more, next_offset?, ticks: [...]}; Arrow: X-Has-More, X-Next-Offset headers", "content": {"application/json": {}, **arrow}}, **_errors(400, 404, 503)},
                }
            },
            "/api/mbo/book": {
                "get": {
                    "summary": "The order book of a symbol after every record of that UTC day with ts_recv <= at (levels merged across venues unless publisher)",
                    "parameters": [sym, _q("at", "The instant (required). " + _TS_DESC, _TS, True), _q("depth", "Levels per side, best first (default 10)", {"type": "integer", "minimum": 1, "maximum": 1000}), _q("publisher", "One venue's publisher_id (default: all, merged by price)", {"type": "integer", "minimum": 0, "maximum": 65535}), _q("orders", "List each level's orders in queue order", {"type": "boolean", "default": False}), tz],
                    "responses": {"200": {"description": "{symbol, at, ts_recv (last applied record, null if none), bids: [{price, price_raw, size, count, orders?: [{order_id, size, publisher_id}]}], asks: [...]}; Arrow: one row per level (side, level, price, price_raw, size, count[, orders]), X-Book-At / X-Book-Ts-Recv headers", "content": {"application/json": {}, **arrow}}, **_errors(400, 404, 503)},
                }
            },
            "/health": {"get": {"summary": "Is the store reachable", "responses": {"200": {"description": "{status: ok, store: {kind, rows, ping_ms, ...}}"}, "503": {"description": "{status: unavailable, store: {kind}} (the reason is in the log)"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/": {"get": {"summary": "The chart page (HTML; `?symbol=` picks the first symbol shown)", "parameters": [_q("symbol", "Symbol shown first")], "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}, "304": {"description": "Not modified (ETag)"}}}},
            "/chart": {"get": {"summary": "The chart page, same as /", "parameters": [_q("symbol", "Symbol shown first")], "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}, "304": {"description": "Not modified (ETag)"}}}},
            "/static/{name}": {
                "get": {
                    "summary": "The chart page's CSS and JavaScript",
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": sorted(STATIC_FILES)}}],
                    "responses": {"200": {"description": "The file (ETag, Cache-Control: no-cache)", "content": {"text/css": {}, "text/javascript": {}}}, "304": {"description": "Not modified (ETag)"}, "404": {"description": "No such file", "content": {"application/json": {"schema": _ERR}}}},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["title", "description"], "properties": {"title": {"type": "string"}, "description": {"type": "string"}}},
                "TimeAnswer": {
                    "type": "object",
                    "required": ["timestamp_ns", "datetime_utc"],
                    "properties": {
                        "timestamp_ns": {"type": "integer"},
                        "datetime_utc": {"type": "string", "examples": ["2025-10-22 11:01:00.010235508 UTC"]},
                        "tz": {"type": "string"},
                        "datetime_local": {"type": "string", "examples": ["2025-10-22 07:01:00.010235508 EDT"]},
                        "datetime_iso": {"type": "string", "examples": ["2025-10-22T07:01:00.010235508-04:00"]},
                        "utc_offset_seconds": {"type": "integer"},
                    },
                },
                "DatabentoMbo": {
                    "type": "object",
                    "description": "databento's JSON encoding of an MBO record (64-bit integers as strings)",
                    "properties": {
                        "ts_recv": {"type": "string"},
                        "hd": {"type": "object", "properties": {"ts_event": {"type": "string"}, "rtype": {"type": "integer"}, "publisher_id": {"type": "integer"}, "instrument_id": {"type": "integer"}}},
                        "action": {"type": "string"}, "side": {"type": "string"}, "price": {"type": "string"},
                        "size": {"type": "integer"}, "channel_id": {"type": "integer"}, "order_id": {"type": "string"},
                        "flags": {"type": "integer"}, "ts_in_delta": {"type": "integer"}, "sequence": {"type": "integer"},
                    },
                },
            }
        },
    }  # fmt: skip
