"""``stdout`` output, built from a config section the way the engine builds it.

Expected output comes from plugins/out_stdout/stdout.c (fluent/fluent-bit): the default format is
``[%zd] %s: [[sec.%09lu, {}], <msgpack_object_print body>]`` per record (the documented
``fluent-bit -i dummy -o stdout`` output is ``[0] dummy.0: [[1686451466.659962491, {}],
{"message"=>"dummy"}]``, docs pipeline/inputs/dummy.md); JSON formats are written as
``flb_pack_msgpack_to_json_format`` returns them, plus ``printf("\\n")`` unless json_lines.
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

import pytest

from rillet.config.model import Section
from rillet.config.options import resolve
from rillet.engine.chunk import Chunk
from rillet.engine.plugin import Status, full_table, lookup
from rillet.outputs.stdout import Stdout
from tests.plugin_kit import T0, T1, flush, make_chunk, make_plugin


def make(**settings: str) -> Stdout:
    return make_plugin(Stdout, **settings)


def chunk(bodies: list[Any], times: list[int] | None = None, tag: str = "dummy.0") -> Chunk:
    return make_chunk(bodies, times or [T0 + i for i in range(len(bodies))], tag)




def test_registered() -> None:
    assert lookup("output", "stdout") is Stdout
    assert Stdout.default_workers == 1


def test_default_msgpack_format(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    plugin = make()
    assert flush(plugin, chunk([b'{"message":"dummy"}', {"n": -1, "f": 2.5, "x": None}])) \
        is Status.OK
    assert capsysbinary.readouterr().out == (
        b'[0] dummy.0: [[1700000000.123456789, {}], {"message"=>"dummy"}]\n'
        b'[1] dummy.0: [[1700000000.123456790, {}], {"n"=>-1, "f"=>2.500000, "x"=>nil}]\n')


def test_counter_restarts_with_every_chunk(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    plugin = make(format="msgpack")
    flush(plugin, chunk([{"a": 1}], [T1]))
    flush(plugin, chunk([{"a": 2}], [T1], tag="other"))
    assert capsysbinary.readouterr().out == (
        b'[0] dummy.0: [[1700000001.000000000, {}], {"a"=>1}]\n'
        b'[0] other: [[1700000001.000000000, {}], {"a"=>2}]\n')


def test_msgpack_strings_are_printed_raw(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    flush(make(), chunk([{"msg": 'a "quoted"\nline', "u": "日本"}], [T1]))
    assert capsysbinary.readouterr().out == (
        '[0] dummy.0: [[1700000001.000000000, {}], {"msg"=>"a "quoted"\nline", '
        '"u"=>"日本"}]\n').encode()


def test_json_lines_without_date_prints_each_record(
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    plugin = make(format="json_lines", json_date_key="false")
    flush(plugin, chunk([b'{"message":"dummy"}', {"a": [1, {"b": True}], "c": "é"}, {}]))
    assert capsysbinary.readouterr().out == (
        b'{"message":"dummy"}\n{"a":[1,{"b":true}],"c":"\\u00e9"}\n{}\n')


def test_json_lines_with_date(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    flush(make(format="json_lines"), chunk([{"a": 1}, b'{"b":2}'], [T0, T1]))
    assert capsysbinary.readouterr().out == (
        b'{"date":1700000000.123457,"a":1}\n{"date":1700000001.0,"b":2}\n')


def test_json_and_json_stream_end_with_one_newline(
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    c = chunk([{"a": 1}, {"b": 2}], [T1, T1])
    flush(make(format="json", json_date_key="ts", json_date_format="epoch"), c)
    flush(make(format="json_stream", json_date_format="iso8601"), c)
    assert capsysbinary.readouterr().out == (
        b'[{"ts":1700000001,"a":1},{"ts":1700000001,"b":2}]\n'
        b'{"date":"2023-11-14T22:13:21.000000Z","a":1}'
        b'{"date":"2023-11-14T22:13:21.000000Z","b":2}\n')


def test_bad_values_are_logged_and_replaced(capsysbinary: pytest.CaptureFixture[bytes],
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        plugin = make(format="yaml")
        plugin2 = make(format="json_lines", json_date_format="unix")
    assert "unrecognized 'format' option. Using 'msgpack'" in caplog.text
    assert "invalid json_date_format 'unix'. Using 'double' type" in caplog.text
    flush(plugin, chunk([{"a": 1}], [T1]))
    flush(plugin2, chunk([{"a": 1}], [T1]))
    assert capsysbinary.readouterr().out == (
        b'[0] dummy.0: [[1700000001.000000000, {}], {"a"=>1}]\n'
        b'{"date":1700000001.0,"a":1}\n')


def test_stdout_is_looked_up_at_flush_time(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = make(format="json_lines", json_date_key="off")

    class FakeStdout:
        def __init__(self) -> None:
            self.buffer = io.BytesIO()

        def flush(self) -> None:
            pass

    fake = FakeStdout()
    monkeypatch.setattr(sys, "stdout", fake)
    flush(plugin, chunk([{"a": 1}]))
    assert fake.buffer.getvalue() == b'{"a":1}\n'


def test_text_only_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    flush(make(), chunk([{"a": "é"}], [T1]))
    assert stream.getvalue() == '[0] dummy.0: [[1700000001.000000000, {}], {"a"=>"é"}]\n'


def test_unknown_option_is_a_config_error() -> None:
    section = Section("output", "test.conf", 3)
    section.set("name", "stdout", "test.conf", 3)
    section.set("colour", "red", "test.conf", 4)
    errors: list[str] = []
    resolve(section, full_table(Stdout), errors)
    assert errors == ["test.conf:4: [OUTPUT] stdout: colour: unknown configuration property "
                      "'colour'"]
