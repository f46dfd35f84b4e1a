"""Date-time text <-> nanoseconds since 1970 UTC, exact to the nanosecond both ways.

Integer arithmetic only: the seconds go through :mod:`datetime` (and :mod:`zoneinfo` for
IANA zones), the fraction stays an integer of nanoseconds, so nothing is rounded through a float.

Accepted text (see :data:`ACCEPTED_FORMS`)::

    2025-10-22                          date only: midnight
    2025-10-22 11:01                    minutes
    2025-10-22 11:01:00.010235508       up to 9 fraction digits
    2025-10-22T11:01:00Z                ISO 8601 with T, Z or an offset (+HH:MM, +HHMM, +HH)
    2025-10-22T07:01:00-04:00
    2025-10-22 11:01:00 UTC             the form this module writes, so answers parse back

Text without an offset is in ``tz`` (an IANA name such as ``America/New_York``), UTC by default.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import QueryError

__all__ = [
    "ACCEPTED_FORMS",
    "MAX_TS",
    "format_ns",
    "parse_datetime",
    "parse_timestamp",
    "resolve_tz",
    "to_datetime_fields",
]

NS = 1_000_000_000
MAX_TS = 2**63 - 1
"""Largest timestamp the stores hold (int64 nanoseconds: 2262-04-11 23:47:16.854775807 UTC)."""

ACCEPTED_FORMS = (
    "YYYY-MM-DD, YYYY-MM-DD HH:MM, YYYY-MM-DD HH:MM:SS[.fffffffff] (1 to 9 fraction digits), "
    "the same with 'T' instead of the space, optionally followed by 'Z', ' UTC' or an offset "
    "(+HH:MM, +HHMM, +HH); naive text is in `tz` (IANA name, default UTC). Timestamps are integers "
    f"of nanoseconds since 1970-01-01 UTC, 0 to {MAX_TS}."
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TEXT = re.compile(
    r"""^\s*
    (?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})
    (?:[T\ t]
        (?P<h>\d{2}):(?P<mi>\d{2})
        (?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?
    )?
    \s*
    (?P<zone>[Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?
    \s*$""",
    re.VERBOSE,
)


def resolve_tz(name: str | None) -> ZoneInfo | None:
    """An IANA zone by name, or None for UTC; :class:`QueryError` for an unknown name."""
    if name is None or name == "":
        return None
    if not isinstance(name, str) or len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name):
        msg = f"`tz` must be an IANA time zone name such as America/New_York, got {name!r}"
        raise QueryError(msg)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a folder of the zone database
        msg = f"`tz` {name!r} is not a known IANA time zone (e.g. America/New_York, Europe/London, UTC)"
        raise QueryError(msg) from exc


def _bad_text(text: object, why: str, field: str) -> QueryError:
    return QueryError(f"`{field}` {text!r} {why}. Accepted forms: {ACCEPTED_FORMS}")


def parse_datetime(
    text: str, tz: str | None = None, *, field: str = "datetime", fold: int | None = None
) -> int:
    """Parse date-time text into nanoseconds since 1970 UTC.

    Parameters
    ----------
    text : str
        One of :data:`ACCEPTED_FORMS`.
    tz : str, optional
        IANA zone for text without an offset (default UTC).
    field : str
        Name used in error messages.
    fold : {0, 1}, optional
        Which of two readings a local time that a daylight-saving change repeats or skips takes
        (PEP 495: 0 the earlier offset, 1 the later). Without it such a time is refused, and the
        message names both candidates.

    Raises
    ------
    QueryError
        Unparseable text, impossible dates, a skipped local time, or a result outside
        ``0..MAX_TS``; the message lists the accepted forms.
    """
    if not isinstance(text, str):
        raise _bad_text(text, "is not a string", field)
    m = _TEXT.match(text)
    if m is None:
        raise _bad_text(text, "is not a date-time we can read", field)
    g = m.groupdict()
    try:
        naive = datetime(
            int(g["y"]), int(g["mo"]), int(g["d"]),
            int(g["h"] or 0), int(g["mi"] or 0), int(g["s"] or 0),
        )  # fmt: skip
    except ValueError as exc:
        raise _bad_text(text, f"is not a valid date-time ({exc})", field) from exc
    frac = int((g["f"] or "").ljust(9, "0") or 0)
    zone = g["zone"]
    if zone is None:
        zi = resolve_tz(tz)
        if zi is None:
            aware = naive.replace(tzinfo=UTC)
        else:
            aware = _local(naive, zi, text, tz or "", field, fold, frac)
    elif zone in ("Z", "z", "UTC", "GMT"):
        aware = naive.replace(tzinfo=UTC)
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        hh, mm = int(digits[:2]), int(digits[2:4] or 0)
        if hh > 23 or mm > 59:
            raise _bad_text(text, "has an offset out of range", field)
        try:
            aware = (naive - sign * timedelta(hours=hh, minutes=mm)).replace(tzinfo=UTC)
        except OverflowError as exc:
            raise _bad_text(text, "is out of range", field) from exc
    delta = aware - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    ns = seconds * NS + frac
    if ns < 0:
        raise _bad_text(text, "is before 1970-01-01 00:00:00 UTC", field)
    if ns > MAX_TS:
        raise _bad_text(text, "is after 2262-04-11 23:47:16.854775807 UTC", field)
    return ns


def _local(
    naive: datetime, zi: ZoneInfo, text: str, tz: str, field: str, fold: int | None, frac: int
) -> datetime:
    """``naive`` read in ``zi``; a repeated or skipped local time needs ``fold`` (PEP 495)."""
    try:
        first, second = naive.replace(tzinfo=zi, fold=0), naive.replace(tzinfo=zi, fold=1)
        a, b = first.astimezone(UTC), second.astimezone(UTC)
        exists = first.astimezone(UTC).astimezone(zi).replace(tzinfo=None) == naive
    except OverflowError as exc:
        raise _bad_text(text, "is out of range", field) from exc
    if a == b:
        return first
    if fold is not None:
        return second if fold else first
    why = "is repeated" if exists else "does not exist (skipped)"
    frac_text = f".{frac:09d}" if frac else ""

    def show(local: datetime, when: datetime) -> str:
        return f"{when:%Y-%m-%d %H:%M:%S}{frac_text} UTC (read as {local.tzname()}, fold {local.fold})"

    msg = (
        f"`{field}` {text!r} {why} in {tz} on a daylight-saving change: it could be {show(first, a)} or "
        f'{show(second, b)}; add "fold": 0 or 1, or give an offset (+HH:MM) or nanoseconds'
    )
    raise QueryError(msg)


def parse_timestamp(
    value: object,
    *,
    field: str = "timestamp_ns",
    tz: str | None = None,
    text_ok: bool = False,
    fold: int | None = None,
) -> int:
    """A nanosecond timestamp from JSON or a query string: an integer, or a string of digits.

    With ``text_ok`` other strings are parsed as date-time text (:func:`parse_datetime`).
    Booleans, floats, negative and overflowing values raise :class:`QueryError`.
    """
    forms = f". Accepted forms: {ACCEPTED_FORMS}" if text_ok else ""
    if isinstance(value, bool) or value is None:
        msg = f"`{field}` must be an integer of nanoseconds since 1970 UTC, got {value!r}{forms}"
        raise QueryError(msg)
    if isinstance(value, str):
        s = value.strip()
        if re.fullmatch(r"[+-]?[0-9]{1,30}", s):
            value = int(s)
        elif text_ok:
            return parse_datetime(s, tz, field=field, fold=fold)
        else:
            msg = f"`{field}` must be an integer of nanoseconds since 1970 UTC, got {value!r}{forms}"
            raise QueryError(msg)
    if not isinstance(value, int):
        msg = f"`{field}` must be an integer of nanoseconds since 1970 UTC (not {type(value).__name__} {value!r}){forms}"
        raise QueryError(msg)
    if value < 0:
        msg = f"`{field}` must be nanoseconds since 1970 UTC, 0 or more, got {value}{forms}"
        raise QueryError(msg)
    if value > MAX_TS:
        msg = f"`{field}` {value} overflows: the largest timestamp is {MAX_TS} (2262-04-11 23:47:16.854775807 UTC)"
        raise QueryError(msg)
    return value


def _split(ns: int) -> tuple[datetime, int]:
    seconds, frac = divmod(ns, NS)
    days, rem = divmod(seconds, 86_400)
    return _EPOCH + timedelta(days=days, seconds=rem), frac


def _frac(frac: int) -> str:
    return f".{frac:09d}" if frac else ""


def format_ns(ns: int, zone: ZoneInfo | None = None, *, iso: bool = False) -> str:
    """Text of a nanosecond timestamp.

    ``"2025-10-22 11:01:00.010235508 UTC"`` (no fraction when it is zero), in ``zone`` with its
    abbreviation (``"2025-10-22 07:01:00.010235508 EDT"``), or ISO 8601 with ``iso``
    (``"2025-10-22T07:01:00.010235508-04:00"``, ``Z`` for UTC).
    """
    utc, frac = _split(ns)
    dt = utc if zone is None else utc.astimezone(zone)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S" if iso else "%Y-%m-%d %H:%M:%S") + _frac(frac)
    if iso:
        if zone is None:
            return base + "Z"
        off = dt.strftime("%z")
        return f"{base}{off[:3]}:{off[3:]}"
    return f"{base} {'UTC' if zone is None else dt.tzname()}"


def to_datetime_fields(ns: int, tz: str | None = None) -> dict[str, object]:
    """The ``/time`` answer for a timestamp: the seed's fields, plus local and ISO forms with ``tz``."""
    out: dict[str, object] = {"timestamp_ns": ns, "datetime_utc": format_ns(ns)}
    zone = resolve_tz(tz)
    if zone is not None:
        out["tz"] = tz
        out["datetime_local"] = format_ns(ns, zone)
        out["datetime_iso"] = format_ns(ns, zone, iso=True)
        out["utc_offset_seconds"] = int(_split(ns)[0].astimezone(zone).utcoffset().total_seconds())  # type: ignore[union-attr]
    return out


def day_start_ns(d: date) -> int:
    """Nanoseconds of midnight UTC of a date."""
    return (d - date(1970, 1, 1)).days * 86_400 * NS
