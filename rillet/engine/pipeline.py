"""Turn a :class:`ConfigModel` into plugin instances, collecting every error.

Unknown plugins, unknown keys, repeated keys, bad values and bad option combinations are all
reported together as ``file:line: section: key: reason`` lines (one :class:`ConfigError`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rillet import log as rlog
from rillet.config.model import ConfigError, ConfigModel, Section, entry_error
from rillet.config.options import Options, resolve
from rillet.engine import plugin as plugins
from rillet.engine.metrics import Counters, Registry
from rillet.engine.plugin import Output, Plugin
from rillet.engine.router import Matcher
from rillet.engine.service import SERVICE_OPTIONS
from rillet.parsers import definitions
from rillet.parsers.regex import RegexError
from rillet.parsers.registry import ParserRegistry, builtin_names

UNLIMITED: None = None


def parse_retry_limit(text: str) -> int | None:
    """Retry_Limit: N >= 1; no_limits/false/off = unlimited (None); no_retries = 0."""
    word = text.strip().lower()
    if word in ("no_limits", "false", "off"):
        return UNLIMITED
    if word == "no_retries":
        return 0
    try:
        value = int(word)
    except ValueError:
        raise ValueError(f"invalid value '{text}' (a number, no_limits or no_retries)") from None
    if value <= 0:
        raise ValueError(f"invalid value '{text}' (must be at least 1; use no_retries for 0)")
    return value


@dataclass(eq=False)
class Instance:
    kind: str
    name: str  # "dummy.0" or the Alias
    plugin_name: str
    section: Section
    opts: Options
    plugin: Any
    counters: Counters
    log: logging.Logger


@dataclass(eq=False)
class InputInstance(Instance):
    tag: str = ""
    mem_buf_limit: int = 0
    storage: str = "memory"  # memory, filesystem or overflow (storage.type)


@dataclass(eq=False)
class FilterInstance(Instance):
    matcher: Matcher = field(default_factory=lambda: Matcher(None, None))


@dataclass(eq=False)
class OutputInstance(Instance):
    matcher: Matcher = field(default_factory=lambda: Matcher(None, None))
    retry_limit: int | None = 1
    workers: int = 1
    total_limit_size: int = 0  # storage.total_limit_size (0 = unlimited)


@dataclass
class Pipeline:
    service: Options
    inputs: list[InputInstance]
    filters: list[FilterInstance]
    outputs: list[OutputInstance]
    metrics: Registry
    model: ConfigModel
    parsers: ParserRegistry = field(default_factory=ParserRegistry)
    warnings: list[str] = field(default_factory=list)


def _matcher(section: Section, opts: Options, errors: list[str]) -> Matcher:
    regex = opts.get("match_regex")
    try:
        return Matcher(opts.get("match"), regex)
    except RegexError as exc:
        errors.append(entry_error(section, section.find("match_regex"), "match_regex",
                                  str(exc)))
        return Matcher(opts.get("match"), None)


@dataclass
class _Made:
    cls: type[Plugin]
    opts: Options
    name: str
    plugin: Any
    counters: Counters
    log: logging.Logger


def _make(section: Section, errors: list[str], seen: dict[str, int],
          metrics: Registry, parsers: ParserRegistry) -> _Made | None:
    kind = section.kind
    name = section.name
    if not name:
        errors.append(entry_error(section, None, "name", "missing plugin name"))
        return None
    cls = plugins.lookup(kind, name)
    if cls is None:
        errors.append(entry_error(section, section.find("name"), "name",
                                  f"unknown {kind} plugin '{name}'"))
        return None
    n_errors = len(errors)
    opts = resolve(section, plugins.full_table(cls), errors)
    index = seen.get(cls.name, 0)
    seen[cls.name] = index + 1
    instance = opts.get("alias") or f"{cls.name}.{index}"
    if len(errors) > n_errors:
        return None
    counters = metrics.counters(kind, instance)
    logger = rlog.get(f"{kind}:{cls.name}:{instance}", opts.get("log_level"))
    try:
        obj = cls(instance, opts, logger, counters, parsers)
    except ValueError as exc:
        errors.append(f"{section.file}:{section.line}: {section.label}: {exc}")
        return None
    return _Made(cls, opts, instance, obj, counters, logger)


def _emitter_for(made: _Made, section: Section, errors: list[str], metrics: Registry,
                 emitters: list[tuple[InputInstance, Section]], service: Options) -> None:
    """The internal ``emitter`` input a filter asks for (``emitter_request()`` -> name,
    Mem_Buf_Limit and storage.type; rewrite_tag), handed to it with ``attach_emitter``."""
    request = getattr(made.plugin, "emitter_request", None)
    if request is None:
        return
    name, mem_buf_limit, storage = request()
    if storage != "memory" and not service.get("storage.path"):
        errors.append(entry_error(section, section.find("emitter_storage.type"),
                                  "emitter_storage.type",
                                  f"'{storage}' needs storage.path in [SERVICE]"))
    cls = plugins.lookup("input", "emitter")
    assert cls is not None
    sec = Section("input", section.file, section.line)
    sec.set("name", "emitter", section.file, section.line)
    opts = resolve(sec, plugins.full_table(cls), errors)
    counters = metrics.counters("input", name)
    logger = rlog.get(f"input:emitter:{name}", made.opts.get("log_level"))
    plugin = cls(name, opts, logger, counters)
    made.plugin.attach_emitter(plugin)
    emitters.append((InputInstance("input", name, cls.name, sec, opts, plugin, counters, logger,
                                   tag=name, mem_buf_limit=mem_buf_limit, storage=storage),
                     section))


def build(model: ConfigModel) -> Pipeline:
    """Validate the whole model and construct every plugin; raise ConfigError listing all errors."""
    errors: list[str] = []
    warnings: list[str] = list(model.warnings)
    # Fluent Bit loads shared-object plugins from [PLUGINS] and runs [CUSTOM] plugins; rillet's
    # plugins are built in and it has no custom plugins: say so instead of ignoring silently.
    for section in [*model.plugins, *model.customs]:
        warnings.append(f"{section.file}:{section.line}: {section.label}: ignored (rillet loads "
                        f"no external or custom plugins; its plugins are built in)")
    service = resolve(model.service, SERVICE_OPTIONS, errors, ignore=())
    parser_defs, multiline_defs = definitions.validate(model, errors, builtin=builtin_names())
    # The built-in parsers plus the user's.
    parsers = ParserRegistry(parser_defs, multiline_defs,
                             multiline_buffer_limit=int(service["multiline_buffer_limit"]))
    metrics = Registry()
    seen: dict[str, int] = {}
    inputs: list[InputInstance] = []
    filters: list[FilterInstance] = []
    outputs: list[OutputInstance] = []
    emitters: list[tuple[InputInstance, Section]] = []

    for section in model.inputs:
        made = _make(section, errors, seen, metrics, parsers)
        if made is None:
            continue
        opts = made.opts
        inputs.append(InputInstance("input", made.name, made.cls.name, section, opts,
                                    made.plugin, made.counters, made.log,
                                    tag=opts.get("tag") or made.name,
                                    mem_buf_limit=opts["mem_buf_limit"],
                                    storage=opts["storage.type"]))
        if opts["storage.type"] != "memory" and not service.get("storage.path"):
            errors.append(entry_error(section, section.find("storage.type"), "storage.type",
                                      f"'{opts['storage.type']}' needs storage.path in "
                                      "[SERVICE]"))
    for section in model.filters:
        made = _make(section, errors, seen, metrics, parsers)
        if made is None:
            continue
        matcher = _matcher(section, made.opts, errors)
        if matcher.empty:
            warnings.append(f"{section.file}:{section.line}: {section.label}: no Match rule, "
                            "the filter sees no records")
        filters.append(FilterInstance("filter", made.name, made.cls.name, section, made.opts,
                                      made.plugin, made.counters, made.log, matcher=matcher))
        _emitter_for(made, section, errors, metrics, emitters, service)
    for section in model.outputs:
        made = _make(section, errors, seen, metrics, parsers)
        if made is None:
            continue
        opts = made.opts
        try:
            retry_limit = parse_retry_limit(opts["retry_limit"])
        except ValueError as exc:
            errors.append(entry_error(section, section.find("retry_limit"), "retry_limit",
                                      str(exc)))
            continue
        assert isinstance(made.plugin, Output)
        workers = opts["workers"] if opts["workers"] is not None else made.plugin.default_workers
        outputs.append(OutputInstance("output", made.name, made.cls.name, section, opts,
                                      made.plugin, made.counters, made.log,
                                      matcher=_matcher(section, opts, errors),
                                      retry_limit=retry_limit, workers=max(1, workers),
                                      total_limit_size=opts["storage.total_limit_size"] or 0))

    # Fluent Bit: a single input and a single output, the output without Match -> Match '*'.
    if len(inputs) == 1 and len(outputs) == 1 and outputs[0].matcher.empty:
        outputs[0].matcher = Matcher("*", None)
    for emitter, fsec in emitters:  # after the rule above: internal inputs do not count
        if any(i.name == emitter.name for i in inputs):
            errors.append(entry_error(fsec, fsec.find("emitter_name"), "emitter_name",
                                      f"emitter_name '{emitter.name}' already exists"))
        inputs.append(emitter)
    for out in outputs:
        if out.matcher.empty:
            warnings.append(f"{out.section.file}:{out.section.line}: {out.section.label}: "
                            "no Match rule, the output receives no records")
    if service.get("storage.keep.rejected") and not service.get("storage.path"):
        errors.append(entry_error(model.service, model.service.find("storage.keep.rejected"),
                                  "storage.keep.rejected", "needs storage.path"))
    if errors:
        raise ConfigError(errors)
    return Pipeline(service, inputs, filters, outputs, metrics, model, parsers, warnings)
