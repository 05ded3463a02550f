"""Fluent Bit's built-in multiline parsers: docker, cri, go, python, java, ruby.

The rules are facts taken from Fluent Bit's ``src/multiline/flb_ml_parser_*.c`` (each rule is
``from states, regex, to state``; a rule whose from states include ``start_state`` can begin a
message). Docker and CRI lines are pre-parsed by Fluent Bit's private ``_ml_json_docker`` and
``_ml_cri`` parsers; here they are two small fast parsers with the same output.
"""

from __future__ import annotations

from typing import Any

import orjson

from rillet.parsers.regex import compile_ruby
from rillet.parsers.timefmt import rfc3339_ns

# name -> (type, match_string, key_content, key_group, key_pattern, rules)
RuleDef = tuple[str, str, str]

GO_RULES: tuple[RuleDef, ...] = (
    ("start_state", r"/\bpanic: /", "go_after_panic"),
    ("start_state", r"/http: panic serving/", "go_goroutine"),
    ("go_after_panic", r"/^$/", "go_goroutine"),
    ("go_after_panic, go_after_signal, go_frame_1", r"/^$/", "go_goroutine"),
    ("go_after_panic", r"/^\[signal /", "go_after_signal"),
    ("go_goroutine", r"/^goroutine \d+ \[[^\]]+\]:$/", "go_frame_1"),
    ("go_frame_1", r"/^(?:[^\s.:]+\.)*[^\s.():]+\(|^created by /", "go_frame_2"),
    ("go_frame_2", r"/^\s/", "go_frame_1"),
)

PYTHON_RULES: tuple[RuleDef, ...] = (
    ("start_state", r"/^Traceback \(most recent call last\):$/", "python"),
    ("python", r"/^[\t ]+File /", "python_code"),
    ("python_code", r"/[^\t ]/", "python"),
    ("python", r"/^(?:[^\s.():]+\.)*[^\s.():]+:/", "start_state"),
)

JAVA_RULES: tuple[RuleDef, ...] = (
    ("start_state, java_start_exception",
     r"/(.)(?:Exception|Error|Throwable|V8 errors stack trace)[:\r\n]/", "java_after_exception"),
    ("java_after_exception", r"/^[\t ]*nested exception is:[\t ]*/", "java_start_exception"),
    ("java_after_exception", r"/^[\r\n]*$/", "java_after_exception"),
    ("java_after_exception, java", r"/^[\t ]+(?:eval )?at /", "java"),
    # C# nested exception
    ("java_after_exception, java", r"/^[\t ]+--- End of inner exception stack trace ---$/",
     "java"),
    # C# exception from async code
    ("java_after_exception, java",
     r"/^--- End of stack trace from previous (?x:)location where exception was thrown ---$/",
     "java"),
    ("java_after_exception, java", r"/^[\t ]*(?:Caused by|Suppressed):/",
     "java_after_exception"),
    ("java_after_exception, java", r"/^[\t ]*... \d+ (?:more|common frames omitted)/", "java"),
)

RUBY_RULES: tuple[RuleDef, ...] = (
    ("start_state, ruby_start_exception", r"/^.+:\d+:in\s+.*/", "ruby_after_exception"),
    ("ruby_after_exception, ruby", r"/^\s+from\s+.*:\d+:in\s+.*/", "ruby"),
)

REGEX_BUILTINS: dict[str, tuple[RuleDef, ...]] = {
    "go": GO_RULES,
    "python": PYTHON_RULES,
    "java": JAVA_RULES,
    "ruby": RUBY_RULES,
}

_loads = orjson.loads
_JSONError = orjson.JSONDecodeError


class DockerLineParser:
    """``_ml_json_docker``: one JSON object per line; ``time`` (kept) gives the record time."""

    name = "_ml_json_docker"
    format = "json"
    time_key = "time"

    def parse(self, data: bytes | str) -> tuple[dict[str, Any], int | None] | None:
        try:
            record = _loads(data)
        except (_JSONError, TypeError, ValueError):
            return None
        if type(record) is not dict:
            return None
        stamp = record.get("time")
        return record, (rfc3339_ns(stamp) if type(stamp) is str else None)


# Fluent Bit's FLB_ML_CRI_REGEX (Onigmo syntax), used when the fast split below does not apply.
_CRI = compile_ruby(r"^(?<time>.+?) (?<stream>stdout|stderr) (?<_p>F|P) (?<log>.*)$")
_STREAMS = frozenset(("stdout", "stderr"))
_TAGS = frozenset(("F", "P"))


class CriLineParser:
    """``_ml_cri``: ``<time> <stream> <P|F> <log>`` -> ``{time, stream, _p, log}`` (time kept)."""

    name = "_ml_cri"
    format = "regex"
    time_key = "time"

    def parse(self, data: bytes | str) -> tuple[dict[str, Any], int | None] | None:
        if type(data) is not str:
            try:
                data = data.decode("utf-8", "surrogateescape")  # type: ignore[union-attr]
            except (AttributeError, UnicodeDecodeError):
                return None
        text: str = data  # type: ignore[assignment]
        parts = text.split(" ", 3)
        if len(parts) == 4 and parts[1] in _STREAMS and parts[2] in _TAGS and \
                "\n" not in parts[3]:
            stamp = parts[0]
            record = {"time": stamp, "stream": parts[1], "_p": parts[2], "log": parts[3]}
        else:
            m = _CRI.match(text)
            if m is None:
                return None
            stamp = m.group("time")
            record = m.groupdict()
        return record, rfc3339_ns(stamp)
