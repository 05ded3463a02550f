"""The configuration reference (docs/configuration.md), generated from the option tables.

Everything comes from the tables the configuration is validated against: ``[SERVICE]``
(:data:`rillet.engine.service.SERVICE_OPTIONS`), ``[PARSER]`` / ``[MULTILINE_PARSER]``
(:mod:`rillet.parsers.definitions`), and every plugin named in the ``MODULES`` registries of
:mod:`rillet.inputs`, :mod:`rillet.filters` and :mod:`rillet.outputs`, through the same lookup and
:func:`rillet.engine.plugin.full_table` as ``rillet -h <plugin>``.

``python -m rillet.config.reference`` prints the Markdown; ``--write PATH`` writes it;
``--check PATH`` exits 1 when PATH differs from what the tables give (a stale reference).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rillet.config.options import Option
from rillet.engine import plugin as plugins

COMMAND = "python -m rillet.config.reference --write docs/configuration.md"

_KINDS = {"input": ("Inputs", "rillet.inputs"), "filter": ("Filters", "rillet.filters"),
          "output": ("Outputs", "rillet.outputs")}

# Markdown that would change how a description reads: escaped (``_`` only at word edges, where
# it could start or end emphasis).
_SPECIAL = re.compile(r"[\\*|\[\]<>`]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_ESCAPES = {"<": "&lt;", ">": "&gt;"}
_RST_CODE = re.compile(r"``(.+?)``")


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens.

    (A repeated heading gets ``-1``, ``-2``... appended; :func:`heading_anchors` does that.)
    """
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def heading_anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown text (ATX headings outside fenced code)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        m = re.match(r" {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        base = anchor(m.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def _text(value: str) -> str:
    """Plain text for a table cell."""
    return _SPECIAL.sub(lambda m: _ESCAPES.get(m.group(), "\\" + m.group()), value)


def _code(value: str) -> str:
    """A code span for a table cell (``|`` must be escaped even there)."""
    value = value.replace("|", "\\|")
    if "`" in value:
        return f"`` {value} ``"
    return f"`{value}`"


def _docstring(text: str | None) -> str:
    """The first paragraph of a docstring on one line, reStructuredText code as Markdown."""
    if not text:
        return ""
    first = " ".join(text.strip().split("\n\n")[0].split())
    return _RST_CODE.sub(r"`\1`", first)


def _row(opt: Option) -> str:
    name = _code(opt.name) + ("*N*" if opt.prefix else "")
    kind = opt.type.value + (", multiple" if opt.multiple else "") + \
        (", prefix" if opt.prefix else "")
    default = "" if opt.default is None else _code(opt.default)
    doc = _text(opt.doc)
    if opt.choices:
        doc += "; one of: " + ", ".join(_code(c) for c in opt.choices)
    if opt.aliases:
        doc += "; also spelled " + ", ".join(_code(a) for a in opt.aliases)
    return f"| {name} | {kind} | {default} | {doc} |"


def table(options: Iterable[Option]) -> list[str]:
    """A Markdown table of options: option | type | default | description."""
    rows = [_row(opt) for opt in options]
    if not rows:
        return ["No options of its own."]
    return ["| option | type | default | description |", "|---|---|---|---|", *rows]


@dataclass
class PluginDoc:
    """One plugin class and every registry name that reaches it."""

    cls: type[plugins.Plugin]
    names: list[str]  # every registry name reaching this class, its own name first

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def title(self) -> str:
        return f"`{self.name}` {self.cls.kind}"


def plugin_classes(kind: str) -> list[PluginDoc]:
    """The built-in plugins of a kind, one per class, each with the names that reach it.

    Only the names of the ``MODULES`` registry (not plugins registered at run time by other
    code), so the result does not depend on what was imported before.
    """
    package = _KINDS[kind][1]
    modules: dict[str, str] = importlib.import_module(package).MODULES
    found: dict[type[plugins.Plugin], set[str]] = {}
    for name in modules:
        cls = plugins.lookup(kind, name)
        if cls is None:
            raise LookupError(f"{package}.MODULES names '{name}' but {modules[name]} does not "
                              "register it")
        found.setdefault(cls, set()).add(name)
    out = []
    for cls, names in found.items():
        names |= set(cls.aliases)
        names.discard(cls.name)
        out.append(PluginDoc(cls, [cls.name, *sorted(names)]))
    return sorted(out, key=lambda p: p.name)


def _describe(cls: type[plugins.Plugin]) -> str:
    module = sys.modules[cls.__module__]
    text = _docstring(module.__doc__) or cls.description
    own = _docstring(cls.__dict__.get("__doc__"))
    return f"{text} {own}" if own else text


def _plugin_section(plugin: PluginDoc,
                    known: dict[type[plugins.Plugin], PluginDoc]) -> list[str]:
    cls = plugin.cls
    lines = [f"### {plugin.title}", ""]
    if len(plugin.names) > 1:
        lines += ["Also named " + ", ".join(f"`{n}`" for n in plugin.names[1:]) + ".", ""]
    lines += [_describe(cls), ""]
    common = plugins.COMMON[cls.kind]
    own = [opt for opt in plugins.full_table(cls) if opt not in common]
    # A subclass registered under another name (kinesis, firehose) with its parent's options.
    base = next((known[b] for b in cls.__mro__[1:]
                 if b in known and plugins.full_table(b) == plugins.full_table(cls)), None)
    if base is not None:
        lines.append(f"Options: the same as [{base.title}](#{anchor(base.title)}).")
    else:
        lines += table(own)
    return [*lines, ""]


@dataclass
class _Section:
    title: str
    body: list[str]
    contents: list[str]  # its '###' headings, for the contents list


def _service() -> _Section:
    from rillet.engine.service import SERVICE_OPTIONS

    general = [o for o in SERVICE_OPTIONS if not o.name.startswith("storage.")]
    storage = [o for o in SERVICE_OPTIONS if o.name.startswith("storage.")]
    body = ["The `[SERVICE]` section (`service:` in YAML): the agent's own settings.", "",
            *table(general), "", "### Storage", "",
            "Filesystem / overflow buffering and dead letters ([storage.md](storage.md)). The "
            "per-input `storage.*` options are among [the options every input takes]"
            f"(#{anchor(_common_title('input'))}), the per-output ones among "
            f"[the options every output takes](#{anchor(_common_title('output'))}).", "",
            *table(storage), ""]
    return _Section("Service", body, ["Storage"])


def _parsers() -> _Section:
    from rillet.parsers.definitions import MULTILINE_OPTIONS, PARSER_OPTIONS

    body = ["Parsers files (`Parsers_File`, `-R`) hold `[PARSER]` and `[MULTILINE_PARSER]` "
            "sections (`parsers:` and `multiline_parsers:` in YAML); built-in parsers need no "
            "definition ([parsers.md](parsers.md), [multiline.md](multiline.md)).", ""]
    headings = ["`[PARSER]`", "`[MULTILINE_PARSER]`"]
    for heading, options in zip(headings, (PARSER_OPTIONS, MULTILINE_OPTIONS), strict=True):
        body += [f"### {heading}", "", *table(options), ""]
    return _Section("Parsers", body, headings)


def _common_title(kind: str) -> str:
    return f"Options every {kind} takes"


def _kind(kind: str) -> _Section:
    found = plugin_classes(kind)
    known = {entry.cls: entry for entry in found}
    body = [f"### {_common_title(kind)}", "", *table(plugins.COMMON[kind]), ""]
    for entry in found:
        body += _plugin_section(entry, known)
    return _Section(_KINDS[kind][0], body,
                    [_common_title(kind), *(entry.title for entry in found)])


def render() -> str:
    """The whole reference, as Markdown (deterministic: no times, plugins sorted by name)."""
    sections = [_service(), _kind("input"), _parsers(), _kind("filter"), _kind("output")]
    out = ["# Configuration reference", "",
           "<!-- Generated from the option tables: do not edit. -->",
           "Generated from the option tables the configuration is checked against; do not edit "
           f"it by hand. Regenerate with `{COMMAND}` (a test fails when it is stale).", "",
           "Option names are case-insensitive (`Mem_Buf_Limit` = `mem_buf_limit`). Defaults "
           "are written as in a configuration file. A *size* is bytes, or takes a decimal `K`, `M` "
           "or `G` suffix (`5M` = 5,000,000); a *time* is seconds, or takes an `s`, `m`, `h` or "
           "`d` suffix. An option marked *multiple* may repeat; a *prefix* option such as "
           "`parser_`*N* is used as `parser_1`, `parser_2`... `rillet -h <plugin>` prints the "
           "same tables.", "",
           "## Contents", ""]
    for section in sections:
        out.append(f"- [{section.title}](#{anchor(section.title)})")
        out += [f"  - [{e}](#{anchor(e)})" for e in section.contents]
    out.append("")
    for section in sections:
        out += [f"## {section.title}", "", *section.body]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rillet.config.reference",
        description="Print the configuration reference generated from the option tables.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="PATH", help="write it to PATH")
    group.add_argument("--check", metavar="PATH",
                       help="exit 1 if PATH differs from the generated reference")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
        return 0
    if args.check:
        try:
            current = Path(args.check).read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{args.check}: cannot read: {exc.strerror}", file=sys.stderr)
            return 1
        if current != text:
            print(f"{args.check} is stale: the option tables changed. Regenerate it with "
                  f"`{COMMAND.replace('docs/configuration.md', args.check)}`.", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
