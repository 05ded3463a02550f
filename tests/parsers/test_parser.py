"""json, regex, logfmt and ltsv parsers: Fluent Bit's unit-test vectors and edge cases."""

from __future__ import annotations

import logging
import random

import pytest

from rillet.parsers.decoders import mysql_unquote, unescape, unescape_utf8
from rillet.parsers.parser import RISKY_MAX_CHARS, to_float, to_hex, to_integer
from tests.parsers.helpers import make_parser

NS = 1_000_000_000
T_2022 = 1667217601 * NS + 123_000_000  # 2022-10-31T12:00:01.123
REGEX = r"(?<str>[a-z]+) (?<int>\d+) (?<double>\d+\.\d+) (?<bool>true)"


# --- tests/internal/parser_regex.c ---------------------------------------------------------

def test_regex_basic() -> None:
    p = make_parser(format="regex", regex=REGEX)
    assert p.parse("text 100 1.23 true") == (
        {"str": "text", "int": "100", "double": "1.23", "bool": "true"}, None)


@pytest.mark.parametrize("keep", ["off", "on"])
def test_regex_time_key_and_keep(keep: str) -> None:
    p = make_parser(format="regex", regex=REGEX + r" (?<time>.+)", time_key="time",
                    time_format="%Y-%m-%dT%H:%M:%S.%L", time_keep=keep, time_strict="off")
    record, ns = p.parse("text 100 1.23 true 2022-10-31T12:00:01.123")  # type: ignore[misc]
    assert ns == T_2022
    assert ("time" in record) is (keep == "on")


def test_regex_types_hex() -> None:
    p = make_parser(format="regex", regex=REGEX, types="int:hex")
    assert p.parse("text 100 1.23 true") == (
        {"str": "text", "int": 256, "double": "1.23", "bool": "true"}, None)


def test_regex_decode_field_json() -> None:
    p = make_parser(format="regex", regex=r"(?<json_str>.+)", decode_field="json json_str")
    line = '{"str":"text", "int":100, "double":1.23, "bool":true}'
    assert p.parse(line) == ({"json_str": line, "str": "text", "int": 100, "double": 1.23,
                              "bool": True}, None)


def test_regex_time_zone_option() -> None:
    p = make_parser(format="regex", regex=r"^(?<time>.*)$", time_key="time",
                    time_format="%m/%d/%Y %H:%M:%S", time_zone="America/New_York")
    assert p.parse("07/17/2017 16:17:03") == ({}, 1500322623 * NS)


# --- tests/internal/parser_logfmt.c --------------------------------------------------------

LOGFMT = 'str="text" int=100 double=1.23 bool=true'


def test_logfmt_basic_time_and_types() -> None:
    assert make_parser(format="logfmt").parse(LOGFMT) == (
        {"str": "text", "int": "100", "double": "1.23", "bool": "true"}, None)
    p = make_parser(format="logfmt", time_key="time", time_format="%Y-%m-%dT%H:%M:%S.%L")
    assert p.parse(LOGFMT + " time=2022-10-31T12:00:01.123") == (
        {"str": "text", "int": "100", "double": "1.23", "bool": "true"}, T_2022)
    p = make_parser(format="logfmt", time_key="time", time_format="%Y-%m-%dT%H:%M:%S.%L",
                    time_keep="on")
    assert p.parse(LOGFMT + " time=2022-10-31T12:00:01.123")[0]["time"] == \
        "2022-10-31T12:00:01.123"  # type: ignore[index]
    p = make_parser(format="logfmt", types="int:hex")
    assert p.parse(LOGFMT)[0]["int"] == 256  # type: ignore[index]


def test_logfmt_edges() -> None:
    p = make_parser(format="logfmt")
    assert p.parse('a="x \\"q\\" \\u00e9" b==c') == (
        {"a": 'x "q" é', "b": True, "c": True}, None)
    assert p.parse("a=1\nb=2") == ({"a": "1"}, None)  # the first line only
    assert p.parse("a=1 \nb=2") == ({"a": "1", "b": "2"}, None)
    assert p.parse('  "" = ') is None  # nothing but garbage: no record
    assert p.parse('a="unterminated') == ({"a": "unterminated"}, None)
    assert make_parser(format="logfmt", logfmt_no_bare_keys="on").parse("a=1 bare") is None
    assert make_parser(format="logfmt", logfmt_no_bare_keys="on").parse("a=1 b=") == (
        {"a": "1", "b": True}, None)
    # With Types, values are taken raw (Fluent Bit's typecast path): bare keys are "".
    assert make_parser(format="logfmt", types="n:integer").parse("n=12abc x") == (
        {"n": 12, "x": ""}, None)


def test_logfmt_bad_time_fails_the_line() -> None:
    p = make_parser(format="logfmt", time_key="time", time_format="%Y")
    assert p.parse("a=1 time=never") is None
    assert p.time_errors == 1


# --- tests/internal/parser.c (ltsv) --------------------------------------------------------

@pytest.mark.parametrize(("line", "record"), [
    ("a:b\tc:d", {"a": "b", "c": "d"}),
    ("a:very long string with whitespace\tc:d", {"a": "very long string with whitespace",
                                                  "c": "d"}),
    ("a:b:c\tc:d", {"a": "b:c", "c": "d"}),
    ("a:1\tb:2\nc:3", {"a": "1", "b": "2"}),
    ("a:1\tbad label:2\tc:3", {"a": "1"}),
    (":x\tb:", {"b": ""}),
])
def test_ltsv(line: str, record: dict[str, str]) -> None:
    assert make_parser(format="ltsv").parse(line) == (record, None)


def test_ltsv_time_and_types() -> None:
    p = make_parser(format="ltsv", time_key="t", time_format="%Y-%m-%dT%H:%M:%S.%L",
                    types="n:integer ok:bool")
    assert p.parse("t:2022-10-31T12:00:01.123\tn:42\tok:TRUE") == (
        {"n": 42, "ok": True}, T_2022)
    assert p.parse("t:bad\tn:1") is None
    assert make_parser(format="ltsv").parse("no separator here") is None


# --- json (tests/internal/parser_json.c) ----------------------------------------------------

JSON_LINE = '{"str":"text", "int":100, "double":1.23, "bool":true}'
JSON_FIELDS = {"str": "text", "int": 100, "double": 1.23, "bool": True}


def test_json_vectors() -> None:
    assert make_parser(format="json").parse(JSON_LINE) == (JSON_FIELDS, None)
    timed = JSON_LINE[:-1] + ', "time":"2022-10-31T12:00:01.123"}'
    p = make_parser(format="json", time_key="time", time_format="%Y-%m-%dT%H:%M:%S.%L")
    assert p.parse(timed) == (JSON_FIELDS, T_2022)
    p = make_parser(format="json", time_key="time", time_format="%Y-%m-%dT%H:%M:%S.%L",
                    time_keep="on")
    assert p.parse(timed) == ({**JSON_FIELDS, "time": "2022-10-31T12:00:01.123"}, T_2022)
    assert make_parser(format="json", types="int:hex").parse(JSON_LINE) == (JSON_FIELDS, None)
    nested = '{"json_str":"{\\"str\\":\\"text\\", \\"int\\":100, \\"double\\":1.23, ' \
             '\\"bool\\":true}"}'
    record, _ = make_parser(format="json", decode_field="json json_str").parse(nested)  # type: ignore[misc]
    assert {k: record[k] for k in JSON_FIELDS} == JSON_FIELDS


@pytest.mark.parametrize("line", ["[1,2]", '"text"', "12", "", "{", '{"a":1} {"b":2}',
                                  "not json", "null", b"\xff\xfe", '{"a":1}x'])
def test_json_parser_needs_exactly_one_object(line: str | bytes) -> None:
    assert make_parser(format="json").parse(line) is None


def test_json_time_handling() -> None:
    p = make_parser(format="json", time_key="ts", time_format="%s")
    assert p.parse('{"ts":"1500322623","a":1}') == ({"a": 1}, 1500322623 * NS)
    assert p.parse('{"ts":1500322623,"a":1}') == ({"ts": 1500322623, "a": 1}, None)
    assert p.parse('{"a":1}') == ({"a": 1}, None)
    # Time_Format without Time_Key: the key is "time".
    q = make_parser(format="json", time_format="%s", time_keep="on")
    assert q.parse('{"time":"1500322623"}') == ({"time": "1500322623"}, 1500322623 * NS)
    assert q.time_key == "time"
    # Types do not apply to JSON (Fluent Bit's json parser ignores them).
    r = make_parser(format="json", types="a:integer")
    assert r.parse('{"a":"5"}') == ({"a": "5"}, None)


def test_json_invalid_utf8_inside_strings_is_kept() -> None:
    assert make_parser(format="json").parse(b'{"a":"x\xffy"}') == ({"a": "x\ufffdy"}, None)


def test_json_decoders_run_before_the_time() -> None:
    p = make_parser(format="json", time_key="time", time_format="%s",
                    decode_field_as="json log")
    line = '{"log":"{\\"k\\":1}","time":"5"}'
    assert p.parse(line) == ({"log": {"k": 1}}, 5 * NS)


# --- regex details -------------------------------------------------------------------------

def test_regex_empty_and_unmatched_groups() -> None:
    rx = r"^(?<a>x*)-(?<b>y)?(?<c>z*)$"
    assert make_parser(format="regex", regex=rx).parse("-") == ({}, None)
    assert make_parser(format="regex", regex=rx, skip_empty_values="off").parse("-") == (
        {"a": "", "b": "", "c": ""}, None)


def test_regex_without_named_groups_never_matches() -> None:
    assert make_parser(format="regex", regex=r"^(\w+)$").parse("abc") is None


def test_regex_searches_anywhere_and_unnamed_groups_are_ignored() -> None:
    p = make_parser(format="regex", regex=r"id=(?<id>\h+)( (x))?")
    assert p.parse("prefix id=BEEF x") == ({"id": "BEEF"}, None)
    assert p.parse("nothing") is None


def test_regex_time_failure_drops_the_field_and_warns_once(
        caplog: pytest.LogCaptureFixture) -> None:
    p = make_parser(name="rx", format="regex", regex=r"^(?<time>\S+) (?<msg>.*)$",
                    time_key="time", time_format="%Y-%m-%d", time_keep="on")
    with caplog.at_level(logging.WARNING, logger="rillet"):
        assert p.parse("bad hello") == ({"msg": "hello"}, None)
        assert p.parse("worse hello") == ({"msg": "hello"}, None)
        assert p.parse("2017-07-17 ok") == ({"time": "2017-07-17", "msg": "ok"},
                                            1500249600 * NS)
    assert [r.getMessage() for r in caplog.records] == [
        "[parser:rx] invalid time format %Y-%m-%d for 'bad'"]


def test_risky_regex_gets_a_length_budget(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rillet"):
        p = make_parser(name="evil", format="regex", regex=r"^(?<a>(\w+\s?)*)$")
    assert "may backtrack catastrophically" in caplog.text
    assert p.parse("ok words") == ({"a": "ok words"}, None)
    long_line = "a" * (RISKY_MAX_CHARS + 1) + "!"
    assert p.parse(long_line) is None
    assert p.skipped_long == 1


# --- Types: C conversions ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("12abc", 12), ("  -7", -7), ("abc", 0), ("+3.9", 3), ("", 0),
    ("99999999999999999999", (1 << 63) - 1)])
def test_integer_is_atoll(text: str, value: int) -> None:
    assert to_integer(text) == value


@pytest.mark.parametrize(("text", "value"), [
    ("100", 256), ("0x1F", 31), ("ffzz", 255), ("zz", 0), ("-1", (1 << 64) - 1), ("0x", 0)])
def test_hex_is_strtoull(text: str, value: int) -> None:
    assert to_hex(text) == value


@pytest.mark.parametrize(("text", "value"), [
    ("1.5", 1.5), ("1e3x", 1000.0), (".5", 0.5), ("abc", 0.0), (" -2.", -2.0)])
def test_float_is_atof(text: str, value: float) -> None:
    assert to_float(text) == value


def test_bool_cast_and_cast_error(caplog: pytest.LogCaptureFixture) -> None:
    p = make_parser(format="regex", regex=r"(?<a>\S+) (?<b>\S+) (?<c>\S+)",
                    types="a:bool b:bool c:bool")
    with caplog.at_level(logging.WARNING, logger="rillet"):
        assert p.parse("TRUEly false maybe") == ({"a": True, "b": False, "c": "maybe"}, None)
    assert "key=c cast error. save as string." in caplog.text


# --- decoders ------------------------------------------------------------------------------

def test_escaped_decoders() -> None:
    # Fluent Bit's unescape_string drops a backslash and reads the next character afresh, so
    # an escaped backslash does not protect what follows it.
    assert unescape(r"a\nb\tc\"d\\e") == 'a\nb\tc"de'
    assert unescape(r"x\qy") == "xqy"
    # escaped_utf8 keeps \" \\ \/ \' as written and decodes the rest.
    assert unescape_utf8(r"a\nb\u00e9\x41\101\"q\\") == 'a\nbéAA\\"q\\\\'
    assert unescape_utf8(r"\ud800") == "\ufffd"
    assert mysql_unquote("'it''s'") == "it's"
    assert mysql_unquote("plain 'x'") == "plain 'x'"


def test_decode_field_as_chain_try_next_and_do_next() -> None:
    p = make_parser(format="json", decode_field_as=["json log try_next", "escaped log"])
    assert p.parse('{"log":"{\\"a\\":1}"}') == ({"log": {"a": 1}}, None)
    assert p.parse('{"log":"no json\\\\n"}') == ({"log": "no json\n"}, None)
    q = make_parser(format="json", decode_field_as=["escaped_utf8 log do_next", "json log"])
    assert q.parse('{"log":"{\\\\u0022a\\\\u0022:2}"}') == ({"log": {"a": 2}}, None)
    # A failed rule without an action stops the field's rules.
    r = make_parser(format="json", decode_field_as=["json log", "escaped log"])
    assert r.parse('{"log":"x\\\\ty"}') == ({"log": "x\\ty"}, None)


def test_decode_field_merges_keys_at_the_end() -> None:
    p = make_parser(format="json", decode_field="json log")
    assert p.parse('{"log":"{\\"a\\":1,\\"z\\":2}","z":0}') == (
        {"log": '{"a":1,"z":2}', "z": 2, "a": 1}, None)


def test_unknown_decoder_is_a_startup_error() -> None:
    with pytest.raises(ValueError, match="field decoder 'xml' unknown"):
        make_parser(format="json", decode_field="xml log")


# --- never raises --------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "regex", "logfmt", "ltsv"])
def test_garbage_never_raises(fmt: str) -> None:
    extra = {"regex": r"^(?<a>[^ ]*) (?<time>.*)$"} if fmt == "regex" else {}
    p = make_parser(format=fmt, time_key="time", time_format="%d/%b/%Y:%H:%M:%S %z",
                    types="a:integer time:float", decode_field_as="json a", **extra)
    rng = random.Random(4)
    samples: list[str | bytes] = [b"", b"\x00" * 10, b"\xff\xfe\xfd", "\ud800", "x" * 200_000,
                                  '{"time": 1e999}', "a=\\", "a:\x00b", '{"a":"\\ud800"}']
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
                for _ in range(300)]
    for data in samples:
        result = p.parse(data)
        assert result is None or isinstance(result[0], dict)
    assert p.errors == 0
