"""``grep`` filter: keep or drop records by regular expressions on their fields (Fluent Bit's
filter_grep).

``Regex KEY REGEX`` keeps the records whose KEY matches, ``Exclude KEY REGEX`` drops them. KEY is
a top-level key or a record accessor (``$kubernetes['labels']['app']``); REGEX is Onigmo syntax
searched anywhere in the value (not anchored). Only string values can match: a missing key, a
number, a boolean, null, a map or a list never does, as in Fluent Bit.

``Logical_Op``:

- ``legacy`` (default): rules in order; a record goes as soon as a Regex rule fails or an
  Exclude rule matches.
- ``AND`` / ``OR``: every / any rule must match; the rules must then be all Regex (keep on
  success) or all Exclude (drop on success), as Fluent Bit requires.

Serialized records whose text shows that no rule can match are not decoded: unless a ``\\u``
escape hides one of their characters, keys and plain ASCII text appear verbatim in a body, so a
rule whose top-level key, or whose literal pattern (``kube-probe``), is absent from the text
cannot match.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch, Body
from rillet.engine.plugin import Filter, register
from rillet.engine.record_accessor import MISSING, KeyPath, TemplateError, key_path
from rillet.filters.records import escape_finder, key_needle, literal
from rillet.parsers.regex import RegexError, compile_ruby

_loads = orjson.loads

REGEX, EXCLUDE = 0, 1
_META = frozenset(".^$*+?{}[]\\|()")
LEGACY, AND, OR = "legacy", "and", "or"


def split_rule(text: str, what: str) -> tuple[str, str]:
    """``KEY REGEX`` -> (key, regex); the regex is the rest of the line after the key."""
    parts = text.strip().split(None, 1)
    if len(parts) != 2:
        raise ValueError(f"{what}: expected 'KEY REGEX', got '{text}'")
    return parts[0], parts[1].strip()


class Rule:
    __slots__ = ("kind", "literal", "needle", "path", "rx", "top")

    def __init__(self, kind: int, text: str, what: str) -> None:
        key, pattern = split_rule(text, what)
        try:
            self.path: KeyPath = key_path(key)
            self.rx: re.Pattern[str] = compile_ruby(pattern)
        except (TemplateError, RegexError) as exc:
            raise ValueError(f"{what} '{text}': {exc}") from None
        self.kind = kind
        self.top = self.path.top
        # Texts a serialized body must hold for this rule to match (see records.spelled).
        self.needle = key_needle(self.top) if self.top is not None else None
        self.literal = literal(pattern) if not _META.intersection(pattern) else None

    def cannot_match(self, body: bytes) -> bool:
        """For a spelled body: True when the text shows the rule cannot match."""
        return (self.needle is not None and self.needle not in body) or \
            (self.literal is not None and self.literal not in body)

    def matches(self, record: dict[str, Any]) -> bool:
        value = record.get(self.top, MISSING) if self.top is not None \
            else self.path.get(record)
        return type(value) is str and self.rx.search(value) is not None


@register
class GrepFilter(Filter):
    name = "grep"
    description = "grep events by specified field values"
    options = (
        Option("regex", T.STR, None, "KEY REGEX: keep records whose KEY matches (repeatable)",
               multiple=True),
        Option("exclude", T.STR, None, "KEY REGEX: drop records whose KEY matches (repeatable)",
               multiple=True),
        Option("logical_op", T.STR, "legacy", "how rules combine: legacy, AND or OR",
               choices=(LEGACY, AND, OR)),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        rules: list[Rule] = []
        for name, value in self.opts.sequence:
            if name == "regex":
                rules.append(Rule(REGEX, value, "Regex"))
            elif name == "exclude":
                rules.append(Rule(EXCLUDE, value, "Exclude"))
        if not rules:  # options built without their order (direct construction)
            rules = [Rule(REGEX, v, "Regex") for v in self.opts["regex"]]
            rules += [Rule(EXCLUDE, v, "Exclude") for v in self.opts["exclude"]]
        self.op: str = self.opts["logical_op"]
        if self.op != LEGACY and len({r.kind for r in rules}) > 1:
            raise ValueError("Regex and Exclude cannot be mixed with Logical_Op "
                             f"{self.op.upper()}")
        if not rules:
            self.log.warning("no Regex or Exclude rule: every record passes")
        self.rules = rules
        # A body whose text shows that no rule can match needs no decoding.
        checkable = rules and all(r.needle is not None or r.literal is not None for r in rules)
        self._checks = [r.cannot_match for r in rules] if checkable else None
        self._hidden = escape_finder((r.needle or b"") + (r.literal or b"") for r in rules)
        self._absent_keeps = self.keeps_record({})
        self._keeps = self.keeps_record
        if len(rules) == 1 and rules[0].top is not None:
            key, search, want = rules[0].top, rules[0].rx.search, rules[0].kind == REGEX

            def one_rule(record: dict[str, Any]) -> bool:
                value = record.get(key)
                return (type(value) is str and search(value) is not None) is want

            self._keeps = one_rule

    def keeps_record(self, record: dict[str, Any]) -> bool:
        rules = self.rules
        if self.op == LEGACY:
            return all(rule.matches(record) == (rule.kind == REGEX) for rule in rules)
        if not rules:
            return True
        if self.op == AND:
            hit = all(rule.matches(record) for rule in rules)
        else:
            hit = any(rule.matches(record) for rule in rules)
        return hit if rules[0].kind == REGEX else not hit

    def filter(self, batch: Batch) -> Batch:
        if not self.rules:
            return batch
        keeps = self._keeps
        checks = self._checks
        hidden = self._hidden
        # One rule: its texts inline (empty when absent: b"" is in every body).
        needle = literal = b""
        if checks is not None and len(checks) == 1:
            needle, literal = self.rules[0].needle or b"", self.rules[0].literal or b""
            if not (needle and literal):
                needle = literal = needle or literal
        absent_keeps = self._absent_keeps
        out_times: list[int] = []
        out_bodies: list[Body] = []
        add_time = out_times.append
        add_body = out_bodies.append
        dropped_bytes = 0
        for t, body in zip(batch.times, batch.bodies, strict=True):
            if type(body) is bytes:
                if checks is not None and (
                        (needle not in body or literal not in body) if needle
                        else all(check(body) for check in checks)) and hidden(body) is None:
                    keep = absent_keeps
                else:
                    try:
                        record = _loads(body)
                    except orjson.JSONDecodeError:
                        record = None
                    keep = keeps(record) if type(record) is dict else absent_keeps
            else:
                keep = keeps(body)  # type: ignore[arg-type]
            if keep:
                add_time(t)
                add_body(body)
            elif type(body) is bytes:
                dropped_bytes += len(body)
        if len(out_bodies) != len(batch.bodies):
            batch.size = max(0, batch.size - dropped_bytes) if dropped_bytes else \
                batch.size * len(out_bodies) // max(1, len(batch.bodies))
            batch.times = out_times
            batch.bodies = out_bodies
        return batch
