"""service.timeparse: date-time text <-> ns, exact both ways, and its errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import QueryError
from service.timeparse import MAX_TS, format_ns, parse_datetime, parse_timestamp, to_datetime_fields

NS = 1_000_000_000


def test_seed_examples():
    assert parse_datetime("2025-10-22 11:01:00") == 1761130860000000000
    assert to_datetime_fields(1761130860000000000) == {
        "timestamp_ns": 1761130860000000000,
        "datetime_utc": "2025-10-22 11:01:00 UTC",
    }
    assert to_datetime_fields(1761130860010235508) == {
        "timestamp_ns": 1761130860010235508,
        "datetime_utc": "2025-10-22 11:01:00.010235508 UTC",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-10-22", 1761091200 * NS),
        ("2025-10-22 11:01", 1761130860 * NS),
        ("2025-10-22T11:01:00Z", 1761130860 * NS),
        ("2025-10-22T11:01:00.1Z", 1761130860 * NS + 100_000_000),
        ("2025-10-22 11:01:00.000000001", 1761130860 * NS + 1),
        ("2025-10-22 11:01:00.123456789 UTC", 1761130860 * NS + 123456789),
        ("2025-10-22T07:01:00.010235508-04:00", 1761130860010235508),
        ("2025-10-22T16:31:00.010235508+0530", 1761130860010235508),
        ("2025-10-22T13:01:00+02", 1761130860 * NS),
        ("1970-01-01", 0),
        ("1970-01-01 00:00:00.000000001", 1),
        ("2262-04-11 23:47:16.854775807", MAX_TS),
    ],
)
def test_accepted_forms(text, expected):
    assert parse_datetime(text) == expected


def test_fraction_digits_are_exact_not_float():
    # 9 digits of every shape keep every digit (a float round trip would lose the last ones)
    for frac in ("999999999", "000000001", "500000000", "123456789", "987654321"):
        ns = parse_datetime(f"2031-05-06 07:08:09.{frac}")
        assert ns % NS == int(frac)
        assert format_ns(ns) == f"2031-05-06 07:08:09.{frac} UTC"


def test_naive_text_in_new_york_across_dst():
    ny = "America/New_York"
    # EDT (UTC-4) before the 2025-11-02 change, EST (UTC-5) after
    assert parse_datetime("2025-10-22 07:01:00", ny) == parse_datetime("2025-10-22 11:01:00")
    assert parse_datetime("2025-11-03 07:01:00", ny) == parse_datetime("2025-11-03 12:01:00")
    # the repeated hour 01:30 on 2025-11-02: refused with both readings, unless fold says which
    with pytest.raises(QueryError, match=r"repeated.*05:30:00 UTC \(read as EDT, fold 0\).*06:30:00 UTC \(read as EST, fold 1\)"):
        parse_datetime("2025-11-02 01:30:00", ny)
    assert parse_datetime("2025-11-02 01:30:00", ny, fold=0) == parse_datetime("2025-11-02 05:30:00")
    assert parse_datetime("2025-11-02 01:30:00", ny, fold=1) == parse_datetime("2025-11-02 06:30:00")
    # 02:30 on 2025-03-09 does not exist in New York: both readings named, fold picks (PEP 495)
    with pytest.raises(QueryError, match=r"does not exist.*07:30:00.500000000 UTC \(read as EST.*06:30:00.500000000 UTC \(read as EDT"):
        parse_datetime("2025-03-09 02:30:00.5", ny)
    assert parse_datetime("2025-03-09 02:30:00", ny, fold=0) == parse_datetime("2025-03-09 07:30:00")
    assert parse_datetime("2025-03-09 02:30:00", ny, fold=1) == parse_datetime("2025-03-09 06:30:00")
    # an explicit offset wins over tz
    assert parse_datetime("2025-10-22T11:01:00Z", ny) == parse_datetime("2025-10-22 11:01:00")


def test_local_and_iso_fields():
    out = to_datetime_fields(1761130860010235508, "America/New_York")
    assert out["datetime_utc"] == "2025-10-22 11:01:00.010235508 UTC"
    assert out["datetime_local"] == "2025-10-22 07:01:00.010235508 EDT"
    assert out["datetime_iso"] == "2025-10-22T07:01:00.010235508-04:00"
    assert out["utc_offset_seconds"] == -4 * 3600
    winter = to_datetime_fields(parse_datetime("2025-12-01 12:00:00"), "America/New_York")
    assert winter["datetime_local"] == "2025-12-01 07:00:00 EST"
    assert winter["datetime_iso"] == "2025-12-01T07:00:00-05:00"


def test_epoch_and_far_future():
    assert format_ns(0) == "1970-01-01 00:00:00 UTC"
    assert format_ns(MAX_TS) == "2262-04-11 23:47:16.854775807 UTC"
    assert format_ns(MAX_TS, iso=True) == "2262-04-11T23:47:16.854775807Z"
    assert parse_datetime(format_ns(MAX_TS)) == MAX_TS


@pytest.mark.parametrize(
    "text",
    [
        "garbage", "", "2025-13-01", "2025-02-30", "2025-10-22 25:00", "2025-10-22 11:01:00.1234567891",
        "1969-12-31 23:59:59.999999999", "2262-04-11 23:47:16.854775808", "9999-12-31T23:59:59-01:00",
        "2025-10-22T11:01:00+25:00", "22/10/2025",
    ],
)  # fmt: skip
def test_bad_text_names_the_accepted_forms(text):
    with pytest.raises(QueryError) as ei:
        parse_datetime(text)
    assert "Accepted forms" in str(ei.value)
    assert repr(text) in str(ei.value)


def test_unknown_zone():
    with pytest.raises(QueryError, match="IANA"):
        parse_datetime("2025-10-22", "Mars/Olympus_Mons")
    with pytest.raises(QueryError, match="IANA"):
        to_datetime_fields(0, "../etc/passwd")


@pytest.mark.parametrize("value", [-1, 2**63, 10**30, 1.5, 1e18, True, None, "12a", [], {}])
def test_bad_timestamps(value):
    with pytest.raises(QueryError):
        parse_timestamp(value)


def test_digit_strings_and_text_timestamps():
    assert parse_timestamp("1761130860010235508") == 1761130860010235508
    assert parse_timestamp(0) == 0
    assert parse_timestamp(MAX_TS) == MAX_TS
    assert parse_timestamp("2025-10-22 07:01", tz="America/New_York", text_ok=True) == 1761130860 * NS
    with pytest.raises(QueryError):
        parse_timestamp("2025-10-22")  # text only where text_ok


@given(st.integers(min_value=0, max_value=MAX_TS))
def test_round_trip_every_timestamp(ns):
    assert parse_datetime(format_ns(ns)) == ns
    assert parse_datetime(format_ns(ns, iso=True)) == ns
    text = to_datetime_fields(ns, "America/New_York")
    assert parse_datetime(str(text["datetime_iso"])) == ns


@given(st.integers(min_value=0, max_value=MAX_TS))
def test_seconds_agree_with_datetime(ns):
    # the whole-second part matches Python's own conversion
    secs = ns // NS
    expected = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert format_ns(ns).startswith(expected)
