"""Fluent Bit's time formats: the vectors of tests/internal/parser.c and the dialect's edges."""

from __future__ import annotations

import calendar
import logging
import time
from pathlib import Path

import pytest

from rillet.config.loader import load_config
from rillet.parsers import timefmt
from rillet.parsers.definitions import validate
from rillet.parsers.registry import ParserRegistry
from rillet.parsers.timefmt import compile_format, parse_offset, rfc3339_ns
from tests.shared_data import CONFORMANCE

SHARED = CONFORMANCE
DATA = SHARED / "internal" / "data" / "parser"
NS = 1_000_000_000

# tests/internal/parser.c time_entries: parser, text, epoch, fraction, fixed UTC offset.
TIME_ENTRIES = [
    ("no_year", "Feb 16 04:06:58", 1487239618, 0, -21600),
    ("no_year_N", "Feb 16 04:06:58.1234", 1487239618, 123400000, -21600),
    ("no_year_NC", "Feb 16 04:06:58,1234", 1487239618, 123400000, -21600),
    ("no_year_TZ", "Feb 16 04:06:58 -0600", 1487239618, 0, 0),
    ("no_year_N_TZ", "Feb 16 04:06:58.1234 -0600", 1487239618, 123400000, 0),
    ("no_year_NC_TZ", "Feb 16 04:06:58,1234 -0600", 1487239618, 123400000, 0),
    ("generic_TZ", "07/17/2017 20:17:03 +0000", 1500322623, 0, 0),
    ("generic_TZ", "07/18/2017 01:47:03 +0530", 1500322623, 0, 0),
    ("generic_TZ", "07/18/2017 05:17:03 +0900", 1500322623, 0, 0),
    ("generic_TZ", "07/17/2017 22:17:03 +0200", 1500322623, 0, 0),
    ("generic_N_TZ", "07/17/2017 22:17:03.1 +0200", 1500322623, 100000000, 0),
    ("generic_NC_TZ", "07/17/2017 22:17:03,1 +0200", 1500322623, 100000000, 0),
    ("generic_TZ", "07/18/2017 01:47:03 +05:30", 1500322623, 0, 0),
    ("generic_N_TZ", "07/17/2017 22:17:03.1 +02:00", 1500322623, 100000000, 0),
    ("generic_NC_TZ", "07/17/2017 22:17:03,1 +02:00", 1500322623, 100000000, 0),
    ("generic_NL_TZ", "07/17/2017 22:17:03:1 +02:00", 1500322623, 100000000, 0),
    ("generic", "07/18/2017 01:47:03", 1500322623, 0, 19800),
    ("generic", "07/18/2017 05:17:03", 1500322623, 0, 32400),
    ("generic", "07/17/2017 22:17:03", 1500322623, 0, 7200),
    ("generic_N", "07/17/2017 22:17:03.1", 1500322623, 100000000, 7200),
    ("generic_NC", "07/17/2017 22:17:03,1", 1500322623, 100000000, 7200),
    ("default_UTC", "07/17/2017 20:17:03", 1500322623, 0, 0),
    ("default_UTC_Z", "07/17/2017 20:17:03Z", 1500322623, 0, 0),
    ("default_UTC_N_Z", "07/17/2017 20:17:03.1234Z", 1500322623, 123400000, 0),
    ("default_UTC_NC_Z", "07/17/2017 20:17:03,1234Z", 1500322623, 123400000, 0),
    ("apache_error", "Fri Jul 17 20:17:03.1234 2017", 1500322623, 123400000, 0),
]


def _offset_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}{seconds % 3600 // 60:02d}"


def _this_year(epoch: int) -> int:
    """The same wall-clock moment moved to the current year (year-less formats)."""
    t = time.gmtime(epoch)
    year = time.gmtime().tm_year
    return calendar.timegm((year, *t[1:6]))


def _registry(conf: Path, tmp_path: Path, offset: int) -> ParserRegistry:
    text = conf.read_text()
    if offset:
        keep = "    Time_Keep   On"
        text = text.replace(keep, f"{keep}\n    Time_Offset {_offset_text(offset)}")
    copy = tmp_path / conf.name
    copy.write_text(text)
    main = tmp_path / "fluent-bit.conf"
    main.write_text(f"[SERVICE]\n    Parsers_File {copy}\n")
    errors: list[str] = []
    parsers, ml = validate(load_config(str(main)), errors)
    assert errors == []
    return ParserRegistry(parsers, ml)


@pytest.mark.skipif(not DATA.is_dir(), reason="shared/ conformance data not beside the repo")
@pytest.mark.parametrize("kind", ["json", "regex"])
@pytest.mark.parametrize(("name", "text", "epoch", "frac", "offset"), TIME_ENTRIES)
def test_fluent_bit_time_lookup_vectors(tmp_path: Path, kind: str, name: str, text: str,
                                        epoch: int, frac: int, offset: int) -> None:
    registry = _registry(DATA / f"{kind}.conf", tmp_path, offset)
    parser = registry.get(name)
    assert parser is not None
    if kind == "json":
        line = f'{{"key001": 12345, "key002": 0.99, "time": "{text}"}}'
    else:
        line = f"12345 0.99 {text}"
    result = parser.parse(line)
    assert result is not None
    record, ns = result
    expected = epoch if "%Y" in (parser.time_format or "") else _this_year(epoch)
    assert ns == expected * NS + frac
    assert record["time"] == text  # Time_Keep On


@pytest.mark.skipif(not DATA.is_dir(), reason="shared/ conformance data not beside the repo")
def test_mysql_quoted_vectors(tmp_path: Path) -> None:
    parser = _registry(DATA / "regex.conf", tmp_path, 0).get("mysql_quoted_stuff")
    assert parser is not None
    for source, expected in [("plain", "plain"), ("''", ""), ("'333'", "333"),
                             ("'\\n'", "\n"), ("'\\r'", "\r"), ("'\\''", "'"),
                             ("'\\\"'", '"'), ("'\\\\'", "\\"), ("'abc\\nE\\\\'", "abc\nE\\")]:
        result = parser.parse(f"2010-01-01 02:10:22,{source}")
        assert result is not None
        assert result[0]["key001"] == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("+0000", 0), ("+00:00", 0), ("+00:59", 3540), ("-0600", -21600), ("-06:00", -21600),
    ("Z", 0)])
def test_time_offset_values(text: str, expected: int) -> None:
    assert parse_offset(text) == expected


@pytest.mark.parametrize("text", ["0000", "+00:90", "--600", "+1", "abc"])
def test_bad_time_offsets(text: str) -> None:
    with pytest.raises(ValueError):
        parse_offset(text)


def ns(fmt: str, text: str, **kw: object) -> int | None:
    tf = compile_format(fmt, **kw)  # type: ignore[arg-type]
    first = tf(text)[0]
    assert tf(text)[0] == first  # the cached answer is the same
    assert tf.slow(text)[0] == first  # and the cache agrees with the full parse
    return first


BASE = 1500322623  # 2017-07-17T20:17:03Z


@pytest.mark.parametrize(("text", "frac"), [
    ("2017-07-17T20:17:03.123Z", 123_000_000),
    ("2017-07-17T20:17:03.123456Z", 123_456_000),
    ("2017-07-17T20:17:03.123456789Z", 123_456_789),
    ("2017-07-17T20:17:03.1Z", 100_000_000),
    ("2017-07-17T20:17:03.12345678912Z", 123_456_789),  # digits past 9 are ignored
])
def test_fraction_digits(text: str, frac: int) -> None:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%L", "%Y-%m-%dT%H:%M:%S.%LZ", "%Y-%m-%d%n%H:%M:%S.%L"):
        got = ns(fmt, text.replace("T", "\n") if "%n" in fmt else text)
        if fmt.endswith("Z") and len(text) > 30:
            assert got is None  # 9 digits read, then "12Z" does not match "Z"
        else:
            assert got == BASE * NS + frac, fmt


@pytest.mark.parametrize(("zone", "offset"), [
    ("Z", 0), ("+0200", 7200), ("+02:00", 7200), ("+02", 7200), ("-0530", -19800),
    ("UTC", 0), ("GMT", 0), ("UT", 0), ("EST", -18000), ("EDT", -14400), ("PST", -28800),
    ("PDT", -25200), ("CST", -21600), ("MDT", -21600)])
def test_percent_z(zone: str, offset: int) -> None:
    assert ns("%Y-%m-%d %H:%M:%S %z", f"2017-07-17 20:17:03 {zone}") == (BASE - offset) * NS
    assert ns("%Y-%m-%d %H:%M:%S.%L%z", f"2017-07-17 20:17:03.5{zone}") == \
        (BASE - offset) * NS + 500_000_000


@pytest.mark.parametrize(("zone", "offset"), [
    ("CEST", 7200), ("JST", 32400), ("IST", 19800), ("UTC", 0), ("AKST", -32400),
    ("NPT", 20700)])
def test_percent_upper_z_names(zone: str, offset: int) -> None:
    assert ns("%Y-%m-%d %H:%M:%S %Z", f"2017-07-17 20:17:03 {zone}") == (BASE - offset) * NS


def test_zone_in_text_ignores_time_offset_and_offset_applies_without_one() -> None:
    assert ns("%Y-%m-%d %H:%M:%S %z", "2017-07-17 20:17:03 +0000", offset=3600) == BASE * NS
    assert ns("%Y-%m-%d %H:%M:%S", "2017-07-17 21:17:03", offset=3600) == BASE * NS
    # A literal Z in the format means UTC: the offset is not applied (Fluent Bit: %SZ).
    assert ns("%Y-%m-%d %H:%M:%SZ", "2017-07-17 20:17:03Z", offset=3600) == BASE * NS


def test_conversions() -> None:
    assert ns("%s", "1500322623") == BASE * NS
    assert ns("%s.%L", "1500322623.25") == BASE * NS + 250_000_000
    assert ns("%A, %d %B %Y %H:%M:%S", "Monday, 17 July 2017 20:17:03") == BASE * NS
    assert ns("%a %b %e %H:%M:%S %Y", "Mon Jul  7 20:17:03 2017") == (BASE - 10 * 86400) * NS
    assert ns("%d/%m/%y %I:%M:%S %p", "17/07/17 08:17:03 PM") == BASE * NS
    assert ns("%d/%m/%y %I:%M:%S %p", "17/07/17 12:17:03 am") == (BASE - 20 * 3600) * NS
    assert ns("%Y %j %T", "2017 198 20:17:03") == BASE * NS
    assert ns("%F %R:%S", "2017-07-17 20:17:03") == BASE * NS
    assert ns("%D %T", "07/17/17 20:17:03") == BASE * NS
    assert ns("%Y-%m-%d %H:%M:%S", "2017-07-17    20:17:03") == BASE * NS  # spaces: any run
    assert ns("%Y%m%d%H%M%S", "20170717201703") == BASE * NS  # widths from the ranges
    assert ns("%Y-%m-%d %H:%M:%S", "2017-7-17 20:17:3") == (BASE - 3 + 3) * NS
    assert ns("%Y-%m-%d %H:%M:%S", "2017-07-17 20:17:03 and more") == BASE * NS
    assert ns("%y", "69") == calendar.timegm((1968, 12, 31, 0, 0, 0)) * NS  # tm_mday 0
    assert ns("%H:%M:%S %%", "20:17:03 %") is not None


@pytest.mark.parametrize("text", ["", "garbage", "2017-13-17 20:17:03", "2017-07-32 20:17:03",
                                  "2017-07-17 24:17:03", "2017-07-17 20:60:03", "2017-07-17",
                                  "\x00\xff\u2603", "2017-07-17 20:17:x"])
def test_garbage_does_not_parse(text: str) -> None:
    assert ns("%Y-%m-%d %H:%M:%S", text) is None


def test_time_strict_off_keeps_what_was_read() -> None:
    # Fluent Bit: a partial match is a time when Time_Strict is off.
    fmt = "%Y-%m-%d %H:%M:%S.%L"
    assert ns(fmt, "2017-07-17 20:17:03", strict=False) == BASE * NS
    assert ns(fmt, "2017-07-17 20:17:03", strict=True) is None
    assert ns(fmt, "2017-07-17 20:17:03.x") is None
    assert ns(fmt, "2017-07-17 20:17:03.x", strict=False) == BASE * NS
    assert ns(fmt, "2017-07-17 20:1", strict=False) == (BASE - 17 * 60 - 3 + 60) * NS


def test_docker_timestamps_without_fraction_are_accepted() -> None:
    # Docker trims trailing zeros, down to no fraction at all: rillet reads these (Fluent Bit's
    # strptime would not find the '.' and warn; see docs/differences.md).
    tf = compile_format("%Y-%m-%dT%H:%M:%S.%L")
    assert tf("2017-07-17T20:17:03Z")[0] == BASE * NS
    assert tf("2017-07-17T20:17:03")[0] == BASE * NS


def test_year_less_formats_take_this_year_and_today() -> None:
    year = time.gmtime().tm_year
    assert ns("%b %d %H:%M:%S", "Jul 17 20:17:03") == \
        calendar.timegm((year, 7, 17, 20, 17, 3)) * NS
    assert ns("%b %d %H:%M:%S", "  Jul  7 20:17:03") == \
        calendar.timegm((year, 7, 7, 20, 17, 3)) * NS
    today = time.gmtime()
    assert ns("%H:%M:%S", "20:17:03") == calendar.timegm(
        (today.tm_year, today.tm_mon, today.tm_mday, 20, 17, 3)) * NS


def test_iana_time_zone() -> None:
    # tests/internal/parser.c: time_zone_iana and time_zone_iana_australia.
    assert ns("%m/%d/%Y %H:%M:%S", "07/17/2017 16:17:03", zone="America/New_York") == BASE * NS
    assert ns("%m/%d/%Y %H:%M:%S", "01/15/2017 15:00:00", zone="America/New_York") == \
        1484510400 * NS
    assert ns("%m/%d/%Y %H:%M:%S", "01/15/2017 15:00:00", zone="Australia/Sydney") == \
        1484452800 * NS
    assert ns("%m/%d/%Y %H:%M:%S", "07/17/2017 16:17:03", zone="Australia/Sydney") == \
        1500272223 * NS
    with pytest.raises(ValueError, match="unknown time zone"):
        compile_format("%H", zone="America/Not_A_City")


def test_iana_zone_gives_the_missing_year(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2026-01-01T04:30:00Z is still 2025-12-31 in New York (time_zone_missing_year).
    monkeypatch.setattr(timefmt._time, "time", lambda: 1767241800.0)
    assert ns("%m/%d %H:%M:%S", "12/31 23:59:00", zone="America/New_York") == 1767243540 * NS


def test_system_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Stockholm")
    time.tzset()
    try:
        assert ns("%Y-%m-%d %H:%M:%S", "2017-07-17 22:17:03", system_tz=True) == BASE * NS
        assert ns("%Y-%m-%d %H:%M:%S", "2017-01-17 21:17:03", system_tz=True) == \
            calendar.timegm((2017, 1, 17, 20, 17, 3)) * NS
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_unknown_conversion_is_a_startup_error() -> None:
    with pytest.raises(ValueError, match="unknown conversion '%Q'"):
        compile_format("%Y %Q")


@pytest.mark.parametrize(("text", "expected"), [
    ("2019-12-19T17:41:12.70630778Z", 1576777272_706307780),
    ("2019-12-19T17:41:12.706307780Z", 1576777272_706307780),
    ("2019-12-19T17:41:12Z", 1576777272_000000000),
    ("2019-12-19T17:41:12.7Z", 1576777272_700000000),
    ("2019-12-19T18:41:12.7+01:00", 1576777272_700000000),
    ("2019-12-19T16:41:12.7-0100", 1576777272_700000000),
    (b"2019-12-19T17:41:12.5Z", 1576777272_500000000),
    ("2019-12-19T17:41:12", 1576777272_000000000),
])
def test_rfc3339_fast_path(text: str | bytes, expected: int) -> None:
    assert rfc3339_ns(text) == expected


@pytest.mark.parametrize("text", ["", "2019-12-19", "2019-12-19 17:41:12Z", "2019-13-19T17:41:12Z",
                                  "2019-12-19T17:41:12.Z", "2019-12-19T17:41:12.1234567890Z",
                                  "2019-12-19T17:41:12.5Zjunk", b"\xff\xfe", "x" * 40])
def test_rfc3339_rejects(text: str | bytes) -> None:
    assert rfc3339_ns(text) is None


def test_docker_format_uses_the_fast_path_with_fluent_bits_meaning() -> None:
    docker = compile_format("%Y-%m-%dT%H:%M:%S.%L")
    cri = compile_format("%Y-%m-%dT%H:%M:%S.%L%z")
    assert docker._fast and cri._fast
    t = "2019-12-19T18:41:12.5+01:00"
    # Without %z the zone is ignored (Fluent Bit reads nothing after %L); with %z it counts.
    assert docker(t)[0] == (1576777272 + 3600) * NS + 500_000_000
    assert cri(t)[0] == 1576777272 * NS + 500_000_000
    # Text after a valid time is ignored as by strptime: the slow path answers.
    assert docker("2019-12-19T17:41:12.5Z trailing")[0] == 1576777272 * NS + 500_000_000


def test_time_failure_warns_once_per_parser(caplog: pytest.LogCaptureFixture) -> None:
    from tests.parsers.helpers import make_parser

    p = make_parser(format="json", time_key="time", time_format="%Y-%m-%d")
    with caplog.at_level(logging.WARNING, logger="rillet"):
        for _ in range(3):
            result = p.parse('{"time":"not a date","a":1}')
            assert result == ({"time": "not a date", "a": 1}, None)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["[parser:test] invalid time format %Y-%m-%d for 'not a date'"]
    assert p.time_errors == 3


def test_rfc3339_accepts_a_lowercase_zone_letter() -> None:
    # Fluent Bit's own docker test data (kubernetes cases) writes a lowercase 'z'.
    assert timefmt.rfc3339_ns("2019-04-01T17:58:33.598656444z") == 1554141513598656444
