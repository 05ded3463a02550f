"""``rillet trace -c FILE --line '<raw line>'``: what the pipeline does to a line, nothing sent.

The lines go through the configured input's own line handling (for ``tail``: the tail input's
code itself -- Parser, Docker_Mode, multiline, Path_Key..., with the tag it would give the file
named by ``--path``), then through every filter whose Match fits, in order, and the outputs
whose Match fits are listed with where they would write (log group and stream, ...). After each
stage the record is shown; a record a filter removes is reported as dropped by that filter.

``--pod pod.json`` hands a pod object to filters that can use one instead of asking the API
server: a filter plugin that defines ``trace_with_pod(pod: dict)`` gets it before ``start()``.
A filter or output whose plugin is not available is shown as such; records pass it unchanged.
Outputs may define ``destination(tag, record) -> str``; otherwise the destination is worked out
from their options (``log_group_name``/``log_stream_prefix``/``log_stream_name``, ``bucket``,
``delivery_stream``, ``stream``, ``index``, ``path``/``file``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from rillet import log as rlog
from rillet.config.model import ConfigError, ConfigModel, Section
from rillet.config.options import resolve
from rillet.engine.chunk import Batch, Body, body_dict
from rillet.engine.metrics import Registry
from rillet.engine.plugin import InputContext
from rillet.engine.router import Matcher
from rillet.engine.service import SERVICE_OPTIONS

_DESTINATION_KEYS = ("log_group_name", "log_stream_name", "log_stream_prefix", "bucket",
                     "delivery_stream", "stream", "index", "path", "file")


@dataclass
class Stage:
    kind: str  # input, filter, output
    name: str
    plugin: str
    record: dict[str, Any] | None = None
    time: int | None = None
    note: str = ""
    dropped: bool = False
    extra: list[dict[str, Any]] = field(default_factory=list)  # records a filter added

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.kind, "name": self.name, "plugin": self.plugin}
        if self.record is not None:
            out["record"] = self.record
        if self.time is not None:
            out["time"] = _rfc3339(self.time)
        if self.note:
            out["note"] = self.note
        if self.dropped:
            out["dropped"] = True
        if self.extra:
            out["added"] = self.extra
        return out


@dataclass
class Traced:
    line: int  # 1-based number of the line that completed this record
    tag: str
    stages: list[Stage]
    outputs: list[dict[str, str]]
    dropped_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "tag": self.tag,
                "stages": [s.to_json() for s in self.stages], "outputs": self.outputs,
                "dropped_by": self.dropped_by}


def _rfc3339(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


# -- building the pieces --------------------------------------------------------------------

@dataclass
class _Piece:
    section: Section
    name: str
    plugin_name: str
    plugin: Any
    matcher: Matcher | None
    error: str = ""


def _pieces(model: ConfigModel) -> tuple[list[_Piece], list[_Piece], list[_Piece], Any]:
    from rillet.engine import pipeline as pl
    from rillet.parsers import definitions
    from rillet.parsers.registry import ParserRegistry

    errors: list[str] = []
    resolve(model.service, SERVICE_OPTIONS, errors, ignore=())
    try:
        from rillet.parsers.registry import builtin_names
        parser_defs, ml_defs = definitions.validate(model, errors, builtin=builtin_names())
    except ImportError:  # pragma: no cover - older parsers package
        parser_defs, ml_defs = definitions.validate(model, errors)
    if errors:
        raise ConfigError(errors)
    parsers = ParserRegistry(parser_defs, ml_defs)
    metrics = Registry()
    seen: dict[str, int] = {}
    groups: list[list[_Piece]] = [[], [], []]
    for group, sections in zip(groups, (model.inputs, model.filters, model.outputs),
                               strict=True):
        for section in sections:
            errs: list[str] = []
            made = pl._make(section, errs, seen, metrics, parsers)
            plugin_name = section.name
            if made is not None:
                name, plugin, opts = made.name, made.plugin, made.opts
                match, regex = opts.get("match"), opts.get("match_regex")
            else:
                index = seen.get(plugin_name, 0)
                seen[plugin_name] = index + 1
                alias = section.get("alias")
                name = str(alias) if alias else f"{plugin_name}.{index}"
                plugin = None
                match, regex = section.get("match"), section.get("match_regex")
            matcher = None
            if section.kind != "input":
                try:
                    matcher = Matcher(None if match is None else str(match),
                                      None if regex is None else str(regex))
                except ValueError as exc:
                    errs.append(str(exc))
            group.append(_Piece(section, name, plugin_name, plugin, matcher,
                                "; ".join(errs)))
    inputs, filters, outputs = groups
    if len(inputs) == 1 and len(outputs) == 1 and outputs[0].matcher is not None \
            and outputs[0].matcher.empty:
        outputs[0].matcher = Matcher("*", None)
    return inputs, filters, outputs, parsers


# -- input stage ----------------------------------------------------------------------------

class _Collect(InputContext):
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def emit(self, batch: Batch) -> None:
        self.batches.append(batch)

    async def wait_resumed(self) -> None:
        return None

    @property
    def paused(self) -> bool:
        return False

    def request_exit(self) -> None:
        return None


async def _tail_records(plugin: Any, path: str,
                        lines: list[bytes]) -> list[tuple[int, str, int, Body]]:
    """Run the lines through the tail input's own per-read code, one line per read."""
    from rillet.inputs.tail.file import TailFile

    tag = plugin._compose_tag(path)
    if tag is None:
        raise ValueError(f"Tag_Regex does not match the path '{path}': the file is not tailed")
    f = TailFile(path, tag, 0, 0, 0, True)
    out: list[tuple[int, str, int, Body]] = []
    for n, line in enumerate(lines, 1):
        batch = plugin._consume(f, line + b"\n")
        if batch is not None:
            out.extend((n, batch.tag, t, b) for t, b in zip(batch.times, batch.bodies,
                                                            strict=True))
    ctx = _Collect()
    await plugin._flush_file(ctx, f)
    for batch in ctx.batches:
        out.extend((len(lines), batch.tag, t, b) for t, b in zip(batch.times, batch.bodies,
                                                                 strict=True))
    return out


def _generic_records(piece: _Piece, lines: list[bytes]) -> list[tuple[int, str, int, Body]]:
    """Inputs other than tail: each line is the record, a JSON object (as dummy's Dummy)."""
    opts = piece.plugin.opts if piece.plugin is not None else {}
    tag = str(opts.get("tag") or piece.section.get("tag") or piece.name)
    now = time.time_ns()
    out: list[tuple[int, str, int, Body]] = []
    for n, line in enumerate(lines, 1):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            value = {"log": line.decode("utf-8", "replace")}
        out.append((n, tag, now, value))
    return out


def _tail_handling(opts: Any) -> list[str]:
    """What the tail input does to a line, as configured (for the trace's input stage)."""
    out: list[str] = []
    if opts.get("parser"):
        out.append(f"parser {opts['parser']}")
    if opts.get("docker_mode"):
        out.append("Docker_Mode")
    if opts.get("multiline.parser"):
        names = [n for item in opts["multiline.parser"]
                 for n in (item if isinstance(item, list) else [item])]
        out.append(f"multiline.parser {','.join(names)}")
    if opts.get("multiline"):
        out.append(f"multiline (Parser_Firstline {opts.get('parser_firstline')})")
    if not out:
        out.append(f"no parser: the line goes under '{opts.get('key', 'log')}'")
    return out


def _default_path(piece: _Piece) -> str:
    raw = piece.section.get("path") or ""
    first = str(raw).split(",")[0].strip()
    return first.replace("*", "trace") or "/var/log/trace.log"


# -- filters and outputs --------------------------------------------------------------------

def _destination(piece: _Piece, tag: str, record: dict[str, Any]) -> str:
    hook = getattr(piece.plugin, "destination", None)
    if callable(hook):
        try:
            dest = hook(tag, record)
        except Exception as exc:
            return f"(destination() failed: {exc})"
        if isinstance(dest, tuple) and len(dest) == 2 and "cloudwatch" in piece.plugin_name:
            return f"log group '{dest[0]}', log stream '{dest[1]}'"
        if isinstance(dest, tuple):
            return ", ".join(f"'{part}'" for part in dest)
        return str(dest)
    section = piece.section
    group = section.get("log_group_name")
    if group is not None:
        stream = section.get("log_stream_name")
        if stream is None:
            stream = f"{section.get('log_stream_prefix') or ''}{tag}"
        return f"log group '{group}', log stream '{stream}'"
    parts = [f"{key} '{section.get(key)}'" for key in _DESTINATION_KEYS
             if section.get(key) is not None]
    return ", ".join(parts)


async def _start_filters(filters: list[_Piece], pod: dict[str, Any] | None) -> None:
    for piece in filters:
        if piece.plugin is None:
            continue
        if pod is not None and callable(getattr(piece.plugin, "trace_with_pod", None)):
            piece.plugin.trace_with_pod(pod)
        try:
            await asyncio.wait_for(piece.plugin.start(), 10)
        except Exception as exc:
            piece.error = f"could not start: {exc}"
            piece.plugin = None


async def trace(model: ConfigModel, lines: list[bytes], path: str | None = None,
                source: str | None = None, pod: dict[str, Any] | None = None) -> list[Traced]:
    inputs, filters, outputs, _ = _pieces(model)
    if not inputs:
        raise ConfigError(["the configuration has no input"])
    chosen = inputs[0]
    if source is not None:
        match = [p for p in inputs if source in (p.name, p.plugin_name)]
        if not match:
            raise ConfigError([f"no input named '{source}'"])
        chosen = match[0]
    if chosen.plugin is None:
        raise ConfigError([f"{chosen.section.label}: {chosen.error}"])
    input_note = ""
    if chosen.plugin_name == "tail":
        path = path or _default_path(chosen)
        records = await _tail_records(chosen.plugin, path, lines)
        input_note = "; ".join([f"file {path}", *_tail_handling(chosen.plugin.opts)])
    else:
        records = _generic_records(chosen, lines)
    await _start_filters(filters, pod)
    out: list[Traced] = []
    try:
        for n, tag, ts, body in records:
            record = body_dict(body)
            stages = [Stage("input", chosen.name, chosen.plugin_name, dict(record), ts,
                            input_note)]
            traced = Traced(n, tag, stages, [])
            current: list[tuple[int, Body]] = [(ts, record)]
            for piece in filters:
                if piece.matcher is None or not piece.matcher(tag):
                    continue
                if piece.plugin is None:
                    stages.append(Stage("filter", piece.name, piece.plugin_name,
                                        note=f"not applied: {piece.error}"))
                    continue
                batch = Batch(tag, [t for t, _ in current], [b for _, b in current],
                              sum(len(orjson.dumps(b)) if isinstance(b, dict) else len(b)
                                  for _, b in current))
                try:
                    result = piece.plugin.filter(batch)
                except Exception as exc:
                    stages.append(Stage("filter", piece.name, piece.plugin_name,
                                        note=f"failed ({exc}): records passed on unchanged"))
                    continue
                current = list(zip(result.times, result.bodies, strict=True))
                if not current:
                    stages.append(Stage("filter", piece.name, piece.plugin_name, dropped=True,
                                        note="record removed by this filter"))
                    traced.dropped_by = piece.name
                    break
                first_t, first_b = current[0]
                stages.append(Stage("filter", piece.name, piece.plugin_name,
                                    body_dict(first_b), first_t,
                                    extra=[body_dict(b) for _, b in current[1:]]))
            if traced.dropped_by is None:
                final = body_dict(current[0][1])
                for piece in outputs:
                    if piece.matcher is not None and piece.matcher(tag):
                        traced.outputs.append({"name": piece.name, "plugin": piece.plugin_name,
                                               "destination": _destination(piece, tag, final),
                                               **({"note": piece.error} if piece.plugin is None
                                                  else {})})
            out.append(traced)
    finally:
        for piece in filters:
            if piece.plugin is not None:
                with contextlib.suppress(Exception):
                    await piece.plugin.stop()
        with contextlib.suppress(Exception):
            if chosen.plugin is not None:
                await chosen.plugin.stop()
    return out


def render_text(results: list[Traced]) -> str:
    def dump(value: Any) -> str:
        return orjson.dumps(value).decode()

    lines: list[str] = []
    for r in results:
        lines.append(f"record from line {r.line}, tag {r.tag}")
        previous: dict[str, Any] | None = None
        for s in r.stages:
            head = f"  {s.kind} {s.name} ({s.plugin})"
            if s.dropped:
                lines.append(f"{head}: DROPPED ({s.note})")
                continue
            if s.record is None:
                lines.append(f"{head}: {s.note}")
                continue
            when = f" time {_rfc3339(s.time)}" if s.time is not None else ""
            note = f" [{s.note}]" if s.note else ""
            if previous is not None and s.record == previous:
                lines.append(f"{head}: unchanged{note}")
            else:
                lines.append(f"{head}:{when}{note}")
                lines.append(f"    {dump(s.record)}")
            for extra in s.extra:
                lines.append(f"    + {dump(extra)}")
            previous = s.record
        if r.dropped_by is None:
            if r.outputs:
                for o in r.outputs:
                    dest = f": {o['destination']}" if o["destination"] else ""
                    note = f" ({o['note']})" if o.get("note") else ""
                    lines.append(f"  -> output {o['name']} ({o['plugin']}){dest}{note}")
            else:
                lines.append("  -> no output matches this tag: the record would be dropped")
        lines.append("")
    if not results:
        lines.append("no record came out of the input (buffered by multiline or Docker_Mode, "
                     "or skipped)")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="rillet trace", description="Show what the pipeline "
                                 "does to log lines, without sending anything.")
    ap.add_argument("-c", "--config", required=True, help="configuration file")
    ap.add_argument("-R", "--parser", action="append", default=[], help="parsers file")
    ap.add_argument("--line", action="append", default=[], help="a raw line (may repeat)")
    ap.add_argument("--input", help="a file of raw lines ('-' = standard input)")
    ap.add_argument("--path", help="the file the lines come from (tail: gives the tag)")
    ap.add_argument("--pod", help="a pod object (JSON) for the kubernetes filter")
    ap.add_argument("--source", help="the input to use (instance or plugin name; default: "
                    "the first)")
    ap.add_argument("--json", action="store_true", help="one JSON object per record")
    ns = ap.parse_args(list(argv))
    raw: list[bytes] = [line.encode() for line in ns.line]
    if ns.input:
        if ns.input == "-":
            data = sys.stdin.buffer.read()
        else:
            try:
                with open(ns.input, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                print(f"rillet trace: --input: {exc}", file=sys.stderr)
                return 2
        raw.extend(data.splitlines())
    if not raw:
        ap.error("give --line or --input")
    pod = None
    if ns.pod:
        try:
            with open(ns.pod, "rb") as fh:
                pod = orjson.loads(fh.read())
        except (OSError, orjson.JSONDecodeError) as exc:
            print(f"rillet trace: --pod: {exc}", file=sys.stderr)
            return 2
    rlog.setup("warn")
    logging.getLogger(rlog.ROOT).setLevel(logging.ERROR)
    from rillet.cli import Args, build_model

    try:
        model = build_model(Args(config=ns.config, parsers=list(ns.parser)))
        results = asyncio.run(trace(model, raw, ns.path, ns.source, pod))
    except ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"rillet trace: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        for r in results:
            print(orjson.dumps(r.to_json()).decode())
    else:
        print(render_text(results))
    return 0
