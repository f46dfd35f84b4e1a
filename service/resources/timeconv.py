"""``/time/to_timestamp`` and ``/time/to_datetime``: the seed's converters, nanosecond exact.

``POST /time/to_timestamp {"datetime": "2025-10-22 11:01:00"}`` ->
``{"timestamp_ns": 1761130860000000000, "datetime_utc": "2025-10-22 11:01:00 UTC"}``;
``POST /time/to_datetime {"timestamp_ns": 1761130860010235508}`` ->
``{"timestamp_ns": ..., "datetime_utc": "2025-10-22 11:01:00.010235508 UTC"}``.
Both take an optional ``tz`` (IANA): naive text is read in it (a local time that a daylight-saving
change repeats or skips needs ``fold``: 0 or 1, PEP 495), and the answer adds ``tz``,
``datetime_local``, ``datetime_iso`` and ``utc_offset_seconds``. ``GET`` with the same names in
the query string works too.
"""

from __future__ import annotations

import falcon

from service.resources.params import Params
from service.timeparse import parse_datetime, parse_timestamp, to_datetime_fields

__all__ = ["ToDatetimeResource", "ToTimestampResource"]


class _TimeResource:
    """POST a JSON body or GET query parameters named :attr:`names`; :meth:`_answer` converts."""

    names: tuple[str, ...] = ()

    def __init__(self, max_body_bytes: int = 65_536) -> None:
        self.max_body_bytes = max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(resp, Params.from_body(req, self.names, self.max_body_bytes))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(resp, Params.from_query(req, self.names))

    def _answer(self, resp: falcon.Response, p: Params) -> None:
        raise NotImplementedError


class ToTimestampResource(_TimeResource):
    """Date-time text -> nanoseconds since 1970 UTC."""

    names = ("datetime", "tz", "fold")

    def _answer(self, resp: falcon.Response, p: Params) -> None:
        tz = p.tz()
        text = p.require("datetime")
        ns = parse_datetime(text, tz, fold=p.integer("fold", 0, 1))  # type: ignore[arg-type]
        resp.media = to_datetime_fields(ns, tz)


class ToDatetimeResource(_TimeResource):
    """Nanoseconds since 1970 UTC -> date-time text."""

    names = ("timestamp_ns", "tz")

    def _answer(self, resp: falcon.Response, p: Params) -> None:
        tz = p.tz()
        ns = parse_timestamp(p.require("timestamp_ns"), field="timestamp_ns")
        resp.media = to_datetime_fields(ns, tz)
