"""``rillet check -c FILE``: everything ``--dry-run`` checks, plus warnings Fluent Bit never gives.

Errors are the configuration errors of a dry run (unknown plugins and keys, bad values, bad
option combinations, parser definitions). Warnings:

- an input whose records no output matches (they are dropped);
- an output, or a filter, whose Match fits no input's tag;
- a ``kubernetes`` filter whose ``Kube_Tag_Prefix`` cannot match the tags its tail inputs produce
  (checked on the section's options, so it works whatever the filter's implementation);
- a parser or multiline rule regex prone to catastrophic backtracking;
- ``Mem_Buf_Limit`` smaller than one chunk (2,048,000 bytes).

Exit codes: 0 ok (warnings are printed), 1 warnings with ``--strict``, 2 errors.

Tags are reasoned about as patterns: a tail input with ``Tag kube.*`` and
``Path /var/log/containers/*.log`` produces ``kube.var.log.containers.*.log`` (Fluent Bit's tag
expansion applied to the glob), and a ``Match`` fits an input when some tag fits both.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from rillet.config import values
from rillet.config.model import ConfigError, ConfigModel, Section, where
from rillet.parsers import regex as rregex

CHUNK_SIZE = 2_048_000
KUBE_TAG_PREFIX = "kube.var.log.containers."
# The file name the kubernetes filter's default regex expects after the prefix.
KUBE_FILE_FORM = "*_*_*-*.log"
_STAR = "\x00"


# -- tag patterns -------------------------------------------------------------------------------

def globs_intersect(a: str, b: str) -> bool:
    """Whether some string matches both ``*``-globs (``*`` = any run of characters)."""

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            return go(i + 1, j) or (j < len(b) and go(i, j + 1))
        if j < len(b) and b[j] == "*":
            return go(i, j + 1) or (i < len(a) and go(i + 1, j))
        return i < len(a) and j < len(b) and a[i] == b[j] and go(i + 1, j + 1)

    return go(0, 0)


def tail_tag_patterns(tag: str, paths: Sequence[str], tag_regex: str | None) -> list[str]:
    """The tags a tail input can produce, as globs (Fluent Bit's ``tag_compose`` on the Path
    globs; with ``Tag_Regex`` each ``<name>`` can be anything)."""
    if tag_regex:
        return [re.sub(r"<[^>]*>", "*", tag)]
    if "*" not in tag:
        return [tag]
    out: list[str] = []
    for path in paths:
        marked = path.replace("*", _STAR)
        head, _, rest = tag.partition("*")
        text = head + marked + rest.replace("*", "")
        for ch in "/\\:":
            text = text.replace(ch, ".")
        text = text.lstrip(".")
        while ".." in text:
            text = text.replace("..", ".")
        text = text.rstrip(".")
        out.append(text.replace(_STAR, "*"))
    return out


@dataclass
class _Input:
    section: Section
    name: str
    plugin: str
    tags: list[str]
    # The sender picks the records' tags (forward without Tag, http's request path): which
    # Match patterns they reach is not known before run time.
    dynamic: bool = False


@dataclass
class _Matcher:
    section: Section
    name: str
    plugin: str
    match: str | None
    match_regex: str | None
    regex: re.Pattern[str] | None = field(default=None)

    def fits(self, pattern: str) -> bool:
        if self.regex is not None:
            # Regex vs pattern: try the pattern with its wildcards as a short and a long run.
            for fill in ("", "x", "a.b-c_d"):
                if self.regex.match(pattern.replace("*", fill)):
                    return True
        if self.match is not None:
            return globs_intersect(self.match, pattern)
        return False

    def label(self) -> str:
        if self.match_regex:
            return f"Match_Regex '{self.match_regex}'"
        return f"Match '{self.match}'"


def _names(sections: list[Section], seen: dict[str, int]) -> list[tuple[Section, str, str]]:
    out = []
    for section in sections:
        plugin = section.name
        index = seen.get(plugin, 0)
        seen[plugin] = index + 1
        alias = section.get("alias")
        out.append((section, plugin, str(alias) if alias else f"{plugin}.{index}"))
    return out


def _matchers(sections: list[tuple[Section, str, str]]) -> list[_Matcher]:
    out = []
    for section, plugin, name in sections:
        match, match_regex = section.get("match"), section.get("match_regex")
        compiled = None
        if match_regex:
            try:
                compiled = rregex.compile_ruby(str(match_regex))
            except (rregex.RegexError, re.error):
                compiled = None  # reported as an error by the pipeline build
        out.append(_Matcher(section, name=name, plugin=plugin,
                            match=None if match is None else str(match),
                            match_regex=None if match_regex is None else str(match_regex),
                            regex=compiled))
    return out


def _inputs(model: ConfigModel, seen: dict[str, int]) -> list[_Input]:
    out = []
    for section, plugin, name in _names(model.inputs, seen):
        tag = str(section.get("tag") or name)
        if plugin == "tail":
            paths = [p.strip() for p in str(section.get("path") or "").split(",") if p.strip()]
            tags = tail_tag_patterns(tag, paths, section.get("tag_regex"))
        else:
            tags = [tag.replace("*", "")] if "*" in tag else [tag]
        dynamic = (plugin == "forward" and not section.get("tag")) \
            or (plugin == "http")
        out.append(_Input(section, name, plugin, tags, dynamic))
    return out


def _at(section: Section, key: str | None = None) -> str:
    entry = section.find(key) if key else None
    loc = where(entry.file, entry.line) if entry else where(section.file, section.line)
    return f"{loc}: {section.label}"


# -- regex backtracking -------------------------------------------------------------------------

def _unbounded(op: Any, av: Any) -> bool:
    from re import _constants as c  # type: ignore[attr-defined]
    return op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[1] == c.MAXREPEAT


def _has_unbounded(items: Any) -> bool:
    from re import _constants as c  # type: ignore[attr-defined]
    for op, av in items:
        if _unbounded(op, av):
            return True
        for sub in _children(op, av, c):
            if _has_unbounded(sub):
                return True
    return False


def _children(op: Any, av: Any, c: Any) -> list[Any]:
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        return [av[2]]
    if op == c.SUBPATTERN:
        return [av[3]]
    if op == c.BRANCH:
        return list(av[1])
    if op in (c.ASSERT, c.ASSERT_NOT):
        return [av[1]]
    if op == c.ATOMIC_GROUP:
        return []  # no backtracking into an atomic group
    return []


def _nested_unbounded(items: Any) -> bool:
    from re import _constants as c  # type: ignore[attr-defined]
    for op, av in items:
        if _unbounded(op, av) and _has_unbounded(av[2]):
            return True
        for sub in _children(op, av, c):
            if _nested_unbounded(sub):
                return True
    return False


def backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` (Onigmo syntax) risks catastrophic backtracking, or None.

    Uses the parsers' own check when rillet.parsers.regex provides one; otherwise flags an
    unbounded repetition nested in another one, such as ``(a+)+`` or ``(\\w+\\s?)*``."""
    for name in ("backtracking_risk", "catastrophic_backtracking", "redos_risk"):
        fn: Callable[[str], Any] | None = getattr(rregex, name, None)
        if callable(fn):
            try:
                result = fn(pattern)
            except (rregex.RegexError, re.error, ValueError):
                return None  # compile errors are reported by the parser checks
            if not result:
                return None
            return result if isinstance(result, str) else "nested unbounded repetition"
    try:
        text, flags = rregex.translate(pattern)
        from re import _parser  # type: ignore[attr-defined]
        tree = _parser.parse(text, flags)
    except (rregex.RegexError, re.error, ValueError):
        return None  # compile errors are reported by the parser checks
    if _nested_unbounded(tree):
        return "an unbounded repetition inside another one (e.g. (a+)+) can take exponential time"
    return None


def _rule_regexes(section: Section) -> list[str]:
    from rillet.parsers.definitions import parse_rule

    out: list[str] = []
    for value in section.get_all("rule"):
        if isinstance(value, str):
            try:
                out.append(parse_rule(value)[1])
            except ValueError:
                continue
    for value in section.get_all("rules"):
        items = value if isinstance(value, list) else []
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("regex"), str):
                out.append(item["regex"])
    return out


# -- the checks ---------------------------------------------------------------------------------

def warnings_for(model: ConfigModel) -> list[str]:
    seen: dict[str, int] = {}
    inputs = _inputs(model, seen)
    filters = _matchers(_names(model.filters, seen))
    outputs = _matchers(_names(model.outputs, seen))
    if len(inputs) == 1 and len(outputs) == 1 and outputs[0].match is None \
            and outputs[0].match_regex is None:
        outputs[0].match = "*"
    out: list[str] = []

    # rewrite_tag re-emits records under tags built at run time: routing is not static then.
    retagging = [f for f in filters if f.plugin == "rewrite_tag"]
    dynamic = any(inp.dynamic for inp in inputs)
    for inp in inputs:
        if inp.dynamic or any(f.fits(t) for f in retagging for t in inp.tags):
            continue
        if outputs and not any(o.fits(t) for o in outputs for t in inp.tags):
            tags = ", ".join(f"'{t}'" for t in inp.tags)
            out.append(f"{_at(inp.section, 'tag')}: no output matches its records (tag "
                       f"{tags}): they are dropped")
    for kind, group in (("output", outputs), ("filter", filters)):
        for m in group:
            if (m.match is None and m.match_regex is None) or retagging or dynamic:
                continue  # no Match: the pipeline build warns; retagged or sent: tags are dynamic
            if not any(m.fits(t) for inp in inputs for t in inp.tags):
                key = "match_regex" if m.match_regex else "match"
                what = "receives" if kind == "output" else "sees"
                out.append(f"{_at(m.section, key)}: {m.label()} fits no input's tag: the {kind} "
                           f"{what} no records")

    for flt in filters:
        if flt.plugin != "kubernetes":
            continue
        prefix = str(flt.section.get("kube_tag_prefix") or KUBE_TAG_PREFIX)
        custom_regex = flt.section.get("regex_parser") is not None
        for inp in inputs:
            if inp.plugin != "tail":
                continue
            for tag in inp.tags:
                if not flt.fits(tag):
                    continue
                if not globs_intersect(prefix + "*", tag):
                    out.append(f"{_at(flt.section, 'kube_tag_prefix')}: Kube_Tag_Prefix "
                               f"'{prefix}' cannot match the tags of {inp.name} ('{tag}'): "
                               "records get no Kubernetes metadata (set Kube_Tag_Prefix to "
                               "the tail Tag's expansion up to the file name)")
                elif not custom_regex and not globs_intersect(prefix + KUBE_FILE_FORM, tag):
                    out.append(f"{_at(flt.section, 'kube_tag_prefix')}: after Kube_Tag_Prefix "
                               f"'{prefix}' the tags of {inp.name} ('{tag}') never have the "
                               "<pod>_<namespace>_<container>-<id>.log form the filter "
                               "expects: records get no Kubernetes metadata")

    for section in model.parsers:
        pattern = section.get("regex")
        if isinstance(pattern, str):
            reason = backtracking_risk(pattern)
            if reason:
                out.append(f"{_at(section, 'regex')}: regex risks catastrophic "
                           f"backtracking: {reason}")
    for section in model.multiline_parsers:
        for pattern in _rule_regexes(section):
            reason = backtracking_risk(pattern)
            if reason:
                out.append(f"{_at(section, 'rule')}: rule /{pattern}/ risks catastrophic "
                           f"backtracking: {reason}")

    for inp in inputs:
        raw = inp.section.get("mem_buf_limit")
        if not isinstance(raw, str):
            continue
        try:
            limit = values.parse_size(raw)
        except ValueError:
            continue  # reported as an error
        if 0 < limit < CHUNK_SIZE:
            out.append(f"{_at(inp.section, 'mem_buf_limit')}: Mem_Buf_Limit {raw} ({limit} "
                       f"bytes) is smaller than one chunk ({CHUNK_SIZE} bytes): the input will "
                       "pause before a chunk fills")
    return out


@dataclass
class Result:
    errors: list[str]
    warnings: list[str]

    def exit_code(self, strict: bool) -> int:
        if self.errors:
            return 2
        return 1 if strict and self.warnings else 0


def check_model(model: ConfigModel) -> Result:
    from rillet.engine.pipeline import build

    errors: list[str] = []
    warnings: list[str] = list(model.warnings)
    try:
        pipeline = build(model)
        warnings = list(pipeline.warnings)
    except ConfigError as exc:
        errors = list(exc.errors)
    for line in warnings_for(model):
        if line not in warnings:
            warnings.append(line)
    return Result(errors, warnings)


USAGE = """\
Usage: rillet check -c FILE [--strict] [-R PARSERS_FILE]... [-p/-i/-F/-o ...]

Check a configuration: every error of --dry-run plus warnings (unrouted inputs, outputs that
match nothing, Kube_Tag_Prefix vs tail tags, regexes prone to catastrophic backtracking,
Mem_Buf_Limit smaller than a chunk).
Exit codes: 0 ok, 1 warnings with --strict, 2 errors.
"""


def main(argv: Sequence[str]) -> int:
    from rillet.cli import UsageError, build_model, parse_args

    args = list(argv)
    strict = "--strict" in args
    args = [a for a in args if a != "--strict"]
    if "-h" in args or "--help" in args:
        print(USAGE)
        return 0
    try:
        parsed = parse_args(args)
    except UsageError as exc:
        print(f"rillet check: {exc}", file=sys.stderr)
        return 2
    try:
        model = build_model(parsed)
    except ConfigError as exc:
        result = Result(list(exc.errors), [])
    except OSError as exc:
        result = Result([str(exc)], [])
    else:
        result = check_model(model)
    for line in result.errors:
        print(f"error: {line}")
    for line in result.warnings:
        print(f"warning: {line}")
    if result.errors:
        print(f"configuration test failed: {len(result.errors)} error(s), "
              f"{len(result.warnings)} warning(s)")
    elif result.warnings:
        print(f"configuration test is successful, with {len(result.warnings)} warning(s)")
    else:
        print("configuration test is successful")
    return result.exit_code(strict)
