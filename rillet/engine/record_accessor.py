"""Record accessor templates: names built from a record's keys and its tag.

Two dialects, both accepted in one template:

- Fluent Bit's record accessor (``flb_record_accessor``): ``$key``, ``$key['sub']['subsub']``,
  ``$key[0]`` (list index), ``$TAG`` (the whole tag) and ``$TAG[n]`` (the n-th part of the tag
  split on ``.``). A key name is letters, digits and ``_`` (other keys: ``$a['my-key']``);
  whatever follows it (``.``, ``-``, ``/``...) is literal text, so
  ``$kubernetes['namespace_name'].$TAG[1]`` works.
- The Go plugins' ``$(...)`` form (amazon-cloudwatch-logs-for-fluent-bit):
  ``$(kubernetes['namespace_name'])``, ``$(tag)``, ``$(tag[n])``, ``$(key)``.

A ``$`` that starts neither form is literal text.

:class:`Template` is the general API: ``compile`` once at startup (a syntax error raises
``ValueError``), then ``render(tag, record)`` per record, which returns ``None`` when a referenced
key is missing or is a map or list, so the caller can fall back (both CloudWatch plugins do).
Scalar values print as Fluent Bit prints them: strings raw, booleans ``true``/``false``,
numbers as written by JSON, null as ``null``. ``$0``..``$n`` print the groups of the regex match
passed as ``groups`` (rewrite_tag); ``default`` replaces a missing value instead of giving None.

:func:`key_path` parses a single key as the filters take one (``$a['b'][0]`` or a plain name) into
a :class:`KeyPath` with ``get`` / ``set`` / ``delete``: the one accessor every plugin uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["MISSING", "KeyPath", "Template", "TemplateError", "key_path"]


class TemplateError(ValueError):
    """A template that cannot be parsed (reported as a configuration error)."""


# One subscript: ['name'], ["name"] or [index].
_SUBSCRIPT = re.compile(r"""\[\s*(?:'([^']*)'|"([^"]*)"|(-?\d+))\s*\]""")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_TAG_INDEX = re.compile(r"\[\s*(\d+)\s*\]")

Step = str | int


@dataclass(frozen=True, slots=True)
class KeyPath:
    """A key and its subscripts: ``kubernetes['labels']['app']`` -> ("kubernetes", "labels",
    "app")."""

    steps: tuple[Step, ...]

    def get(self, record: Mapping[str, Any]) -> Any:
        """The value at this path, or ``KeyPath.MISSING``."""
        value: Any = record
        for step in self.steps:
            if type(step) is int:
                if not isinstance(value, list) or not -len(value) <= step < len(value):
                    return MISSING
                value = value[step]
            else:
                if not isinstance(value, dict):
                    return MISSING
                value = value.get(step, MISSING)
                if value is MISSING:
                    return MISSING
        return value

    def parent(self, record: dict[str, Any], create: bool = False) -> Any:
        """The container holding this path's last step (a dict or list), or None. ``create``
        adds missing intermediate maps (never replaces a value that is not a map)."""
        value: Any = record
        for step in self.steps[:-1]:
            if type(step) is int:
                if not isinstance(value, list) or not -len(value) <= step < len(value):
                    return None
                value = value[step]
            elif isinstance(value, dict):
                nxt = value.get(step, MISSING)
                if nxt is MISSING:
                    if not create:
                        return None
                    nxt = value[step] = {}
                value = nxt
            else:
                return None
        return value

    def set(self, record: dict[str, Any], value: Any) -> bool:
        """Set the value at this path (intermediate maps are created); False when a step
        crosses a value that is not a map or list, or an index is out of range."""
        last = self.steps[-1]
        holder = self.parent(record, create=True)
        if type(last) is int:
            if not isinstance(holder, list) or not -len(holder) <= last < len(holder):
                return False
            holder[last] = value
            return True
        if not isinstance(holder, dict):
            return False
        holder[last] = value
        return True

    def delete(self, record: dict[str, Any]) -> bool:
        """Remove the value at this path; False when there is none."""
        last = self.steps[-1]
        holder = self.parent(record)
        if type(last) is int:
            if not isinstance(holder, list) or not -len(holder) <= last < len(holder):
                return False
            del holder[last]
            return True
        if not isinstance(holder, dict) or last not in holder:
            return False
        del holder[last]
        return True

    @property
    def top(self) -> str | None:
        """The key when the path is a single top-level key, else None."""
        head = self.steps[0]
        return head if len(self.steps) == 1 and type(head) is str else None

    def __str__(self) -> str:
        head, *rest = self.steps
        return str(head) + "".join(f"[{s}]" if type(s) is int else f"['{s}']" for s in rest)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

# Part kinds.
_TEXT, _TAG, _TAG_PART, _KEY, _GROUP = 0, 1, 2, 3, 4
_STANDALONE = re.compile(r"\$([^\[\s]+)")


def key_path(source: str) -> KeyPath:
    """A key named the way Fluent Bit's filters take one: ``$key['sub'][0]`` (record accessor)
    or a plain top-level key name (``log``, ``log.level``: the whole text is the key).

    Raises :class:`TemplateError` for an accessor that is not exactly one key."""
    text = source.strip()
    if not text:
        raise TemplateError("empty key")
    if not text.startswith("$"):
        return KeyPath((text,))
    m = _STANDALONE.match(text)
    if m is None:
        raise TemplateError(f"invalid record accessor '{source}'")
    steps, pos = _parse_subscripts(text, m.end())
    if pos != len(text):
        raise TemplateError(f"invalid record accessor '{source}': unexpected "
                            f"'{text[pos:]}'")
    return KeyPath((m.group(1), *steps))


def _scalar(value: Any) -> str | None:
    """How a scalar prints inside a name; None for maps and lists."""
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return orjson.dumps(value).decode()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None


def _parse_subscripts(text: str, pos: int) -> tuple[list[Step], int]:
    steps: list[Step] = []
    while True:
        m = _SUBSCRIPT.match(text, pos)
        if m is None:
            return steps, pos
        quoted = m.group(1) if m.group(1) is not None else m.group(2)
        steps.append(quoted if quoted is not None else int(m.group(3)))
        pos = m.end()


class Template:
    """A compiled template; see the module docstring for the syntax."""

    __slots__ = ("keys", "parts", "source", "uses_groups", "uses_record", "uses_tag")

    def __init__(self, source: str, parts: list[tuple[int, Any]]) -> None:
        self.source = source
        self.parts = parts
        self.keys = [p[1] for p in parts if p[0] == _KEY]
        self.uses_groups = any(p[0] == _GROUP for p in parts)
        self.uses_record = bool(self.keys)
        self.uses_tag = any(p[0] in (_TAG, _TAG_PART) for p in parts)

    @property
    def is_static(self) -> bool:
        """True when the template has no variables at all."""
        return not (self.uses_record or self.uses_tag or self.uses_groups)

    @classmethod
    def compile(cls, source: str) -> Template:
        parts: list[tuple[int, Any]] = []
        text: list[str] = []
        i, n = 0, len(source)

        def flush_text() -> None:
            if text:
                parts.append((_TEXT, "".join(text)))
                text.clear()

        while i < n:
            ch = source[i]
            if ch != "$":
                text.append(ch)
                i += 1
                continue
            if source.startswith("$(", i):
                end = source.find(")", i + 2)
                if end < 0:
                    raise TemplateError(f"unclosed '$(' at position {i} in '{source}'")
                flush_text()
                parts.append(cls._go_variable(source[i + 2:end].strip(), source))
                i = end + 1
                continue
            m = _NAME.match(source, i + 1)
            if m is None:
                text.append(ch)
                i += 1
                continue
            name = m.group(0)
            pos = m.end()
            flush_text()
            if name == "TAG":
                t = _TAG_INDEX.match(source, pos)
                if t is not None:
                    parts.append((_TAG_PART, int(t.group(1))))
                    pos = t.end()
                else:
                    parts.append((_TAG, None))
            elif name.isdigit():
                # $0..$n: a capture group of the regex that matched (rewrite_tag); without
                # groups at render time, a key of that name.
                parts.append((_GROUP, (int(name), KeyPath((name,)))))
            else:
                steps, pos = _parse_subscripts(source, pos)
                parts.append((_KEY, KeyPath((name, *steps))))
            i = pos
        flush_text()
        return cls(source, parts)

    @staticmethod
    def _go_variable(inner: str, source: str) -> tuple[int, Any]:
        m = _NAME.match(inner)
        if m is None:
            raise TemplateError(f"invalid variable '$({inner})' in '{source}'")
        name = m.group(0)
        rest = inner[m.end():]
        if name == "tag":
            if not rest:
                return (_TAG, None)
            t = _TAG_INDEX.fullmatch(rest)
            if t is None:
                raise TemplateError(f"invalid variable '$({inner})' in '{source}'")
            return (_TAG_PART, int(t.group(1)))
        if name in ("ecs_cluster", "ecs_task_arn", "ecs_task_id", "uuid"):
            raise TemplateError(f"'$({name})' is not supported (ECS task metadata and random "
                                f"names are not available): '{source}'")
        steps, pos = _parse_subscripts(rest, 0)
        if pos != len(rest):
            raise TemplateError(f"invalid variable '$({inner})' in '{source}'")
        return (_KEY, KeyPath((name, *steps)))

    def render(self, tag: str, record: Mapping[str, Any] | None = None,
               groups: re.Match[str] | None = None, default: str | None = None) -> str | None:
        """The template's text for ``tag`` and ``record``. A variable without a value (missing
        key, map or list value, tag part out of range) makes the result None, or prints as
        ``default`` when one is given (Fluent Bit's translation prints nothing). ``groups``:
        the regex match whose groups ``$0..$n`` name (a group that did not take part prints as
        nothing)."""
        out: list[str] = []
        tag_parts: list[str] | None = None
        for kind, arg in self.parts:
            s: str | None
            if kind == _TEXT:
                s = arg
            elif kind == _TAG:
                s = tag
            elif kind == _TAG_PART:
                if tag_parts is None:
                    tag_parts = tag.split(".")
                s = tag_parts[arg] if arg < len(tag_parts) else None
            elif kind == _GROUP and groups is not None:
                index = arg[0]
                s = (groups.group(index) or "") if index <= groups.re.groups else ""
            else:
                path = arg[1] if kind == _GROUP else arg
                s = _scalar(path.get(record)) if record is not None else None
            if s is None:
                if default is None:
                    return None
                s = default
            out.append(s)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def has_variables(source: str) -> bool:
    """Whether ``source`` contains any template variable (cheap check for plain names)."""
    return "$" in source and not Template.compile(source).is_static
