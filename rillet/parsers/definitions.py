"""Option tables of ``[PARSER]`` and ``[MULTILINE_PARSER]`` definitions, and their checks.

Startup (and ``--dry-run``) validate every definition: known keys with valid values, the keys a
format needs, every regex compiling (Onigmo syntax, see :mod:`rillet.parsers.regex`), multiline
``rule`` lines well formed, and every parser a multiline parser names defined.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rillet.config.model import ConfigModel, Section, entry_error
from rillet.config.options import Option, Options, T, resolve
from rillet.parsers.decoders import AS, MERGE, parse_rules
from rillet.parsers.regex import RegexError, compile_ruby
from rillet.parsers.timefmt import compile_format, parse_offset

PARSER_OPTIONS: tuple[Option, ...] = (
    Option("name", T.STR, None, "unique name of the parser"),
    Option("format", T.STR, None, "json, regex, ltsv or logfmt",
           choices=("json", "regex", "ltsv", "logfmt")),
    Option("regex", T.STR, None, "regular expression (Ruby syntax); named groups become keys"),
    Option("time_key", T.STR, None, "field holding the record's time"),
    Option("time_format", T.STR, None, "strptime format of the time field (%L: fraction)"),
    Option("time_keep", T.BOOL, "off", "keep the time field in the record"),
    Option("time_offset", T.STR, None, "fixed UTC offset of zone-less times, e.g. -0600"),
    Option("time_zone", T.STR, None, "IANA time zone of zone-less times"),
    Option("time_system_timezone", T.BOOL, "off", "zone-less times are in the system's zone"),
    Option("time_strict", T.BOOL, "on", "the whole time field must match the format"),
    Option("types", T.STR, None, "key:type pairs (string, integer, bool, float, hex)"),
    Option("decode_field", T.STR, None, "decoder and field, merged into the record",
           multiple=True),
    Option("decode_field_as", T.STR, None, "decoder and field, replacing its value",
           multiple=True),
    Option("skip_empty_values", T.BOOL, "on", "drop empty regex captures"),
    Option("logfmt_no_bare_keys", T.BOOL, "off", "a line with a bare key gives no record"),
)

MULTILINE_OPTIONS: tuple[Option, ...] = (
    Option("name", T.STR, None, "unique name of the multiline parser"),
    Option("type", T.STR, None, "regex, endswith or equal",
           choices=("regex", "endswith", "equal", "eq")),
    Option("parser", T.STR, None, "parser applied to each line before the rules"),
    Option("key_content", T.STR, None, "key holding the text to join"),
    Option("key_group", T.STR, None, "key separating streams (e.g. stream)"),
    Option("key_pattern", T.STR, None, "key the endswith/equal pattern is checked on"),
    Option("match_string", T.STR, None, "text for endswith / equal"),
    Option("negate", T.BOOL, "off", "negate the endswith / equal test"),
    Option("flush_timeout", T.INT, "4000", "milliseconds before a pending message is flushed"),
    Option("rule", T.STR, None, '"state" "/regex/" "next_state" (classic files)',
           multiple=True),
    Option("rules", T.ANY, None, "list of {state, regex, next_state} (YAML files)",
           multiple=True),
)

_RULE = re.compile(r'\A\s*"((?:[^"\\]|\\.)*)"\s+"((?:[^"\\]|\\.)*)"\s+"((?:[^"\\]|\\.)*)"\s*\Z',
                   re.DOTALL)


def parse_rule(text: str) -> tuple[str, str, str]:
    """A classic ``rule`` value: three double-quoted fields (state, regex, next state)."""
    m = _RULE.match(text)
    if not m:
        raise ValueError('expected three double-quoted fields: "state" "/regex/" "next_state"')
    return m.group(1), m.group(2), m.group(3)


def rules_of(opts: Options) -> list[tuple[str, str, str]]:
    """Every rule of a multiline parser, from classic ``rule`` lines and YAML ``rules`` lists."""
    rules = [parse_rule(text) for text in opts["rule"]]
    for group in opts["rules"]:
        for item in group if isinstance(group, list) else [group]:
            rules.append((str(item.get("state", "")), str(item.get("regex", "")),
                          str(item.get("next_state", ""))))
    return rules


def _compile(section: Section, key: str, pattern: str, errors: list[str]) -> None:
    try:
        compile_ruby(pattern)
    except RegexError as exc:
        errors.append(entry_error(section, section.find(key), key, str(exc)))


def _check_parser(section: Section, opts: Options, errors: list[str],
                  compile_regex: bool = True) -> None:
    if not opts["name"]:
        errors.append(entry_error(section, None, "name", "missing parser name"))
    if section.find("format") is None:
        errors.append(entry_error(section, None, "format", "missing parser format"))
    elif opts["format"] == "regex":
        if not opts["regex"]:
            errors.append(entry_error(section, None, "regex", "a regex parser needs a Regex"))
        elif compile_regex:
            _compile(section, "regex", opts["regex"], errors)
    zones = [k for k in ("time_offset", "time_zone") if opts[k]]
    if opts["time_system_timezone"]:
        zones.append("time_system_timezone")
    if len(zones) > 1:
        errors.append(entry_error(section, section.find(zones[-1]), zones[-1],
                                  f"cannot be combined with {zones[0]}"))
    if opts["time_offset"]:
        try:
            parse_offset(opts["time_offset"])
        except ValueError as exc:
            errors.append(entry_error(section, section.find("time_offset"), "time_offset",
                                      str(exc)))
    if opts["time_zone"] and not opts["time_format"]:
        errors.append(entry_error(section, section.find("time_zone"), "time_zone",
                                  "time_zone needs a Time_Format"))
    if opts["time_format"]:
        try:
            compile_format(opts["time_format"], zone=opts["time_zone"])
        except ValueError as exc:
            key = "time_zone" if "zone" in str(exc) else "time_format"
            errors.append(entry_error(section, section.find(key), key, str(exc)))
    opts["decode_order"] = decode_order(section)
    try:
        parse_rules([], [], opts["decode_order"])
    except ValueError as exc:
        key = "decode_field_as" if section.find("decode_field_as") else "decode_field"
        errors.append(entry_error(section, section.find(key), key, str(exc)))


def decode_order(section: Section) -> list[tuple[str, str]]:
    """The Decode_Field / Decode_Field_As values in file order (rules run in that order)."""
    order: list[tuple[str, str]] = []
    for e in section.entries:
        if e.key in ("decode_field", "decode_field_as"):
            kind = AS if e.key == "decode_field_as" else MERGE
            values = e.value if isinstance(e.value, list) else [e.value]
            order.extend((kind, str(v)) for v in values)
    return order


def _check_multiline(section: Section, opts: Options, known: set[str],
                     errors: list[str]) -> None:
    if not opts["name"]:
        errors.append(entry_error(section, None, "name", "missing multiline parser name"))
    kind = opts["type"]
    if section.find("type") is None:
        errors.append(entry_error(section, None, "type", "missing multiline parser type"))
    if opts["parser"] and opts["parser"] not in known:
        errors.append(entry_error(section, section.find("parser"), "parser",
                                  f"parser '{opts['parser']}' is not defined"))
    try:
        rules = rules_of(opts)
    except ValueError as exc:
        errors.append(entry_error(section, section.find("rule"), "rule", str(exc)))
        return
    if kind == "regex":
        if not rules:
            errors.append(entry_error(section, None, "rule", "a regex multiline parser needs "
                                      "rules"))
        elif "start_state" not in (s.strip() for s in rules[0][0].split(",")):
            errors.append(entry_error(section, section.find("rule") or section.find("rules"),
                                      "rule", "the first rule must be for 'start_state'"))
        for _, pattern, _ in rules:
            _compile(section, "rule" if opts["rule"] else "rules", pattern, errors)
    elif kind in ("endswith", "equal", "eq") and not opts["match_string"]:
        errors.append(entry_error(section, None, "match_string",
                                  f"a {kind} multiline parser needs match_string"))


def validate(model: ConfigModel, errors: list[str], builtin: Iterable[str] = (),
             compile_regexes: bool = True) -> tuple[dict[str, Options], dict[str, Options]]:
    """Check every parser definition; return the parsers and the multiline parsers by name
    (later definitions win). ``compile_regexes=False`` skips compiling parser regexes (for the
    shipped file, whose regexes the test suite compiles: they then compile on first use)."""
    parsers: dict[str, Options] = {}
    multiline: dict[str, Options] = {}
    for section in model.parsers:
        opts = resolve(section, PARSER_OPTIONS, errors, ignore=())
        _check_parser(section, opts, errors, compile_regexes)
        if opts["name"]:
            parsers[opts["name"]] = opts
    known = set(parsers) | set(builtin)
    for section in model.multiline_parsers:
        opts = resolve(section, MULTILINE_OPTIONS, errors, ignore=())
        _check_multiline(section, opts, known, errors)
        if opts["name"]:
            multiline[opts["name"]] = opts
    return parsers, multiline
