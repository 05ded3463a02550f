"""Shared output encoders against Fluent Bit's own rendering.

Sources of the expected forms (fluent/fluent-bit):
- src/flb_pack.c ``msgpack2json``: floats ``%.1f`` when ``f64 == (double)(long long) f64``, else
  ``%.16g``; maps drop the earlier of two equal keys; ``flb_pack_msgpack_to_json_format`` puts the
  date key first and joins records per format.
- src/flb_utils.c ``flb_utils_write_str`` and tests/internal/utils.c ``test_write_str_*``: the
  escape table (``\\n`` ``\\t`` ``\\"``..., other controls and DEL as ``\\u00xx``), non-ASCII as
  lower-case ``\\uXXXX`` ("你好世界" -> ``\\u4f60\\u597d\\u4e16\\u754c``, "á\\n" ->
  ``\\u00e1\\n``), invalid bytes as private-use U+E0xx; tests/internal/sds.c: "蟹🦀" ->
  ``\\u87f9\\ud83e\\udd80`` (surrogate pairs).
- lib/msgpack-c/src/objectc.c ``msgpack_object_print``: ``nil``, ``true``, ``%f``, strings raw
  between quotes, ``[a, b]``, ``{k=>v, k2=>v2}``.
- plugins/out_stdout/stdout.c: ``[%zd] %s: [[`` + ``%"PRId32".%09lu, `` + metadata + ``], `` +
  body + ``]\\n``, the counter restarting at 0 for every chunk.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import orjson
import pytest

from rillet.engine.chunk import Body
from rillet.outputs import formats
from rillet.outputs.formats import JsonEncoder

T0 = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z
T1 = 1_700_000_001_000_000_000  # a whole second


@pytest.fixture(autouse=True)
def _default_settings() -> Iterator[None]:
    yield
    formats.configure(escape_unicode=True, convert_nan_to_null=False)


# --- numbers ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1.0"),            # integral: "%.1f"
    (-0.0, "-0.0"),
    (1.5, "1.5"),
    (0.1 + 0.2, "0.3"),      # "%.16g" keeps 16 significant digits
    (81768.968, "81768.96799999999"),
    (1e16, "10000000000000000.0"),
    (1e20, "1e+20"),         # beyond long long: not "integral" for Fluent Bit
    (1e-05, "1e-05"),
    (0.0001, "0.0001"),
    (1700000000.1234567, "1700000000.123457"),
    (float("inf"), "inf"),
])
def test_fb_double(value: float, text: str) -> None:
    assert formats.fb_double(value) == text


def test_fb_double_nan_and_convert_nan_to_null() -> None:
    assert formats.fb_double(float("nan")) == "nan"
    formats.configure(convert_nan_to_null=True)
    assert formats.fb_double(float("nan")) == "null"


def test_c_float_is_printf_f() -> None:
    assert formats.c_float(0.5) == "0.500000"
    assert formats.c_float(1700000000.123456789) == "1700000000.123457"
    assert formats.c_float(-2.0) == "-2.000000"


# --- JSON text ----------------------------------------------------------------------------------

def test_fb_json_text_leaves_plain_text_alone() -> None:
    buf = b'{"message":"dummy","n":12345,"ip":"10.0.0.1","t":"00:00:00.5","ok":true}'
    assert formats.fb_json_text(buf) is buf


def test_fb_json_text_rewrites_floats_only_outside_strings() -> None:
    buf = orjson.dumps({"s": "1.5e+20 x:0.30000000000000004,", "a": [0.30000000000000004, 1e20],
                        "m": {"f": 1e16, "g": -1e-05}, "i": -7, "z": 2.0})
    assert formats.fb_json_text(buf) == (
        b'{"s":"1.5e+20 x:0.30000000000000004,","a":[0.3,1e+20],'
        b'"m":{"f":10000000000000000.0,"g":-1e-05},"i":-7,"z":2.0}')


def test_fb_json_text_floats_with_escaped_quotes_in_strings() -> None:
    buf = orjson.dumps({"q": 'say "1.25," please', "v": 81768.968})
    assert formats.fb_json_text(buf) == b'{"q":"say \\"1.25,\\" please","v":81768.96799999999}'


def test_fb_json_text_escapes_unicode_like_flb_utils_write_str() -> None:
    buf = orjson.dumps({"zh": "你好世界", "a": "á\n", "crab": "蟹🦀", "del": "\x7f", "c": "\x01\t"})
    assert formats.fb_json_text(buf) == (
        b'{"zh":"\\u4f60\\u597d\\u4e16\\u754c","a":"\\u00e1\\n",'
        b'"crab":"\\u87f9\\ud83e\\udd80","del":"\\u007f","c":"\\u0001\\t"}')


def test_fb_json_text_invalid_utf8_becomes_private_use_fragments() -> None:
    # tests/internal/utils.c: "\x81\x82abc" -> "\xee\x82\x81\xee\x82\x82abc"
    assert formats.fb_json_text(b'{"k":"\x81\x82abc"}') == b'{"k":"\xee\x82\x81\xee\x82\x82abc"}'


def test_fb_json_text_raw_utf8_when_escape_unicode_is_off() -> None:
    formats.configure(escape_unicode=False)
    buf = orjson.dumps({"zh": "你好", "del": "a\x7fb"})
    assert formats.fb_json_text(buf) == '{"zh":"你好","del":"a\\u007fb"}'.encode()
    assert formats.fb_json_text(b'{"k":"\xff"}') == '{"k":"\ufffd"}'.encode()


def test_render_bodies_mixes_dict_and_serialized_bodies() -> None:
    parts, joined = formats.render_bodies([b'{"a":1}', {"b": 0.5, "c": "é"}, {}])
    assert parts == [b'{"a":1}', b'{"b":0.5,"c":"\\u00e9"}', b"{}"]
    assert joined == b"\n".join(parts)


def test_json_lines_helper() -> None:
    assert formats.json_lines([{"a": 1}, b'{"b":2}']) == b'{"a":1}\n{"b":2}\n'
    assert formats.json_lines([]) == b""


# --- json / json_lines / json_stream ------------------------------------------------------------

BODIES: list[Body] = [b'{"message":"dummy"}',
                      {"n": 1, "f": 0.25, "l": [True, None], "m": {"x": "y"}}]
TIMES = [T0, T1]


def test_json_lines_with_double_date_first() -> None:
    assert JsonEncoder("json_lines").encode(TIMES, BODIES) == (
        b'{"date":1700000000.123457,"message":"dummy"}\n'
        b'{"date":1700000001.0,"n":1,"f":0.25,"l":[true,null],"m":{"x":"y"}}\n')


def test_json_array_and_stream() -> None:
    objects = (b'{"date":1700000000.123457,"message":"dummy"}',
               b'{"date":1700000001.0,"n":1,"f":0.25,"l":[true,null],"m":{"x":"y"}}')
    assert JsonEncoder("json").encode(TIMES, BODIES) == b"[" + b",".join(objects) + b"]"
    assert JsonEncoder("json_stream").encode(TIMES, BODIES) == b"".join(objects)


def test_json_lines_without_date_is_each_record_json() -> None:
    enc = JsonEncoder("json_lines", date_key=None)
    assert enc.encode(TIMES, BODIES) == (
        b'{"message":"dummy"}\n{"n":1,"f":0.25,"l":[true,null],"m":{"x":"y"}}\n')
    assert JsonEncoder("json", None).encode(TIMES, BODIES) == (
        b'[{"message":"dummy"},{"n":1,"f":0.25,"l":[true,null],"m":{"x":"y"}}]')


@pytest.mark.parametrize(("fmt", "first", "second"), [
    ("epoch", b"1700000000", b"1700000001"),
    ("epoch_ms", b"1700000000123", b"1700000001000"),
    ("iso8601", b'"2023-11-14T22:13:20.123456Z"', b'"2023-11-14T22:13:21.000000Z"'),
    ("java_sql_timestamp", b'"2023-11-14 22:13:20.123456"', b'"2023-11-14 22:13:21.000000"'),
])
def test_date_formats(fmt: str, first: bytes, second: bytes) -> None:
    out = JsonEncoder("json_lines", "ts", fmt).encode(TIMES, [{"a": 1}, b'{"a":2}'])
    assert out == b'{"ts":' + first + b',"a":1}\n{"ts":' + second + b',"a":2}\n'


def test_double_date_that_rounds_to_a_whole_second_prints_dot_zero() -> None:
    # 1700000000 + 0.999999999 is 1700000001.0 as a double: "%.1f"
    assert JsonEncoder("json_lines").encode([1_700_000_000_999_999_999], [{}]) == (
        b'{"date":1700000001.0}\n')


def test_empty_record_gets_only_the_date() -> None:
    out = JsonEncoder("json_lines").encode([T1, T1], [{}, b"{}"])
    assert out == b'{"date":1700000001.0}\n{"date":1700000001.0}\n'


def test_record_with_the_date_key_keeps_its_own_value() -> None:
    # msgpack2json skips a key that appears again later in the map: the date goes away.
    bodies: list[Body] = [{"a": 1, "date": "mine"}, b'{"date":5}', {"nested": {"date": 1}}]
    out = JsonEncoder("json_lines").encode([T1, T1, T1], bodies)
    assert out == (b'{"a":1,"date":"mine"}\n{"date":5}\n'
                   b'{"date":1700000001.0,"nested":{"date":1}}\n')


def test_date_key_is_escaped_like_any_key() -> None:
    out = JsonEncoder("json_stream", "é").encode([T1], [{"a": 1}])
    assert out == b'{"\\u00e9":1700000001.0,"a":1}'


def test_empty_chunk() -> None:
    assert JsonEncoder("json_lines").encode([], []) == b""
    assert JsonEncoder("json").encode([], []) == b"[]"


def test_dict_and_serialized_bodies_encode_identically() -> None:
    records: list[Body] = [{"k": "v", "n": [1, 2.5, {"z": None}], "u": "ü"}, {"x": -3}]
    as_bytes: list[Body] = [orjson.dumps(r) for r in records]
    for fmt in ("json", "json_lines", "json_stream"):
        for key in ("date", None):
            enc = JsonEncoder(fmt, key)
            assert enc.encode(TIMES, records) == enc.encode(TIMES, as_bytes)


def test_json_encoder_rejects_msgpack() -> None:
    with pytest.raises(ValueError):
        JsonEncoder("msgpack")


# --- option values ------------------------------------------------------------------------------

def test_option_parsers() -> None:
    assert formats.json_format_type("JSON_Lines") == "json_lines"
    assert formats.json_format_type("yaml") is None
    assert formats.json_date_type("ISO8601") == "iso8601"
    assert formats.json_date_type("epoch_millis") == "epoch_ms"
    assert formats.json_date_type("epoch_milliseconds") == "epoch_ms"
    assert formats.json_date_type("unix") is None
    assert formats.date_key_option("Off") is None
    assert formats.date_key_option("no") is None
    assert formats.date_key_option("true") == "true"  # only false/off/no disable the key
    assert formats.date_key_option("@timestamp") == "@timestamp"


# --- msgpack_object_print -----------------------------------------------------------------------

def test_mp_print_values() -> None:
    assert formats.mp_print({}) == "{}"
    assert formats.mp_print([]) == "[]"
    assert formats.mp_print(None) == "nil"
    assert formats.mp_print(True) == "true"
    assert formats.mp_print(False) == "false"
    assert formats.mp_print(-12) == "-12"
    assert formats.mp_print(18446744073709551615) == "18446744073709551615"
    assert formats.mp_print(0.1) == "0.100000"
    assert formats.mp_print(b'a"\x00') == '"a\\"\\x00"'  # BIN: msgpack_object_bin_print
    value = {"s": 'q"uo\nté', "l": [1, "x", {"k": None}], "m": {"a": {}}}
    assert formats.mp_print(value) == (
        '{"s"=>"q"uo\nté", "l"=>[1, "x", {"k"=>nil}], "m"=>{"a"=>{}}}')


def test_stdout_msgpack_lines() -> None:
    out = formats.stdout_msgpack_lines(
        "dummy.0", [T0, T1, 5], [b'{"message":"dummy"}', {"a": 1.5, "b": "é"}, {}])
    assert out == (
        b'[0] dummy.0: [[1700000000.123456789, {}], {"message"=>"dummy"}]\n'
        b'[1] dummy.0: [[1700000001.000000000, {}], {"a"=>1.500000, "b"=>"\xc3\xa9"}]\n'
        b"[2] dummy.0: [[0.000000005, {}], {}]\n")


def test_stdout_msgpack_lines_repeated_body_object() -> None:
    body = b'{"message":"dummy"}'
    out = formats.stdout_msgpack_lines("t", [T1, T1], [body, body])
    assert out == (b'[0] t: [[1700000001.000000000, {}], {"message"=>"dummy"}]\n'
                   b'[1] t: [[1700000001.000000000, {}], {"message"=>"dummy"}]\n')


def test_stdout_seconds_are_printed_as_int32() -> None:
    # printf("%"PRId32, (int32_t) tv_sec)
    out = formats.stdout_msgpack_lines("t", [2**31 * 1_000_000_000], [{}])
    assert out == b"[0] t: [[-2147483648.000000000, {}], {}]\n"


# --- msgpack chunk ------------------------------------------------------------------------------

def test_pack_records_event_format() -> None:
    out = formats.pack_records([T0], [b'{"message":"dummy"}'])
    assert out == (b"\x92\x92\xd7\x00" + struct.pack(">II", 1700000000, 123456789) + b"\x80"
                   + b"\x81\xa7message\xa5dummy")


def test_pack_records_value_encodings() -> None:
    body = {"i": [0, 127, 128, 255, 256, 65536, 2**32, -1, -32, -33, -129, -32769, -2**31 - 1],
            "f": 1.5, "b": [True, False, None], "s": "x" * 40}
    out = formats.pack_records([0], [body])
    expected = (b"\x92\x92\xd7\x00" + b"\x00" * 8 + b"\x80" + b"\x84"
                + b"\xa1i\x9d" + b"\x00\x7f\xcc\x80\xcc\xff\xcd\x01\x00\xce\x00\x01\x00\x00"
                + b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00" + b"\xff\xe0\xd0\xdf\xd1\xff\x7f"
                + b"\xd2\xff\xff\x7f\xff" + b"\xd3\xff\xff\xff\xff\x7f\xff\xff\xff"
                + b"\xa1f\xcb" + struct.pack(">d", 1.5)
                + b"\xa1b\x93\xc3\xc2\xc0"
                + b"\xa1s\xd9\x28" + b"x" * 40)
    assert out == expected
