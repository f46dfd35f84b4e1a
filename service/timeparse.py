"""The service's name for :mod:`engine.timeparse` (date-time text <-> ns), kept for its importers.

The parser moved to the engine's shared modules so the command lines (``datapair-book snapshot
--at``) accept exactly the forms ``/time`` accepts without importing the service.
"""

from __future__ import annotations

from engine.timeparse import (
    ACCEPTED_FORMS,
    MAX_TS,
    day_start_ns,
    format_ns,
    parse_datetime,
    parse_timestamp,
    resolve_tz,
    to_datetime_fields,
)

__all__ = [
    "ACCEPTED_FORMS",
    "MAX_TS",
    "day_start_ns",
    "format_ns",
    "parse_datetime",
    "parse_timestamp",
    "resolve_tz",
    "to_datetime_fields",
]
