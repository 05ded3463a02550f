"""Option tables: each plugin declares its options once, like Fluent Bit's config maps.

Validation, ``rillet -h <plugin>`` and the generated docs all come from these tables.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rillet.config import values
from rillet.config.model import Entry, Section, entry_error


class T(enum.Enum):
    """Option value types (Fluent Bit's FLB_CONFIG_MAP_* types)."""

    STR = "string"
    INT = "integer"
    BOOL = "boolean"
    DOUBLE = "double"
    SIZE = "size"
    TIME = "time"
    CLIST = "comma list"
    SLIST = "space list"
    ANY = "any"  # structured YAML values (lists/maps) or strings


_CONVERT: dict[T, Callable[[str], Any]] = {
    T.STR: lambda s: s,
    T.INT: values.parse_int,
    T.BOOL: values.parse_bool,
    T.DOUBLE: values.parse_double,
    T.SIZE: values.parse_size,
    T.TIME: values.parse_time,
    T.CLIST: values.parse_clist,
    T.SLIST: values.parse_slist,
}


@dataclass(frozen=True)
class Option:
    """One option: name, type, default (as Fluent Bit writes it, or None), one-line doc.

    ``multiple``: the key may repeat; the value is then a list of every occurrence.
    ``prefix``: the name is a prefix (``parser_`` matches ``Parser_1``, ``Parser_2``...); the value
    is a dict from the full key to its value.
    ``choices``: allowed values, compared case-insensitively; the value is lower-cased.
    ``check``: extra validation on the converted value; returns an error reason or None.
    """

    name: str
    type: T
    default: str | None
    doc: str
    multiple: bool = False
    prefix: bool = False
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None

    def convert(self, raw: Any) -> Any:
        if self.type is T.ANY or not isinstance(raw, str):
            if self.type is T.ANY:
                return raw
            raise ValueError(f"expected a {self.type.value}, got a structured value")
        value = _CONVERT[self.type](raw)
        if self.choices is not None:
            low = str(value).strip().lower()
            if low not in self.choices:
                allowed = ", ".join(self.choices)
                raise ValueError(f"invalid value '{raw}', expected one of: {allowed}")
            value = low
        if self.check is not None:
            reason = self.check(value)
            if reason:
                raise ValueError(reason)
        return value

    def default_value(self) -> Any:
        if self.multiple:
            return [] if self.default is None else [self.convert(self.default)]
        if self.prefix:
            return {}
        if self.default is None:
            return None
        return self.convert(self.default)


OptionTable = Sequence[Option]


class Options(dict[str, Any]):
    """Resolved option values, keyed by option name (lower-case, as declared)."""

    def was_set(self, name: str) -> bool:
        return name in self.explicit

    explicit: frozenset[str] = frozenset()
    # Every (option name, converted value) in the order of the configuration's lines, for
    # plugins whose repeated options of different names apply in that order (modify's rules).
    sequence: tuple[tuple[str, Any], ...] = ()


def _match(table: Iterable[Option], key: str) -> Option | None:
    prefix_hit = None
    for opt in table:
        if key == opt.name or key in opt.aliases:
            return opt
        if opt.prefix and key.startswith(opt.name) and len(key) > len(opt.name):
            prefix_hit = opt
    return prefix_hit


def resolve(section: Section, table: OptionTable, errors: list[str],
            ignore: Iterable[str] = ("name",)) -> Options:
    """Validate ``section`` against ``table``; append formatted errors to ``errors``.

    Unknown keys, repeated single-valued keys and bad values are errors (Fluent Bit:
    "unknown configuration property", "configuration property '%s' is set %i times"), reported
    in the order of their lines.
    """
    found: list[tuple[int, str]] = []

    def fail(entry: Entry, reason: str) -> None:
        found.append((entry.line, entry_error(section, entry, entry.key, reason)))

    ignored = set(ignore)
    grouped: dict[str, list[Entry]] = {}
    options: dict[str, Option] = {}
    for entry in section.entries:
        if entry.key in ignored:
            continue
        opt = _match(table, entry.key)
        if opt is None:
            fail(entry, f"unknown configuration property '{entry.key}'")
            continue
        grouped.setdefault(opt.name, []).append(entry)
        options[opt.name] = opt

    out = Options()
    ordered: list[tuple[int, int, str, Any]] = []
    position = {id(entry): i for i, entry in enumerate(section.entries)}
    for opt in table:
        out[opt.name] = opt.default_value()
    for name, entries in grouped.items():
        opt = options[name]
        if not (opt.multiple or opt.prefix) and len(entries) > 1:
            fail(entries[-1], f"configuration property '{entries[-1].key}' is set "
                              f"{len(entries)} times")
            continue
        converted: list[Any] = []
        for entry in entries:
            raw = entry.value
            items = raw if isinstance(raw, list) and opt.multiple and opt.type is not T.ANY \
                else [raw]
            for item in items:
                try:
                    converted.append(opt.convert(item))
                    ordered.append((position[id(entry)], len(ordered), name, converted[-1]))
                except ValueError as exc:
                    fail(entry, str(exc))
        if opt.prefix:
            out[name] = {e.key: v for e, v in zip(entries, converted, strict=False)}
        elif opt.multiple:
            out[name] = converted
        elif converted:
            out[name] = converted[0]
    out.explicit = frozenset(grouped)
    out.sequence = tuple((n, v) for *_, n, v in sorted(ordered, key=lambda o: o[:2]))
    errors.extend(msg for _, msg in sorted(found, key=lambda item: item[0]))
    return out


def help_text(title: str, description: str, table: OptionTable) -> str:
    """The ``rillet -h <plugin>`` text: one line per option."""
    width = max((len(o.name) for o in table), default=10) + 2
    lines = [f"{title}: {description}", ""]
    for opt in table:
        name = opt.name + ("N" if opt.prefix else "")
        default = "" if opt.default is None else f" (default: {opt.default})"
        kind = opt.type.value + (", multiple" if opt.multiple else "")
        lines.append(f"  {name:<{width}}{kind:<16}{opt.doc}{default}")
        if opt.choices:
            lines.append(f"  {'':<{width}}{'':<16}one of: {', '.join(opt.choices)}")
    return "\n".join(lines)
