"""The classic ``.conf`` reader, following ``src/config_format/flb_cf_fluentbit.c`` line by line.

Existing configurations (Helm charts, the AWS samples) depend on the exact rules, including the
odd ones, so they are kept: the first indented line of each file fixes that file's indent; a
line indented by exactly twice that indent is accepted (Fluent Bit's "group content"); the key
ends at the first *space* (a tab is not a separator); ``#`` starts a comment only at column 0
or right after the indent; ``@INCLUDE`` globs that match nothing and files read twice are
errors; ``@SET`` variables apply to the whole configuration, wherever they are written.

Unlike Fluent Bit, the reader does not stop at the first problem: it reports every problem it
can find in one :class:`ConfigError`. It also holds the helpers the YAML reader shares (reading
a file, placing a section in the model, problems that name a section and key).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from rillet.config.env import expand_entries
from rillet.config.model import ConfigError, ConfigModel, Entry, Section, entry_error

# What Fluent Bit's ``flb_sds_trim`` removes (C ``isspace``), without Python's Unicode spaces.
WHITESPACE = " \t\n\r\f\v"
_BLANK = " \t"

_LISTS: dict[str, Callable[[ConfigModel], list[Section]]] = {
    "input": lambda m: m.inputs,
    "filter": lambda m: m.filters,
    "output": lambda m: m.outputs,
    "parser": lambda m: m.parsers,
    "multiline_parser": lambda m: m.multiline_parsers,
    "plugins": lambda m: m.plugins,
    "upstream": lambda m: m.upstreams,
    "node": lambda m: m.upstreams,
    "custom": lambda m: m.customs,
}

#: Every section kind a classic file may declare (lower case).
SECTION_KINDS = frozenset({"service", *_LISTS})
#: The kinds a parsers file may declare.
PARSER_KINDS = frozenset({"parser", "multiline_parser"})
#: The kinds the main configuration file may declare (Fluent Bit rejects parsers there).
MAIN_KINDS = SECTION_KINDS - PARSER_KINDS


@dataclass
class Problem:
    """An error about one key of one section, formatted only when reported.

    The section's ``Name`` may come after the bad line, so the label is built at the end.
    """

    section: Section
    entry: Entry
    reason: str

    def __str__(self) -> str:
        return entry_error(self.section, self.entry, self.entry.key, self.reason)


def report(problems: list[str | Problem]) -> None:
    """Raise one ConfigError carrying every problem, if there are any."""
    if problems:
        raise ConfigError([str(problem) for problem in problems])


def read_source(path: str) -> str:
    """The text of ``path``: UTF-8, a leading byte-order mark dropped."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: the file is not valid UTF-8 text") from None


def file_identity(path: str) -> tuple[int, int]:
    """(device, inode) of ``path``: two names for one file are the same file."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def attach_section(model: ConfigModel, kind: str, file: str, line: int) -> Section:
    """A new section of ``kind`` appended to its list; ``service`` sections all merge."""
    if kind == "service":
        service = model.service
        if service.line == 0 and not service.entries:
            service.file, service.line = file, line
        return service
    section = Section(kind, file, line)
    _LISTS[kind](model).append(section)
    return section


def resolve_from(path: str, base_dir: str) -> str:
    """Fluent Bit's lookup for a relative file: as given (from the working directory) if it
    exists there, else relative to ``base_dir``."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(base_dir, path)


def check_indent(line: str, indent: str) -> tuple[int, str | None]:
    """``check_indent`` of flb_cf_fluentbit.c: (length of the indentation, problem or None).

    The line must start with ``indent``; it may then have exactly ``len(indent)`` more blanks
    (Fluent Bit's group content), nothing else.
    """
    common = 0
    while common < len(indent) and common < len(line) and line[common] == indent[common]:
        common += 1
    if common < len(indent):
        if common < len(line) and line[common] in _BLANK:
            return 0, "inconsistent use of tab and space"
        return 0, "indentation level is too low"
    extra = len(line) - len(line.lstrip(_BLANK)) - len(indent)
    if extra == 0:
        return len(indent), None
    if extra == len(indent):
        return 2 * len(indent), None
    return 0, "extra indentation level found"


@dataclass
class _Header:
    """One ``[NAME]`` line, to warn when no key follows it."""

    name: str
    file: str
    line: int
    keys: int = 0


@dataclass
class _FileState:
    """What Fluent Bit keeps per file: the indent and the current section."""

    path: str
    indent: str | None = None
    section: Section | None = None
    header: _Header | None = None


@dataclass
class _ClassicReader:
    model: ConfigModel
    root_dir: str
    allowed: Collection[str]
    role: str
    problems: list[str | Problem] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)
    headers: list[_Header] = field(default_factory=list)
    new_entries: list[Entry] = field(default_factory=list)

    # -- files -------------------------------------------------------------------------------

    def read_file(self, path: str) -> None:
        text = read_source(path)
        self.seen.add(file_identity(path))
        self.model.files.append(path)
        state = _FileState(path)
        for number, raw in enumerate(text.split("\n"), start=1):
            self._line(state, raw[:-1] if raw.endswith("\r") else raw, number)

    def finish(self) -> None:
        for header in self.headers:
            if header.keys == 0:
                self.model.warnings.append(
                    f"{header.file}:{header.line}: section [{header.name}] did not have keys")
        expand_entries(self.new_entries, self.model.variables, self.model.warnings)
        report(self.problems)

    def _error(self, state: _FileState, number: int, reason: str) -> None:
        self.problems.append(f"{state.path}:{number}: {reason}")

    # -- lines -------------------------------------------------------------------------------

    def _line(self, state: _FileState, line: str, number: int) -> None:
        if not line.strip(_BLANK) or line.startswith("#"):
            return
        if line.startswith("@"):
            self._meta(state, line, number)
        elif line.startswith("["):
            self._header(state, line, number)
        else:
            self._indented(state, line, number)

    def _header(self, state: _FileState, line: str, number: int) -> None:
        end = line.find("]")
        name = line[1:end] if end > 0 else line[1:]
        kind = name.lower()
        # Until the next good header, keys go to a detached section: checked, then dropped.
        state.section, state.header = Section(kind, state.path, number), None
        if end < 0:
            self._error(state, number, "bad header definition")
            return
        if kind == "stream_task":
            self._error(state, number, "[STREAM_TASK]: stream processor is not supported")
        elif kind not in SECTION_KINDS:
            self._error(state, number, f"unknown section [{name}]")
        elif kind not in self.allowed:
            self._error(state, number, f"[{name.upper()}] sections are not valid in {self.role}")
        else:
            state.section = attach_section(self.model, kind, state.path, number)
            state.header = _Header(name.upper(), state.path, number)
            self.headers.append(state.header)

    def _indented(self, state: _FileState, line: str, number: int) -> None:
        if state.indent is None:
            width = len(line) - len(line.lstrip(_BLANK))
            if width == 0:
                self._error(state, number, "indentation level is too low")
                return
            state.indent = line[:width]
        level, problem = check_indent(line, state.indent)
        if problem:
            self._error(state, number, problem)
            return
        content = line[level:]
        if content.startswith("#"):
            return
        if content.startswith("["):
            self._error(state, number, "groups ('[name]' lines inside a section) are not supported")
            return
        self._key_value(state, content, number)

    def _key_value(self, state: _FileState, content: str, number: int) -> None:
        key, space, value = content.partition(" ")
        if not space:
            key = key.split("\t", 1)[0]
        entry = Entry(key.strip(WHITESPACE).lower(), value.strip(WHITESPACE), state.path, number)
        if state.section is None:
            self._error(state, number, f"'{entry.key}' is not inside a section")
        elif not space:
            reason = "undefined value - check config is in valid classic format"
            if "\t" in content.strip(WHITESPACE):
                reason += " (a tab does not separate a key from its value: use a space)"
            self.problems.append(Problem(state.section, entry, reason))
        elif not entry.value:
            self.problems.append(Problem(state.section, entry, "key has an empty value"))
        else:
            state.section.entries.append(entry)
            self.new_entries.append(entry)
            if state.header is not None:
                state.header.keys += 1

    # -- @ commands --------------------------------------------------------------------------

    def _meta(self, state: _FileState, line: str, number: int) -> None:
        if line[:9].upper() == "@INCLUDE ":
            self._include(state, line[9:].strip(WHITESPACE), number)
            return
        command, space, param = line[1:].partition(" ")
        if not space:
            self._error(state, number, f"invalid command '{line.strip(WHITESPACE)}' "
                                       "(expected '@COMMAND value')")
        elif command.upper() == "SET":
            self._set(state, param.strip(WHITESPACE), number)
        else:
            self.model.warnings.append(
                f"{state.path}:{number}: unknown command '@{command}' ignored")

    def _set(self, state: _FileState, param: str, number: int) -> None:
        name, equals, value = param.partition("=")
        name = name.strip(WHITESPACE)
        if not equals or not name:
            self.model.warnings.append(
                f"{state.path}:{number}: [meta SET] invalid parameter '{param}' ignored")
            return
        self.model.variables[name] = value.strip(WHITESPACE)

    def _include(self, state: _FileState, target: str, number: int) -> None:
        if not target:
            self._error(state, number, "@INCLUDE needs a file name")
            return
        if "*" not in target:
            self._include_file(state, resolve_from(target, self.root_dir), number)
            return
        pattern = target if os.path.isabs(target) else os.path.join(self.root_dir, target)
        matches = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
        if not matches:
            self._error(state, number, f"@INCLUDE pattern '{pattern}' matched no files")
        for path in matches:
            self._include_file(state, path, number)

    def _include_file(self, state: _FileState, path: str, number: int) -> None:
        try:
            identity = file_identity(path)
        except OSError as exc:
            self._error(state, number, f"cannot open included file '{path}': {exc.strerror}")
            return
        if identity in self.seen:
            self._error(state, number, f"file '{path}' is already included")
            return
        try:
            self.read_file(path)
        except ConfigError as exc:
            self.problems.extend(exc.errors)


def read_classic(path: str, model: ConfigModel | None = None, *,
                 allowed: Collection[str] = SECTION_KINDS,
                 role: str = "this file") -> ConfigModel:
    """Read classic file ``path`` and the files it includes into ``model`` (new if None).

    Sections of a kind outside ``allowed`` are errors naming ``role``, e.g. "a parsers file".
    Values are ``${VAR}``-expanded with ``model.variables`` once everything is read. Raises
    :class:`ConfigError` with every problem found.
    """
    if model is None:
        model = ConfigModel.empty(path)
    root_dir = os.path.dirname(os.path.realpath(path))
    reader = _ClassicReader(model, root_dir, frozenset(allowed), role)
    reader.read_file(path)
    reader.finish()
    return model
