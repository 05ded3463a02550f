"""``modify`` filter: change records' top-level keys when conditions hold (Fluent Bit's
filter_modify).

Rules (``Set``, ``Add``, ``Remove``, ``Remove_wildcard``, ``Remove_regex``, ``Rename``,
``Hard_rename``, ``Copy``, ``Hard_copy``, ``Move_to_start``, ``Move_to_end``) apply in the order
of the configuration's lines, each on the result of the previous one, and only to records for
which every ``Condition`` holds. Values are strings; a value with spaces is written in double
quotes (``Set msg "hello world"``), as Fluent Bit splits rule arguments.

What each rule does to the key order, as Fluent Bit packs the new record: ``Set`` on an existing
key moves it to the end with its new value; ``Rename``/``Hard_rename`` keep the key's position;
``Copy``/``Hard_copy`` put the copy right after its source. A wildcard (``Remove_wildcard``,
``Move_to_*``) is a key prefix (a trailing ``*`` is dropped). Conditions compare string values
only: a key whose value is a number, boolean, null, map or list never equals nor matches a
string. Condition keys may be record accessors (``$kubernetes['labels']['app']``); rule keys
are top-level keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch, Body
from rillet.engine.plugin import Filter, register
from rillet.engine.record_accessor import MISSING, KeyPath, TemplateError, key_path
from rillet.filters.records import escape_finder, key_needle, map_records
from rillet.parsers.regex import RegexError, compile_ruby

Record = dict[str, Any]
# An operation returns the changed record (possibly a new dict) or None when it changed nothing.
Op = Callable[[Record], Record | None]
Check = Callable[[Record], bool]


def split_tokens(text: str, max_split: int) -> list[str]:
    """Fluent Bit's argument splitting: whitespace-separated tokens, a double-quoted token may
    hold spaces (quotes removed); the ``max_split``-th token is the rest of the text."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        if len(out) == max_split - 1:
            rest = text[i:].rstrip()
            if len(rest) >= 2 and rest[0] == '"' and rest[-1] == '"':
                rest = rest[1:-1]
            out.append(rest)
            break
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise ValueError(f"unbalanced quotes in '{text}'")
            out.append(text[i + 1:end])
            i = end + 1
            continue
        start = i
        while i < n and not text[i].isspace():
            i += 1
        out.append(text[start:i])
    return out


def wildcard(pattern: str) -> Callable[[str], bool]:
    """Fluent Bit's key wildcard: a prefix, with one trailing ``*`` dropped (``Mem`` and
    ``Mem*`` both match ``Mem.total``)."""
    prefix = pattern[:-1] if pattern.endswith("*") else pattern
    return lambda key: key.startswith(prefix)


def _regex(text: str, what: str) -> re.Pattern[str]:
    try:
        return compile_ruby(text)
    except RegexError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _path(text: str, what: str) -> KeyPath:
    try:
        return key_path(text)
    except TemplateError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _args(text: str, count: int, what: str) -> list[str]:
    try:
        args = split_tokens(text, count)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if len(args) != count:
        raise ValueError(f"{what}: expected {count} argument{'s' if count > 1 else ''}, "
                         f"got '{text}'")
    return args


# --- rules ----------------------------------------------------------------------------------

def _set(key: str, value: str) -> Op:
    def op(r: Record) -> Record | None:
        if key in r:
            del r[key]
        r[key] = value
        return r
    return op


def _add(key: str, value: str) -> Op:
    def op(r: Record) -> Record | None:
        if key in r:
            return None
        r[key] = value
        return r
    return op


def _remove(key: str) -> Op:
    def op(r: Record) -> Record | None:
        if key not in r:
            return None
        del r[key]
        return r
    return op


def _remove_matching(match: Callable[[str], Any]) -> Op:
    def op(r: Record) -> Record | None:
        gone = [k for k in r if match(k)]
        if not gone:
            return None
        for k in gone:
            del r[k]
        return r
    return op


def _rename(old: str, new: str, hard: bool) -> Op:
    def op(r: Record) -> Record | None:
        if old not in r or old == new or (new in r and not hard):
            return None
        return {(new if k == old else k): v for k, v in r.items() if k != new}
    return op


def _copy(src: str, dst: str, hard: bool) -> Op:
    def op(r: Record) -> Record | None:
        if src not in r or src == dst or (dst in r and not hard):
            return None
        value = r[src]
        out: Record = {}
        for k, v in r.items():
            if k == dst:
                continue  # Hard_copy: the old target goes
            out[k] = v
            if k == src:
                out[dst] = value  # the copy follows its source, as Fluent Bit packs it
        return out
    return op


def _move(match: Callable[[str], Any], to_start: bool) -> Op:
    def op(r: Record) -> Record | None:
        moved = [k for k in r if match(k)]
        if not moved:
            return None
        rest = [k for k in r if not match(k)]
        order = moved + rest if to_start else rest + moved
        return {k: r[k] for k in order}
    return op


def make_rule(name: str, text: str) -> Op:
    what = f"{name.capitalize()} '{text}'"
    if name in ("set", "add"):
        key, value = _args(text, 2, what)
        return _set(key, value) if name == "set" else _add(key, value)
    if name in ("rename", "hard_rename", "copy", "hard_copy"):
        a, b = _args(text, 2, what)
        if name.endswith("rename"):
            return _rename(a, b, name == "hard_rename")
        return _copy(a, b, name == "hard_copy")
    (arg,) = _args(text, 1, what)
    if name == "remove":
        return _remove(arg)
    if name == "remove_regex":
        return _remove_matching(_regex(arg, what).search)
    match = wildcard(arg)
    if name == "remove_wildcard":
        return _remove_matching(match)
    return _move(match, name == "move_to_start")


# --- conditions -----------------------------------------------------------------------------

def _value(path: KeyPath) -> Callable[[Record], Any]:
    top = path.top
    if top is not None:
        return lambda r: r.get(top, MISSING)
    return path.get


CONDITIONS = {
    # name -> number of arguments
    "key_exists": 1, "key_does_not_exist": 1, "a_key_matches": 1, "no_key_matches": 1,
    "key_value_equals": 2, "key_value_does_not_equal": 2, "key_value_matches": 2,
    "key_value_does_not_match": 2, "matching_keys_have_matching_values": 2,
    "matching_keys_do_not_have_matching_values": 2,
}


def make_condition(text: str) -> Check:
    parts = text.strip().split(None, 1)
    if not parts:
        raise ValueError("Condition: empty")
    kind = parts[0].lower()
    count = CONDITIONS.get(kind)
    if count is None:
        raise ValueError(f"Condition '{text}': unknown condition '{parts[0]}'")
    what = f"Condition '{text}'"
    args = _args(parts[1] if len(parts) > 1 else "", count, what)
    if kind in ("a_key_matches", "no_key_matches"):
        search = _regex(args[0], what).search
        if kind == "a_key_matches":
            return lambda r: any(search(k) for k in r)
        return lambda r: not any(search(k) for k in r)
    if kind.startswith("matching_keys"):
        key_search = _regex(args[0], what).search
        val_search = _regex(args[1], what).search
        have = kind == "matching_keys_have_matching_values"

        def matching(r: Record) -> bool:
            # Every key that matches has a (string) value that matches; "do not" negates it.
            for k, v in r.items():
                if key_search(k) and not (type(v) is str and val_search(v) is not None):
                    return not have
            return have
        return matching
    get = _value(_path(args[0], what))
    if kind == "key_exists":
        return lambda r: get(r) is not MISSING
    if kind == "key_does_not_exist":
        return lambda r: get(r) is MISSING
    if kind == "key_value_equals":
        expected = args[1]
        return lambda r: get(r) == expected
    if kind == "key_value_does_not_equal":
        expected = args[1]

        def differs(r: Record) -> bool:
            v = get(r)
            return v is not MISSING and v != expected
        return differs
    search = _regex(args[1], what).search
    if kind == "key_value_matches":
        def value_matches(r: Record) -> bool:
            v = get(r)
            return type(v) is str and search(v) is not None
        return value_matches

    def value_differs(r: Record) -> bool:
        v = get(r)
        return v is not MISSING and not (type(v) is str and search(v) is not None)
    return value_differs


RULES = ("set", "add", "remove", "remove_wildcard", "remove_regex", "rename", "hard_rename",
         "copy", "hard_copy", "move_to_start", "move_to_end")
_DOCS = {
    "set": "KEY VALUE: add the key, or replace its value",
    "add": "KEY VALUE: add the key if it is not there",
    "remove": "KEY: remove the key",
    "remove_wildcard": "WILDCARD: remove the keys matching",
    "remove_regex": "REGEX: remove the keys matching",
    "rename": "KEY NEW: rename if NEW is not there",
    "hard_rename": "KEY NEW: rename, replacing NEW",
    "copy": "KEY NEW: copy the value to NEW if NEW is not there",
    "hard_copy": "KEY NEW: copy the value to NEW, replacing it",
    "move_to_start": "WILDCARD: move the keys matching to the start",
    "move_to_end": "WILDCARD: move the keys matching to the end",
}


@register
class ModifyFilter(Filter):
    name = "modify"
    description = "modify records by applying rules"
    options = (
        *(Option(rule, T.STR, None, _DOCS[rule] + " (repeatable)", multiple=True)
          for rule in RULES),
        Option("condition", T.STR, None, "CONDITION ARGS: rules apply only when every "
               "condition holds (repeatable)", multiple=True),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        ops: list[Op] = []
        checks: list[Check] = []
        sequence = self.opts.sequence or tuple(
            (name, v) for name in (*RULES, "condition") for v in self.opts[name])
        for name, value in sequence:
            if name == "condition":
                checks.append(make_condition(value))
            elif name in RULES:
                ops.append(make_rule(name, value))
        if not ops:
            raise ValueError("no rules: set at least one of " + ", ".join(RULES))
        self.ops = ops
        self.checks = checks
        self._splice = self._append_only(sequence)

    def _append_only(self, sequence: tuple[tuple[str, Any], ...]) -> tuple[bytes, Any] | None:
        """When every rule is Add/Set and there is no condition, a serialized body holding none
        of their keys only gains fields at its end: (the JSON text to append, a search for
        what prevents that), spliced in without decoding the body."""
        if self.checks or any(name not in ("add", "set") for name, _ in sequence
                               if name in RULES):
            return None
        appended: Record = {}
        for op in self.ops:
            appended = op(appended) or appended
        needles = [key_needle(k) for k in appended]
        if None in needles:
            return None
        keys = [n for n in needles if n is not None]
        hidden = escape_finder(keys)

        def blocked(body: bytes) -> bool:
            """A key is in the text, or an escape may hide one: decode the body."""
            for key in keys:
                if key in body:
                    return True
            return hidden(body) is not None
        return orjson.dumps(appended)[1:-1], blocked

    def _spliced(self, body: bytes) -> bytes | None:
        """``body`` with the Add/Set fields appended, or None when it must be decoded."""
        assert self._splice is not None
        text, blocked = self._splice
        if body[-1:] != b"}" or body[:1] != b"{" or blocked(body):
            return None
        if len(body) == 2:
            return b"{" + text + b"}"
        return body[:-1] + b"," + text + b"}"

    def apply(self, record: Record) -> Record | None:
        """The modified record, or None when the conditions fail or nothing changed."""
        for check in self.checks:
            if not check(record):
                return None
        changed = False
        for op in self.ops:
            out = op(record)
            if out is not None:
                record = out
                changed = True
        return record if changed else None

    def filter(self, batch: Batch) -> Batch:
        if self._splice is not None:
            spliced = self._spliced
            apply = self.apply
            bodies: list[Body] = []
            for body in batch.bodies:
                new: Body | None = spliced(body) if type(body) is bytes else None
                if new is None:
                    one = map_records((body,), apply)
                    new = one[0] if one is not None else body
                bodies.append(new)
            batch.bodies = bodies
            return batch
        out = map_records(batch.bodies, self.apply)
        if out is not None:
            batch.bodies = out
        return batch
