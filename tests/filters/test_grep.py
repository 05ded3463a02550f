"""The ``grep`` filter: Regex / Exclude, Logical_Op legacy / AND / OR, record accessor keys,
non-string values, serialized bodies kept as they are."""

from __future__ import annotations

import orjson
import pytest

from rillet.filters import grep as grep_module
from rillet.filters.grep import GrepFilter
from rillet.filters.records import escape_finder, key_needle, literal
from tests.filters.filter_kit import batch, config_error, configure, run

RECORDS = [
    {"log": "GET /api 200", "level": "info", "kubernetes": {"labels": {"app": "web"}}},
    {"log": "POST /login 500", "level": "error", "kubernetes": {"labels": {"app": "auth"}}},
    {"log": "healthz", "level": "debug", "n": 42},
    {"message": "no log key", "level": 7},
]


def logs(out: list[dict[str, object]]) -> list[object]:
    return [r.get("log", r.get("message")) for r in out]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_regex_keeps_matching_records(as_bytes: bool) -> None:
    f = configure(GrepFilter, ("Regex", "log ^(GET|POST)"))
    assert logs(run(f, RECORDS, as_bytes=as_bytes)) == ["GET /api 200", "POST /login 500"]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_exclude_drops_matching_records(as_bytes: bool) -> None:
    f = configure(GrepFilter, ("Exclude", "level debug|error"))
    assert logs(run(f, RECORDS, as_bytes=as_bytes)) == ["GET /api 200", "no log key"]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_record_accessor_key(as_bytes: bool) -> None:
    f = configure(GrepFilter, ("Regex", "$kubernetes['labels']['app'] ^web$"))
    assert logs(run(f, RECORDS, as_bytes=as_bytes)) == ["GET /api 200"]
    f = configure(GrepFilter, ("Exclude", "$kubernetes['labels']['app'] auth"))
    assert logs(run(f, RECORDS, as_bytes=as_bytes)) == ["GET /api 200", "healthz",
                                                        "no log key"]


def test_regex_is_searched_not_anchored_and_onigmo_syntax() -> None:
    f = configure(GrepFilter, ("Regex", r"log \d{3}\z"))
    assert logs(run(f, RECORDS)) == ["GET /api 200", "POST /login 500"]


def test_non_string_values_never_match() -> None:
    # 42 and 7 are numbers: neither Regex nor Exclude can match them.
    f = configure(GrepFilter, ("Regex", "n 42"))
    assert run(f, RECORDS) == []
    f = configure(GrepFilter, ("Exclude", "level 7"))
    assert len(run(f, RECORDS)) == 4
    f = configure(GrepFilter, ("Regex", "kubernetes .*"))  # a map
    assert run(f, RECORDS) == []


def test_legacy_rules_all_apply_in_order() -> None:
    f = configure(GrepFilter, ("Regex", "log /"), ("Exclude", "level error"))
    assert logs(run(f, RECORDS)) == ["GET /api 200"]


def test_logical_op_and_or() -> None:
    f = configure(GrepFilter, ("Regex", "log /"), ("Regex", "level info"), logical_op="AND")
    assert logs(run(f, RECORDS)) == ["GET /api 200"]
    f = configure(GrepFilter, ("Regex", "log healthz"), ("Regex", "level info"),
                  logical_op="or")
    assert logs(run(f, RECORDS)) == ["GET /api 200", "healthz"]
    f = configure(GrepFilter, ("Exclude", "log /"), ("Exclude", "level error"),
                  logical_op="AND")
    assert logs(run(f, RECORDS)) == ["GET /api 200", "healthz", "no log key"]
    f = configure(GrepFilter, ("Exclude", "log /"), ("Exclude", "level debug"),
                  logical_op="OR")
    assert logs(run(f, RECORDS)) == ["no log key"]


def test_config_errors() -> None:
    assert "cannot be mixed" in config_error(GrepFilter, ("Regex", "log a"),
                                             ("Exclude", "log b"), logical_op="and")
    assert "expected 'KEY REGEX'" in config_error(GrepFilter, ("Regex", "log"))
    assert "Regex 'log (unclosed'" in config_error(GrepFilter, ("Regex", "log (unclosed"))
    assert "invalid record accessor" in config_error(GrepFilter, ("Regex", "$ x"))


def test_untouched_bodies_stay_serialized_and_sizes_shrink() -> None:
    f = configure(GrepFilter, ("Exclude", "level debug"))
    b = batch(RECORDS, as_bytes=True)
    raw = list(b.bodies)
    out = f.filter(b)
    assert out.bodies == [raw[0], raw[1], raw[3]]
    assert out.size == 400 - len(raw[2])
    assert len(out.times) == 3
    # A body lacking every rule's key is decided from its text; escaped keys are decoded.
    f = configure(GrepFilter, ("Regex", "log x"))
    escaped = b'{"\\u006cog":"x"}'
    assert orjson.loads(escaped) == {"log": "x"}
    b = batch([{"other": 1}])
    b.bodies = [b'{"other":1}', escaped]
    b.times = [1, 2]
    assert f.filter(b).bodies == [escaped]


def test_no_rules_passes_everything() -> None:
    f = configure(GrepFilter)
    assert len(run(f, RECORDS)) == 4


def test_text_checks_skip_decoding_unless_an_escape_may_hide_the_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[bytes] = []

    def counting(body: bytes) -> object:
        decoded.append(body)
        return orjson.loads(body)
    monkeypatch.setattr(grep_module, "_loads", counting)
    f = configure(GrepFilter, ("Exclude", "log kube-probe"))
    docker = b'{"log":"GET /a?x=1\\u0026y=2 \\"curl\\"\\n","stream":"stdout"}'
    probe = b'{"log":"GET /healthz kube-probe/1.29\\n","stream":"stdout"}'
    hidden = b'{"log":"kube\\u002dprobe","stream":"stdout"}'  # '-' written as an escape
    b = batch([{}] * 3)
    b.bodies = [docker, probe, hidden]
    assert f.filter(b).bodies == [docker]
    assert decoded == [probe, hidden]  # the Docker line with \u0026 was decided from its text
    assert literal("kube-probe") == b"kube-probe" and literal("a/b") is None
    assert literal("caf\u00e9") is None and key_needle("log") == b'"log"'
    assert escape_finder([b"kube-probe"])(docker) is None
    assert escape_finder([b"-"])(hidden) is not None
    assert escape_finder([b"-"])(b'{"a":"\\u002D"}') is not None  # upper-case hex too
    assert escape_finder([])(hidden) is None
