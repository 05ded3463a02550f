"""The parser filter: Key_Name, Parser (first match wins), Preserve_Key, Reserve_Data."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from rillet.config.loader import load_config
from rillet.config.model import ConfigError, Section
from rillet.config.options import resolve
from rillet.engine.chunk import Batch
from rillet.engine.metrics import BY_KIND, Counters
from rillet.engine.plugin import full_table
from rillet.filters.parser import ParserFilter
from rillet.parsers.definitions import PARSER_OPTIONS
from rillet.parsers.registry import ParserRegistry

T0 = 1_700_000_000_000_000_000
NGINX = ('10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] "GET / HTTP/1.1" 200 612 "-" '
         '"hey/0.0.1" "52.95.4.2"')
NGINX_FIELDS = {"remote": "10.1.128.166", "host": "-", "user": "-", "method": "GET",
                "path": "/", "code": "200", "size": "612", "referer": "-",
                "agent": "hey/0.0.1"}
NGINX_NS = 1576777272 * 1_000_000_000


def _registry() -> ParserRegistry:
    def opts(**kv: Any) -> Any:
        section = Section("parser", "p.conf", 1)
        for k, v in kv.items():
            section.set(k, v)
        errors: list[str] = []
        o = resolve(section, PARSER_OPTIONS, errors, ignore=())
        assert errors == []
        return o
    return ParserRegistry({
        "kv": opts(name="kv", format="logfmt"),
        "data": opts(name="data", format="regex",
                     regex=r"^(?<INT>[^ ]+) (?<FLOAT>[^ ]+) (?<BOOL>[^ ]+) (?<STRING>.+)$"),
    })


def make(*parsers: str, **settings: str) -> ParserFilter:
    section = Section("filter", "test.conf", 1)
    section.set("name", "parser")
    for p in parsers:
        section.set("parser", p)
    for key, value in settings.items():
        section.set(key, value)
    errors: list[str] = []
    opts = resolve(section, full_table(ParserFilter), errors)
    assert errors == []
    return ParserFilter("parser.0", opts, logging.getLogger("rillet.filter:parser:parser.0"),
                        Counters(BY_KIND["filter"]), _registry())


def run(f: ParserFilter, bodies: list[Any]) -> tuple[list[int], list[Any]]:
    out = f.filter(Batch("t", [T0] * len(bodies), list(bodies), 100))
    assert len(out.times) == len(out.bodies)
    return out.times, out.bodies


DUMMY = {"data": "100 0.5 true This is example", "key1": "value1", "key2": "value2"}
PARSED = {"INT": "100", "FLOAT": "0.5", "BOOL": "true", "STRING": "This is example"}


@pytest.mark.parametrize(("reserve", "preserve", "expected"), [
    ("off", "off", PARSED),
    ("off", "on", {**PARSED, "data": DUMMY["data"]}),
    ("on", "off", {**PARSED, "key1": "value1", "key2": "value2"}),
    ("on", "on", {**PARSED, "data": DUMMY["data"], "key1": "value1", "key2": "value2"}),
])
def test_reserve_data_and_preserve_key(reserve: str, preserve: str,
                                       expected: dict[str, Any]) -> None:
    f = make("data", key_name="data", reserve_data=reserve, preserve_key=preserve)
    for body in (dict(DUMMY), orjson.dumps(DUMMY)):
        times, bodies = run(f, [body])
        assert bodies == [expected]
        assert list(bodies[0]) == list(expected)  # parsed fields first, then the rest in order
        assert times == [T0]  # no time in this parser: the record keeps its own


def test_parsed_time_replaces_the_record_time_and_first_parser_wins() -> None:
    f = make("kv", "nginx", key_name="log")
    times, bodies = run(f, [{"log": NGINX, "stream": "stdout"}])
    # logfmt reads this line too (first wins): bare words become true.
    assert bodies[0]["10.1.128.166"] is True and times == [T0]
    f = make("nginx", "kv", key_name="log")
    times, bodies = run(f, [{"log": NGINX}, {"log": "a=1"}, {"log": ""}])
    assert bodies == [NGINX_FIELDS, {"a": "1"}, {"log": ""}]
    assert times == [NGINX_NS, T0, T0]


def test_records_that_do_not_parse_pass_unchanged() -> None:
    f = make("nginx", key_name="log", reserve_data="on")
    raw = b'{"log":"not an access line","n":1}'
    other = b'{"message":"no log key"}'
    escaped = b'{"\\u006cog":"x","n":2}'
    bodies_in = [raw, other, {"log": 5}, {"n": 1}, escaped]
    times, bodies = run(f, bodies_in)
    assert bodies[0] is raw and bodies[1] is other and bodies[4] is escaped
    assert bodies[2] == {"log": 5} and bodies[3] == {"n": 1}
    assert times == [T0] * 5


def test_duplicate_keys_take_the_later_value_at_the_first_position() -> None:
    f = make("kv", key_name="log", reserve_data="on")
    _, bodies = run(f, [{"a": "old", "log": "a=new b=2", "c": 3}])
    assert bodies == [{"a": "old", "b": "2", "c": 3}]
    assert list(bodies[0]) == ["a", "b", "c"]


def test_nest_under() -> None:
    f = make("kv", key_name="log", reserve_data="on", nest_under="parsed")
    _, bodies = run(f, [{"log": "a=1", "x": 0}])
    assert bodies == [{"parsed": {"a": "1"}, "x": 0}]


def test_unescape_key_is_accepted_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rillet"):
        f = make("kv", key_name="log", unescape_key="on")
    assert "deprecated" in caplog.text
    assert run(f, [{"log": "a=1"}])[1] == [{"a": "1"}]


@pytest.mark.parametrize(("settings", "parsers", "message"), [
    ({}, ("kv",), "missing 'key_name'"),
    ({"key_name": "log"}, (), "at least one Parser"),
    ({"key_name": "log"}, ("nope",), "requested parser 'nope' not found"),
    ({"key_name": "$log['a']"}, ("kv",), "record accessor"),
])
def test_startup_errors(settings: dict[str, str], parsers: tuple[str, ...],
                        message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(*parsers, **settings)


def test_pipeline_reports_an_unknown_parser_and_accepts_builtins(tmp_path: Path) -> None:
    from rillet.engine.pipeline import build

    conf = tmp_path / "fluent-bit.conf"
    conf.write_text("[INPUT]\n    Name dummy\n\n[FILTER]\n    Name parser\n    Match *\n"
                    "    Key_Name log\n    Parser nginx\n    Parser missing\n\n"
                    "[OUTPUT]\n    Name null\n    Match *\n")
    with pytest.raises(ConfigError) as err:
        build(load_config(str(conf)))
    assert len(err.value.errors) == 1
    assert "requested parser 'missing' not found" in err.value.errors[0]
    conf.write_text(conf.read_text().replace("    Parser missing\n", ""))
    pipeline = build(load_config(str(conf)))
    assert pipeline.filters[0].plugin.chain[0].name == "nginx"


def test_bad_input_never_raises() -> None:
    f = make("nginx", "kv", "json", key_name="log", reserve_data="on", preserve_key="on")
    bodies: list[Any] = [b"not json at all", b"[1,2]", b'{"log":"\\ud800"}', {"log": "\x00" * 50},
                         {"log": "x" * 100_000}, b'{"log":"' + b"\\\\" * 10 + b'"}']
    times, out = run(f, bodies)
    assert len(out) == len(bodies) and times == [T0] * len(bodies)


def test_end_to_end_with_the_builtin_nginx_parser(tmp_path: Path) -> None:
    """A real rillet process: dummy -> parser filter (built-in nginx, no Parsers_File) ->
    stdout; the records carry the nginx fields and the access line's time."""
    conf = tmp_path / "fluent-bit.conf"
    dummy = orjson.dumps({"log": NGINX, "stream": "stdout"}).decode()
    conf.write_text("[SERVICE]\n    Flush 0.2\n    Log_Level warn\n\n"
                    f"[INPUT]\n    Name dummy\n    Dummy {dummy}\n    Samples 2\n"
                    "    Rate 20\n\n"
                    "[FILTER]\n    Name parser\n    Match *\n    Key_Name log\n"
                    "    Parser nginx\n    Reserve_Data On\n\n"
                    "[OUTPUT]\n    Name stdout\n    Match *\n    Format json_lines\n")
    proc = subprocess.Popen([sys.executable, "-m", "rillet", "-c", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    out = b""
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline and out.count(b"\n") < 2:
        out += proc.stdout.read() or b""
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=20)
    out += rest or b""
    assert proc.returncode == 0, err.decode()
    records = [orjson.loads(line) for line in out.splitlines()]
    assert len(records) == 2
    for rec in records:
        assert rec["date"] == 1576777272.0
        assert {k: rec[k] for k in NGINX_FIELDS} == NGINX_FIELDS
        assert rec["stream"] == "stdout" and "log" not in rec
