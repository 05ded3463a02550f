"""One typed model for both configuration formats.

The classic reader and the YAML reader both produce a :class:`ConfigModel`; everything after
reading (option validation, plugin construction, the engine) sees only this model. Every entry
remembers the file and line it came from so errors can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    """One ``key value`` line. Keys are lower-cased; values are strings after ``${VAR}`` expansion.

    YAML may give structured values (for example a multiline parser's ``rules`` list); those are
    kept as they are in ``value``.
    """

    key: str
    value: Any
    file: str
    line: int


@dataclass
class Section:
    """A ``[INPUT]``/``[FILTER]``/... section or a YAML pipeline item.

    ``kind`` is the lower-cased section name: service, input, filter, output, parser,
    multiline_parser, plugins, upstream, node, custom, stream_task.
    """

    kind: str
    file: str
    line: int
    entries: list[Entry] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        """Value of the last entry named ``key`` (case-insensitive), or ``default``."""
        key = key.lower()
        for entry in reversed(self.entries):
            if entry.key == key:
                return entry.value
        return default

    def get_all(self, key: str) -> list[Any]:
        key = key.lower()
        return [e.value for e in self.entries if e.key == key]

    def find(self, key: str) -> Entry | None:
        key = key.lower()
        for entry in reversed(self.entries):
            if entry.key == key:
                return entry
        return None

    def set(self, key: str, value: Any, file: str = "<cli>", line: int = 0) -> None:
        self.entries.append(Entry(key.lower(), value, file, line))

    @property
    def name(self) -> str:
        """The plugin name (``Name`` key), lower-cased, or '' when missing."""
        value = self.get("name")
        return str(value).strip().lower() if value is not None else ""

    @property
    def label(self) -> str:
        """How errors name this section, e.g. ``[INPUT] tail``."""
        name = self.name
        head = f"[{self.kind.upper()}]"
        return f"{head} {name}" if name else head


@dataclass
class ConfigModel:
    """A whole configuration: service settings, pipeline sections and parser definitions."""

    service: Section
    inputs: list[Section] = field(default_factory=list)
    filters: list[Section] = field(default_factory=list)
    outputs: list[Section] = field(default_factory=list)
    parsers: list[Section] = field(default_factory=list)
    multiline_parsers: list[Section] = field(default_factory=list)
    plugins: list[Section] = field(default_factory=list)
    upstreams: list[Section] = field(default_factory=list)
    customs: list[Section] = field(default_factory=list)
    # Variables from @SET / YAML env, used for ${VAR} expansion.
    variables: dict[str, str] = field(default_factory=dict)
    # Every file read, in order (the root file first).
    files: list[str] = field(default_factory=list)
    # Warnings produced while reading (unset variables, sections without keys, ...).
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, file: str = "<cli>") -> ConfigModel:
        return cls(service=Section("service", file, 0))

    def pipeline(self) -> list[Section]:
        """Inputs, filters and outputs, in that order."""
        return [*self.inputs, *self.filters, *self.outputs]


class ConfigError(Exception):
    """One or more configuration errors, each formatted as ``file:line: section: key: reason``."""

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


def where(file: str, line: int) -> str:
    return f"{file}:{line}" if line else file


def entry_error(section: Section, entry: Entry | None, key: str, reason: str) -> str:
    """Format an error the one way rillet does: ``file:line: section: key: reason``."""
    loc = where(entry.file, entry.line) if entry is not None else where(section.file, section.line)
    return f"{loc}: {section.label}: {key}: {reason}"
