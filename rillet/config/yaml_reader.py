"""The YAML reader, with the rules of ``src/config_format/flb_cf_yaml.c``.

It works on PyYAML's composed nodes rather than loaded Python objects for two reasons: every
node keeps its line for error messages, and a scalar's ``value`` is the text as written, so
``on``, ``5MB``, ``1.0`` or ``0x10`` reach the option tables exactly as Fluent Bit sees them
(YAML 1.1 would otherwise turn them into booleans and numbers).

Keys go through Fluent Bit's camelCase translation (``logLevel`` -> ``log_level``); a list value
becomes one entry per item with the same key; nested maps are refused outside ``extensions``.
Like the classic reader, it reports every problem it finds in one :class:`ConfigError` and
expands ``${VAR}`` once everything, includes and ``env:`` sections, has been read.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rillet.config.classic import Problem, attach_section, file_identity, read_source, report
from rillet.config.env import expand_entries
from rillet.config.model import ConfigError, ConfigModel, Entry, Section

#: Every top-level key rillet understands.
TOP_LEVEL_KEYS = frozenset({
    "env", "includes", "service", "pipeline", "parsers", "multiline_parsers", "plugins",
    "upstream_servers", "customs", "extensions",
})
#: The top-level keys a YAML parsers file may use.
PARSER_KEYS = frozenset({"parsers", "multiline_parsers"})

_VARIANT = "variant values are only valid in the extensions section"
_PIPELINE_KINDS = {"inputs": "input", "filters": "filter", "outputs": "output"}


def translate_key(key: str) -> str:
    """``flb_cf_key_translate`` for YAML, then lower-cased as the model wants.

    A key that starts with a lowercase ASCII letter and has no ``_`` is camelCase: an ``_``
    goes before every uppercase letter (``storage.maxChunksUp`` -> ``storage.max_chunks_up``).
    """
    if not key or not ("a" <= key[0] <= "z") or "_" in key:
        return key.lower()
    return "".join(f"_{c.lower()}" if "A" <= c <= "Z" else c for c in key)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


@dataclass
class _YamlReader:
    model: ConfigModel
    allowed: Collection[str]
    role: str
    problems: list[str | Problem] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)
    new_entries: list[Entry] = field(default_factory=list)
    service_seen: bool = False

    # -- files -------------------------------------------------------------------------------

    def read_file(self, path: str) -> None:
        text = read_source(path)
        self.seen.add(file_identity(path))
        self.model.files.append(path)
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 0
            self.problems.append(f"{path}:{line}: invalid YAML: {exc.problem or exc.context}")
            return
        if root is None:
            return
        if not isinstance(root, MappingNode):
            self._error(path, root, "the top level of a YAML configuration must be a map")
            return
        for key_node, value_node in root.value:
            self._top_level(path, key_node, value_node)

    def finish(self) -> None:
        expand_entries(self.new_entries, self.model.variables, self.model.warnings)
        report(self.problems)

    def _error(self, path: str, node: Node, reason: str) -> None:
        self.problems.append(f"{path}:{_line(node)}: {reason}")

    def _key_error(self, section: Section, path: str, node: Node, key: str, reason: str) -> None:
        self.problems.append(Problem(section, Entry(key, None, path, _line(node)), reason))

    def _add(self, section: Section, key: str, value: object, path: str, node: Node) -> None:
        entry = Entry(key, value, path, _line(node))
        section.entries.append(entry)
        self.new_entries.append(entry)

    # -- top level ---------------------------------------------------------------------------

    def _top_level(self, path: str, key_node: Node, value_node: Node) -> None:
        if not isinstance(key_node, ScalarNode):
            self._error(path, key_node, "top-level keys must be plain text")
            return
        name = key_node.value.lower()
        if name == "stream_processor":
            self._error(path, key_node, "stream processor is not supported")
        elif name not in TOP_LEVEL_KEYS:
            self._error(path, key_node, f"unknown top-level key '{key_node.value}'")
        elif name not in self.allowed:
            self._error(path, key_node, f"'{key_node.value}' is not valid in {self.role}")
        elif name != "extensions":  # free-form settings for other tools: ignored
            self._handlers()[name](path, key_node, value_node)

    def _handlers(self) -> dict[str, Callable[[str, Node, Node], None]]:
        return {
            "env": self._env,
            "includes": self._includes,
            "service": self._service,
            "pipeline": self._pipeline,
            "parsers": lambda p, k, v: self._items(p, k, v, "parser"),
            "multiline_parsers": lambda p, k, v: self._items(p, k, v, "multiline_parser"),
            "customs": lambda p, k, v: self._items(p, k, v, "custom"),
            "plugins": self._plugins,
            "upstream_servers": self._upstream_servers,
        }

    def _maps(self, path: str, key_node: Node, node: Node, what: str) -> list[MappingNode]:
        """The items of a list of maps; anything else is reported."""
        if not isinstance(node, SequenceNode):
            self._error(path, key_node, f"'{what}' must be a list of maps")
            return []
        maps = [item for item in node.value if isinstance(item, MappingNode)]
        if len(maps) != len(node.value):
            self._error(path, key_node, f"every item of '{what}' must be a map")
        return maps

    def _scalars(self, path: str, key_node: Node, node: Node, what: str) -> list[ScalarNode]:
        """A scalar or a list of scalars, as a list; anything else is reported."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        scalars = [item for item in items if isinstance(item, ScalarNode)]
        if len(scalars) != len(items):
            self._error(path, key_node, f"'{what}' must be a list of plain values")
        return scalars

    # -- env, includes -----------------------------------------------------------------------

    def _env(self, path: str, key_node: Node, node: Node) -> None:
        if isinstance(node, SequenceNode):
            for item in self._maps(path, key_node, node, "env"):
                self._env_item(path, item)
            return
        if not isinstance(node, MappingNode):
            self._error(path, key_node, "'env' must be a map or a list of maps")
            return
        for name_node, value_node in node.value:
            if isinstance(name_node, ScalarNode) and isinstance(value_node, ScalarNode):
                self.model.variables[name_node.value] = value_node.value
            else:
                self._error(path, name_node, "env: variables must have plain values")

    def _env_item(self, path: str, item: MappingNode) -> None:
        fields: dict[str, ScalarNode] = {}
        for field_node, value_node in item.value:
            name = str(field_node.value) if isinstance(field_node, ScalarNode) else "?"
            if name in ("uri", "refresh_interval"):
                self._error(path, field_node, f"env: '{name}' is not supported")
            elif name not in ("name", "value") or not isinstance(value_node, ScalarNode):
                self._error(path, field_node, f"env: invalid field '{name}' (use name and value)")
            else:
                fields[name] = value_node
        if "name" not in fields:
            self._error(path, item, "env: an entry of the list form needs a 'name'")
            return
        value = fields.get("value")
        self.model.variables[fields["name"].value] = value.value if value is not None else ""

    def _includes(self, path: str, key_node: Node, node: Node) -> None:
        base = os.path.dirname(path)
        for item in self._scalars(path, key_node, node, "includes"):
            target = os.path.join(base, item.value)
            if "*" not in item.value:
                self._include_file(path, item, target)
                continue
            matches = sorted(p for p in glob.glob(target) if os.path.isfile(p))
            if not matches:
                self._error(path, item, f"includes: pattern '{target}' matched no files")
            for match in matches:
                self._include_file(path, item, match)

    def _include_file(self, path: str, node: Node, target: str) -> None:
        try:
            identity = file_identity(target)
        except OSError as exc:
            self._error(path, node, f"cannot open included file '{target}': {exc.strerror}")
            return
        if identity in self.seen:
            self._error(path, node, f"file '{target}' is already included")
            return
        try:
            self.read_file(target)
        except ConfigError as exc:
            self.problems.extend(exc.errors)

    # -- sections ----------------------------------------------------------------------------

    def _service(self, path: str, key_node: Node, node: Node) -> None:
        if self.service_seen:
            self._error(path, key_node, "duplicated definition of 'service'")
            return
        self.service_seen = True
        if not isinstance(node, MappingNode):
            self._error(path, key_node, "'service' must be a map")
            return
        section = attach_section(self.model, "service", path, _line(key_node))
        self._properties(path, section, node)

    def _pipeline(self, path: str, key_node: Node, node: Node) -> None:
        if not isinstance(node, MappingNode):
            self._error(path, key_node, "'pipeline' must be a map")
            return
        for part_node, items in node.value:
            part = str(part_node.value).lower() if isinstance(part_node, ScalarNode) else ""
            if part not in _PIPELINE_KINDS:
                self._error(path, part_node, f"the pipeline component '{part_node.value}' is not "
                                             "valid. Try one of these values: inputs, filters or "
                                             "outputs.")
                continue
            self._items(path, part_node, items, _PIPELINE_KINDS[part])

    def _items(self, path: str, key_node: Node, node: Node, kind: str) -> None:
        for item in self._maps(path, key_node, node, str(key_node.value)):
            section = attach_section(self.model, kind, path, _line(item))
            self._properties(path, section, item)

    def _plugins(self, path: str, key_node: Node, node: Node) -> None:
        section = attach_section(self.model, "plugins", path, _line(key_node))
        for item in self._scalars(path, key_node, node, "plugins"):
            self._add(section, "path", item.value, path, item)

    def _upstream_servers(self, path: str, key_node: Node, node: Node) -> None:
        for item in self._maps(path, key_node, node, "upstream_servers"):
            section = attach_section(self.model, "upstream", path, _line(item))
            self._properties(path, section, item)

    # -- properties --------------------------------------------------------------------------

    def _properties(self, path: str, section: Section, node: MappingNode) -> None:
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self._error(path, key_node, "keys must be plain text")
                continue
            key = translate_key(key_node.value)
            if key == "processors" and section.kind in ("input", "filter", "output"):
                self._key_error(section, path, key_node, key, "processors are not supported yet")
            elif key == "rules" and section.kind == "multiline_parser":
                self._rules(path, section, key_node, value_node)
            elif key == "nodes" and section.kind == "upstream":
                self._items(path, key_node, value_node, "node")
            else:
                self._property(path, section, key_node, key, value_node)

    def _property(self, path: str, section: Section, key_node: Node, key: str,
                  node: Node) -> None:
        if isinstance(node, ScalarNode):
            self._add(section, key, node.value, path, key_node)
            return
        items = node.value if isinstance(node, SequenceNode) else [node]
        if not all(isinstance(item, ScalarNode) for item in items):
            self._key_error(section, path, key_node, key, _VARIANT)
            return
        for item in items:
            self._add(section, key, item.value, path, item)

    def _rules(self, path: str, section: Section, key_node: Node, node: Node) -> None:
        items = node.value if isinstance(node, SequenceNode) else None
        if items is None or not all(_is_flat_map(item) for item in items):
            self._key_error(section, path, key_node, "rules",
                            "rules must be a list of maps of plain values "
                            "(state, regex, next_state)")
            return
        rules = [{translate_key(k.value): v.value for k, v in item.value} for item in items]
        self._add(section, "rules", rules, path, key_node)


def _is_flat_map(node: Node) -> bool:
    """A map whose keys and values are all scalars."""
    return isinstance(node, MappingNode) and all(
        isinstance(k, ScalarNode) and isinstance(v, ScalarNode) for k, v in node.value)


def read_yaml(path: str, model: ConfigModel | None = None, *,
              allowed: Collection[str] = TOP_LEVEL_KEYS,
              role: str = "this file") -> ConfigModel:
    """Read YAML file ``path`` (and its ``includes``) into ``model`` (a new one if None).

    Top-level keys outside ``allowed`` are errors naming ``role``, e.g. "a parsers file".
    Values are ``${VAR}``-expanded with ``model.variables`` once everything is read. Raises
    :class:`ConfigError` with every problem found.
    """
    if model is None:
        model = ConfigModel.empty(path)
    reader = _YamlReader(model, frozenset(allowed), role)
    reader.read_file(path)
    reader.finish()
    return model
