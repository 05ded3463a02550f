"""The ``lua`` filter through lupa: Fluent Bit's documentation examples (print, append tag,
drop, split into several records, inline code, time as a table), return codes, type options,
flb_null, script errors counted and records kept."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rillet.engine.chunk import Batch
from rillet.filters.lua import LuaFilter
from tests.filters.filter_kit import T0, batch, config_error, configure, run

DOC_SCRIPT = """
function cb_print(tag, timestamp, record)
   return 0, timestamp, record
end

function append_tag(tag, timestamp, record)
    new_record = record
    new_record["tag"] = tag
    return 1, timestamp, new_record
end

function cb_drop(tag, timestamp, record)
    return -1, timestamp, record
end

function cb_split(tag, timestamp, record)
    if record["x"] ~= nil then
        return 2, timestamp, record["x"]
    else
        return 2, timestamp, record
    end
end

function set_time(tag, timestamp, record)
    return 1, 1700000000.5, record
end

function keep_time(tag, timestamp, record)
    record["seen"] = true
    return 2, 12345, record
end

function drop_debug(tag, timestamp, record)
    if record["level"] == "debug" then
        return -1, 0, 0
    end
    return 0, 0, 0
end
"""


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "filters.lua"
    path.write_text(DOC_SCRIPT)
    return str(path)


def lua(script: str, call: str, **settings: str) -> LuaFilter:
    return configure(LuaFilter, script=script, call=call, **settings)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_print_keeps_records_and_bodies(script: str, as_bytes: bool) -> None:
    f = lua(script, "cb_print")
    b = batch([{"log": "a"}, {"log": "b", "n": 1}], as_bytes=as_bytes)
    raw = list(b.bodies)
    assert f.filter(b).bodies == raw


def test_append_tag_code_1(script: str) -> None:
    f = lua(script, "append_tag")
    out = run(f, [{"log": "a", "nested": {"list": [1, 2.5, "x"], "m": {"k": False}}}],
              tag="app.web")
    assert out == [{"log": "a", "tag": "app.web",
                    "nested": {"list": [1, 2.5, "x"], "m": {"k": False}}}]


def test_drop_and_conditional_drop(script: str) -> None:
    assert run(lua(script, "cb_drop"), [{"a": 1}, {"b": 2}]) == []
    recs = [{"level": "debug"}, {"level": "info"}]
    assert run(lua(script, "drop_debug"), recs) == [{"level": "info"}]


def test_split_one_record_into_several(script: str) -> None:
    f = lua(script, "cb_split")
    b = batch([{"x": [{"a1": "aa", "z1": "zz"}, {"b1": "bb", "x1": "xx"}]}, {"y": 1}])
    out = f.filter(b)
    assert out.bodies == [{"a1": "aa", "z1": "zz"}, {"b1": "bb", "x1": "xx"}, {"y": 1}]
    assert out.times == [T0, T0, T0 + 1]


def test_timestamps_code_1_sets_and_code_2_keeps(script: str) -> None:
    out = lua(script, "set_time").filter(batch([{"a": 1}]))
    assert out.times == [1_700_000_000_500_000_000]
    out = lua(script, "keep_time").filter(batch([{"a": 1}]))
    assert out.times == [T0] and out.bodies == [{"a": 1, "seen": True}]


def test_timestamp_as_number_and_as_table() -> None:
    code = ("function f(tag, ts, record) record['ts'] = ts return 2, ts, record end\n"
            "function g(tag, ts, record) record['sec'] = ts['sec'] record['nsec'] = ts['nsec'] "
            "ts['sec'] = ts['sec'] + 1 return 1, ts, record end")
    (out,) = run(configure(LuaFilter, code=code, call="f"), [{}])
    assert out["ts"] == pytest.approx(T0 / 1e9)
    f = configure(LuaFilter, code=code, call="g", time_as_table="on")
    b = f.filter(batch([{}]))
    assert b.bodies == [{"sec": T0 // 10**9, "nsec": T0 % 10**9}]
    assert b.times == [T0 + 10**9]


def test_inline_code_from_the_docs() -> None:
    code = ('function cb_filter(tag, timestamp, record) if record["log"] ~= nil then '
            'record["log2"] = record["log"] end return 2, timestamp, record end')
    out = run(configure(LuaFilter, code=code, call="cb_filter"), [{"log": "x"}, {"n": 1}])
    assert out == [{"log": "x", "log2": "x"}, {"n": 1}]


def test_type_int_key_and_type_array_key() -> None:
    code = ("function f(tag, ts, r) r['count'] = r['count'] * 1.5 r['code'] = '42' "
            "r['empty'] = {} r['e2'] = {} return 2, ts, r end")
    f = configure(LuaFilter, code=code, call="f", type_int_key="count code",
                  type_array_key="empty")
    (out,) = run(f, [{"count": 3}])
    assert out == {"count": 4, "code": 42, "empty": [], "e2": {}}


def test_null_dropped_by_default_and_flb_null_when_enabled() -> None:
    code = ("function f(tag, ts, r) r['is_null'] = (r['a'] == flb_null) "
            "r['b'] = flb_null return 2, ts, r end")
    (out,) = run(configure(LuaFilter, code=code, call="f"), [{"a": None, "k": 1}])
    assert out == {"k": 1, "is_null": True}  # without flb_null both sides are nil
    f = configure(LuaFilter, code=code, call="f", enable_flb_null="on")
    (out,) = run(f, [{"a": None, "k": [None, 1]}])
    assert out == {"a": None, "k": [None, 1], "is_null": True, "b": None}


def test_errors_are_counted_and_records_kept(caplog: pytest.LogCaptureFixture) -> None:
    code = ("function f(tag, ts, r) if r['boom'] then error('kaput') end "
            "if r['odd'] then return 7, ts, r end "
            "if r['notable'] then return 1, ts, 'text' end "
            "r['ok'] = true return 1, ts, r end")
    f = configure(LuaFilter, code=code, call="f", protected_mode="off")
    recs = [{"boom": 1}, {"odd": 1}, {"notable": 1}, {"fine": 1}]
    with caplog.at_level(logging.WARNING):
        out = run(f, recs)
    assert out == [{"boom": 1}, {"odd": 1}, {"notable": 1}, {"fine": 1, "ok": True}]
    assert f.counters["script_errors"] == 3
    assert "kaput" in caplog.text


def test_empty_batch_and_non_object_bodies() -> None:
    f = configure(LuaFilter, code="function f(t, ts, r) r['seen'] = 1 return 2, ts, r end",
                  call="f")
    empty = Batch("t", [], [], 0)
    assert f.filter(empty) is empty
    b = Batch("t", [1, 2, 3], [b"[1]", b"not json", b'{"a":1}'], 30)
    assert f.filter(b).bodies == [b"[1]", b"not json", {"a": 1, "seen": 1}]
    assert f.counters["skipped_records"] == 2


def test_config_errors(tmp_path: Path) -> None:
    assert "missing 'call'" in config_error(LuaFilter, code="x = 1")
    assert "no script or code" in config_error(LuaFilter, call="f")
    assert "cannot read" in config_error(LuaFilter, call="f", script=str(tmp_path / "nope.lua"))
    assert "function f is not found" in config_error(LuaFilter, call="f", code="x = 1")
    assert "code" in config_error(LuaFilter, call="f", code="function f( end")
