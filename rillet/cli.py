"""Command line with fluent-bit's flags: ``rillet -c FILE``, ``rillet -i dummy -o stdout``.

Flags are read in order, like fluent-bit: ``-p``/``-t``/``-m`` apply to the plugin declared last by
``-i``/``-F``/``-o``; ``-h`` after a plugin (or ``-h NAME``) prints that plugin's option table.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rillet import __version__
from rillet import log as rlog
from rillet.config.model import ConfigError, ConfigModel, Section
from rillet.config.options import help_text
from rillet.engine import plugin as plugins

USAGE = """\
Usage: rillet [OPTION]
       rillet check -c FILE [--strict]      check a configuration (exit 0 ok, 1 warnings
                                           with --strict, 2 errors)
       rillet trace -c FILE --line LINE     show what the pipeline does to a line
       rillet top [-H HOST] [-P PORT]       live view of a running agent
       rillet demo [--keep]                 the seed pipeline end to end on this machine

Available Options
  -c  --config=FILE       specify an optional configuration file
  -D, --dry-run           dry run: check the configuration and exit
  -e, --plugin=FILE       accepted for fluent-bit's command lines and ignored with a warning:
                          rillet's plugins are built in (aws-for-fluent-bit's cloudwatch.so,
                          firehose.so and kinesis.so are the cloudwatch, firehose, kinesis outputs)
  -f, --flush=SECONDS     flush timeout in seconds (default: 1)
  -F  --filter=FILTER     set a filter
  -i, --input=INPUT       set an input
  -m, --match=MATCH       set plugin match, same as '-p match=abc'
  -o, --output=OUTPUT     set an output
  -p, --prop="A=B"        set plugin configuration property
  -R, --parser=FILE       specify a parser configuration file
  -l, --log_file=FILE     write log info to a file
  -t, --tag=TAG           set plugin tag, same as '-p tag=abc'
  -v, --verbose           increase logging verbosity (-vv for trace)
  -q, --quiet             quiet mode
  -H, --http              enable monitoring HTTP server
  -P, --port              set HTTP server TCP port (default: 2020)
  -Y, --enable-hot-reload enable hot reloading (SIGHUP, POST /api/v2/reload)
  -V, --version           show version number
  -h, --help              print this help, or a plugin's options: -h NAME / -i NAME -h

Inputs
  {inputs}
Filters
  {filters}
Outputs
  {outputs}
"""

# Flags that take a value: short -> long.
_WITH_VALUE = {"-c": "config", "-i": "input", "-F": "filter", "-o": "output", "-p": "prop",
               "-m": "match", "-t": "tag", "-R": "parser", "-f": "flush", "-l": "log_file",
               "-P": "port", "-e": "plugin"}
_LONG = {v: k for k, v in _WITH_VALUE.items()}
_FLAGS = {"-D": "dry-run", "-v": "verbose", "-q": "quiet", "-H": "http", "-V": "version",
          "-h": "help", "-vv": "trace", "-Y": "enable-hot-reload"}
_LONG_FLAGS = {v: k for k, v in _FLAGS.items()}


class UsageError(Exception):
    pass


@dataclass
class Args:
    config: str | None = None
    sections: list[Section] = field(default_factory=list)
    parsers: list[str] = field(default_factory=list)
    service: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False
    verbosity: int = 0
    quiet: bool = False
    version: bool = False
    help: bool = False
    help_plugin: Section | str | None = None
    external_plugins: list[str] = field(default_factory=list)


def _split(argv: Sequence[str]) -> list[tuple[str, str | None]]:
    """Normalise argv into (short flag, value) pairs."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name in _LONG:
                flag = _LONG[name]
                if not eq:
                    if i >= len(argv):
                        raise UsageError(f"option '--{name}' requires a value")
                    value = argv[i]
                    i += 1
                out.append((flag, value))
            elif name in _LONG_FLAGS:
                out.append((_LONG_FLAGS[name], None))
            else:
                raise UsageError(f"unknown option '{arg}'")
        elif arg in _FLAGS:
            out.append((arg, None))
        elif arg[:2] in _WITH_VALUE:
            flag = arg[:2]
            if len(arg) > 2:
                value = arg[2:]
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise UsageError(f"option '{flag}' requires a value")
            out.append((flag, value))
        elif arg.startswith("-v") and set(arg[1:]) == {"v"}:
            out.append(("-vv", None))
        else:
            raise UsageError(f"unexpected argument '{arg}'")
    return out


def parse_args(argv: Sequence[str]) -> Args:
    args = Args()
    current: Section | None = None
    pairs = _split(argv)
    for flag, value in pairs:
        if flag in ("-i", "-F", "-o"):
            kind = {"-i": "input", "-F": "filter", "-o": "output"}[flag]
            assert value is not None
            name, _, rest = value.partition("://")
            current = Section(kind, "<command line>", 0)
            current.set("name", name)
            if rest:
                # fluent-bit accepts "-o http://host:port" style shortcuts; keep the URI for the
                # plugin (host/port split is plugin-specific).
                current.set("uri", rest)
            args.sections.append(current)
        elif flag in ("-p", "-t", "-m"):
            if current is None:
                raise UsageError(f"'{flag}' must follow an input, filter or output (-i/-F/-o)")
            assert value is not None
            if flag == "-p":
                key, eq, val = value.partition("=")
                if not eq or not key.strip():
                    raise UsageError(f"invalid property '{value}' (expected KEY=VALUE)")
                current.set(key.strip(), val.strip())
            elif flag == "-t":
                current.set("tag", value)
            else:
                if current.kind == "input":
                    raise UsageError("'-m' applies to filters and outputs only")
                current.set("match", value)
        elif flag == "-c":
            args.config = value
        elif flag == "-e":
            args.external_plugins.append(value or "")
        elif flag == "-R":
            assert value is not None
            args.parsers.append(value)
        elif flag == "-f":
            args.service.append(("flush", value or ""))
        elif flag == "-l":
            args.service.append(("log_file", value or ""))
        elif flag == "-P":
            args.service.append(("http_port", value or ""))
        elif flag == "-H":
            args.service.append(("http_server", "on"))
        elif flag == "-Y":
            args.service.append(("hot_reload", "on"))
        elif flag == "-D":
            args.dry_run = True
        elif flag == "-v":
            args.verbosity += 1
        elif flag == "-vv":
            args.verbosity += 2
        elif flag == "-q":
            args.quiet = True
        elif flag == "-V":
            args.version = True
        elif flag == "-h":
            args.help = True
            args.help_plugin = current
    return args


def _plugin_help(target: Section | str) -> str:
    if isinstance(target, Section):
        kinds, name = [target.kind], target.name
    else:
        kinds, name = ["input", "filter", "output"], target.lower()
    for kind in kinds:
        cls = plugins.lookup(kind, name)
        if cls is not None:
            return help_text(f"{kind} plugin '{cls.name}'", cls.description,
                             plugins.full_table(cls))
    raise UsageError(f"unknown plugin '{name}'")


def _usage() -> str:
    def listing(kind: str) -> str:
        return ", ".join(plugins.names(kind)) or "(none)"
    return USAGE.format(inputs=listing("input"), filters=listing("filter"),
                        outputs=listing("output"))


def build_model(args: Args) -> ConfigModel:
    """The configuration file (if any) plus the command line's sections and overrides."""
    from rillet.config.loader import load_config, load_parsers_file

    model = load_config(args.config) if args.config else ConfigModel.empty()
    for section in args.sections:
        getattr(model, section.kind + "s").append(section)
    overrides = list(args.service)
    if args.verbosity or args.quiet:
        level = "off" if args.quiet else ("debug" if args.verbosity == 1 else "trace")
        overrides.append(("log_level", level))
    # Command-line service values replace the file's.
    keys = {key for key, _ in overrides}
    model.service.entries = [e for e in model.service.entries if e.key not in keys]
    for key, value in overrides:
        model.service.set(key, value, "<command line>", 0)
    for path in args.parsers:
        load_parsers_file(path, model)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in _COMMANDS:
        import importlib

        command = importlib.import_module(f"rillet.commands.{argv[0]}")
        code: int = command.main(list(argv[1:]))
        return code
    # Bare words after -h name a plugin: "rillet -h tail".
    argv = list(argv)
    help_name: str | None = None
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-h", "--help") and not argv[i + 1].startswith("-"):
            help_name = argv.pop(i + 1)
            break
    try:
        args = parse_args(argv)
        if args.version:
            print(f"rillet v{__version__} (Fluent Bit compatible)")
            return 0
        if args.help:
            target = help_name or args.help_plugin
            print(_plugin_help(target) if target else _usage())
            return 0
    except UsageError as exc:
        print(f"rillet: {exc}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 1

    rlog.setup("info")
    logger = rlog.get("config")
    try:
        model = build_model(args)
        from rillet.engine.pipeline import build

        pipeline = build(model)
    except ConfigError as exc:
        for line in exc.errors:
            logger.error("%s", line)
        if args.dry_run:
            print(f"configuration test failed: {len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    except OSError as exc:
        logger.error("%s", exc)
        return 1
    warnings = list(pipeline.warnings)
    warnings += [f"-e {path}: external plugins are not loaded; rillet's plugins are built in"
                 for path in args.external_plugins]
    if args.dry_run:
        # The dry run gives `rillet check`'s warnings too (its exit codes stay fluent-bit's).
        from rillet.commands.check import warnings_for

        warnings += [w for w in warnings_for(model) if w not in warnings]
    for warning in warnings:
        logger.warning("%s", warning)
    if args.dry_run:
        print("configuration test is successful")
        return 0
    service = pipeline.service
    rlog.setup(service["log_level"], path=service["log_file"])

    def load() -> object:
        return build(build_model(args))

    return asyncio.run(_run(pipeline, load))


# Subcommands: `rillet check ...`, `rillet trace ...`, `rillet top ...`, `rillet demo`.
_COMMANDS = ("check", "trace", "top", "demo")


async def _run(pipeline: object, load: Callable[[], object] | None = None) -> int:
    from rillet.engine.pipeline import Pipeline
    from rillet.monitor.agent import Agent

    assert isinstance(pipeline, Pipeline)

    def loader() -> Pipeline:
        assert load is not None
        new = load()
        assert isinstance(new, Pipeline)
        return new

    agent = Agent(pipeline, loader if load is not None else None)
    return await agent.run()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
