"""[PARSER] / [MULTILINE_PARSER] validation at startup and in --dry-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from rillet.config.loader import load_config
from rillet.config.model import ConfigError, ConfigModel, Section
from rillet.parsers.definitions import parse_rule, validate
from tests.shared_data import CONFORMANCE

SHARED = CONFORMANCE


def model_of(*sections: Section) -> ConfigModel:
    model = ConfigModel.empty("p.conf")
    for s in sections:
        (model.parsers if s.kind == "parser" else model.multiline_parsers).append(s)
    return model


def sec(kind: str, *pairs: tuple[str, object]) -> Section:
    s = Section(kind, "p.conf", 1)
    for i, (key, value) in enumerate(pairs, start=2):
        s.set(key, value, "p.conf", i)
    return s


def check(*sections: Section) -> list[str]:
    errors: list[str] = []
    validate(model_of(*sections), errors)
    return errors


def test_valid_definitions() -> None:
    errors: list[str] = []
    parsers, _ = validate(model_of(
        sec("parser", ("name", "nginx"), ("format", "regex"),
            ("regex", r"^(?<remote>[^ ]*) (?<rest>.*)$"), ("time_key", "time"),
            ("time_format", "%d/%b/%Y:%H:%M:%S %z")),
        sec("parser", ("name", "json"), ("format", "json"), ("time_keep", "On")),
        sec("multiline_parser", ("name", "multiline-regex-test"), ("type", "regex"),
            ("flush_timeout", "1000"),
            ("rule", r'"start_state"   "/([a-zA-Z]+ \d+ \d+\:\d+\:\d+)(.*)/"  "cont"'),
            ("rule", r'"cont"          "/^\s+at.*/"                     "cont"')),
        sec("multiline_parser", ("name", "y"), ("type", "regex"), ("parser", "json"),
            ("rules", [{"state": "start_state", "regex": "/^a/", "next_state": "b"}])),
    ), errors)
    assert errors == []
    assert sorted(parsers) == ["json", "nginx"]
    assert parsers["json"]["time_keep"] is True


def test_errors_name_file_line_section_and_key() -> None:
    assert check(
        sec("parser", ("name", "a"), ("format", "regex"), ("regex", "(?<x>unclosed")),
        sec("parser", ("name", "b"), ("format", "xml")),
        sec("parser", ("name", "c"), ("format", "regex")),
        sec("parser", ("name", "d"), ("format", "json"), ("time_kep", "on")),
        sec("parser", ("name", "e"), ("format", "json"), ("time_offset", "+0100"),
            ("time_zone", "Europe/Paris")),
    ) == [
        "p.conf:4: [PARSER] a: regex: invalid regular expression: missing ), unterminated "
        "subpattern at position 0",
        "p.conf:3: [PARSER] b: format: invalid value 'xml', expected one of: json, regex, "
        "ltsv, logfmt",
        "p.conf:1: [PARSER] c: regex: a regex parser needs a Regex",
        "p.conf:4: [PARSER] d: time_kep: unknown configuration property 'time_kep'",
        "p.conf:5: [PARSER] e: time_zone: cannot be combined with time_offset",
        "p.conf:5: [PARSER] e: time_zone: time_zone needs a Time_Format",
    ]


def test_time_and_decoder_settings_are_checked_at_startup() -> None:
    assert check(
        sec("parser", ("name", "a"), ("format", "json"), ("time_format", "%Y %Q")),
        sec("parser", ("name", "b"), ("format", "json"), ("time_format", "%Y"),
            ("time_zone", "Mars/Olympus")),
        sec("parser", ("name", "c"), ("format", "json"), ("time_format", "%Y"),
            ("time_offset", "0600")),
        sec("parser", ("name", "d"), ("format", "json"), ("decode_field", "yaml log")),
        sec("parser", ("name", "e"), ("format", "json"), ("decode_field_as", "json")),
    ) == [
        "p.conf:4: [PARSER] a: time_format: time format '%Y %Q': unknown conversion '%Q'",
        "p.conf:5: [PARSER] b: time_zone: unknown time zone 'Mars/Olympus'",
        "p.conf:5: [PARSER] c: time_offset: invalid time offset '0600' (expected +hhmm, "
        "-hh:mm or Z)",
        "p.conf:4: [PARSER] d: decode_field: field decoder 'yaml' unknown",
        "p.conf:4: [PARSER] e: decode_field_as: invalid number of parameters in decoder "
        "'json'",
    ]


def test_multiline_errors() -> None:
    assert check(
        sec("multiline_parser", ("name", "m1"), ("type", "regex"),
            ("rule", '"start_state" "/a/"')),
        sec("multiline_parser", ("name", "m2"), ("type", "regex"),
            ("rule", '"cont" "/a/" "cont"')),
        sec("multiline_parser", ("name", "m3"), ("type", "regex"), ("parser", "nope"),
            ("rule", r'"start_state" "/\G/" "x"')),
        sec("multiline_parser", ("name", "m4"), ("type", "endswith")),
    ) == [
        'p.conf:4: [MULTILINE_PARSER] m1: rule: expected three double-quoted fields: '
        '"state" "/regex/" "next_state"',
        "p.conf:4: [MULTILINE_PARSER] m2: rule: the first rule must be for 'start_state'",
        "p.conf:4: [MULTILINE_PARSER] m3: parser: parser 'nope' is not defined",
        r"p.conf:5: [MULTILINE_PARSER] m3: rule: unsupported construct \G (match start anchor)",
        "p.conf:1: [MULTILINE_PARSER] m4: match_string: a endswith multiline parser needs "
        "match_string",
    ]


def test_parse_rule_keeps_escapes() -> None:
    assert parse_rule(r'"a"  "/x\"y/"  "b"') == ("a", r'/x\"y/', "b")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/ conformance data not beside the repo")
@pytest.mark.parametrize("rel", ["internal/data/parser/json.conf",
                                 "internal/data/parser/regex.conf",
                                 "runtime/data/kubernetes/parsers.conf"])
def test_fluent_bits_own_parsers_files_validate(tmp_path: Path, rel: str) -> None:
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(f"[SERVICE]\n    Parsers_File {SHARED / rel}\n")
    model = load_config(str(conf))
    errors: list[str] = []
    parsers, _ = validate(model, errors)
    assert errors == []
    assert len(parsers) == len(model.parsers) > 0


def test_dry_run_reports_parser_errors_with_the_rest(tmp_path: Path) -> None:
    from rillet.engine.pipeline import build

    (tmp_path / "parsers.conf").write_text(
        "[PARSER]\n    Name  bad\n    Format regex\n    Regex (?<a>x\n")
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text("[SERVICE]\n    Parsers_File parsers.conf\n\n"
                    "[INPUT]\n    Name dummy\n    Nope 1\n")
    with pytest.raises(ConfigError) as err:
        build(load_config(str(conf)))
    assert [e.split(": ", 2)[1] for e in err.value.errors] == ["[PARSER] bad",
                                                                "[INPUT] dummy"]


def test_first_rule_may_list_start_state_among_states() -> None:
    assert check(sec("multiline_parser", ("name", "m"), ("type", "regex"),
                     ("rule", r'"start_state, java_start" "/x/" "cont"'),
                     ("rule", r'"cont" "/^\s+at/" "cont"'))) == []
