"""Merge_Log and the ``fluentbit.io/*`` pod annotations (Fluent Bit's kubernetes.c and
kube_property.c semantics).

Annotations: ``fluentbit.io/`` + ``parser`` or ``exclude`` + optional ``_stdout``/``_stderr`` +
optional ``-<container>``. The most specific annotation wins for each stream: one naming the
container beats one that does not, and one naming the stream beats one that does not; between
equals the first listed wins. ``exclude`` values are Fluent Bit booleans (true/on/yes,
false/off/no); anything else is warned about and ignored, as is an unknown parser.

Merge_Log: the record's ``log`` key (exactly), when a string, is parsed by the stream's
annotation parser, else ``Merge_Parser``, else as JSON (objects only). The parsed keys follow
the record's keys, or go under ``Merge_Log_Key``; with Merge_Log_Trim their string values lose
trailing newlines. A parser's time becomes the record's time (the current time when the parser
gives none, as in Fluent Bit); JSON keeps the record's time. ``Keep_Log Off`` drops ``log``
after a successful merge only.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from rillet.parsers.parser import Parser

ANNOTATION_PREFIX = "fluentbit.io/"
_ANNOTATION = re.compile(r"(parser|exclude)(?:_(stdout|stderr))?(?:-(.+))?")
_CTRL = re.compile(r"[\x00-\x1f]")
_TRUE = ("true", "on", "yes")
_FALSE = ("false", "off", "no")
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

Warn = Callable[[str], None]


@dataclass(slots=True)
class Props:
    """What a pod's annotations decide for one container, per stream."""

    parser_out: Parser | None = None
    parser_err: Parser | None = None
    exclude_out: bool = False
    exclude_err: bool = False

    @property
    def parser_any(self) -> Parser | None:
        """The parser of records without a (known) stream: only when both streams agree."""
        return self.parser_out if self.parser_out is self.parser_err else None

    @property
    def exclude_any(self) -> bool:
        return self.exclude_out and self.exclude_err

    @property
    def has_parser(self) -> bool:
        return self.parser_out is not None or self.parser_err is not None

    @property
    def has_exclude(self) -> bool:
        return self.exclude_out or self.exclude_err


def to_bool(value: Any) -> bool | None:
    """Fluent Bit's flb_utils_bool: None when the value is not a boolean word."""
    if type(value) is bool:
        return value
    if type(value) is not str:
        return None
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return None


def annotation_props(annotations: Any, container: str, *, parser_on: bool, exclude_on: bool,
                     merge_log: bool, get_parser: Callable[[str], Parser | None],
                     warn: Warn) -> Props:
    """Props of ``container`` from a pod's annotations (``warn`` gets each problem once per
    call: the filter calls this once per pod version and container)."""
    props = Props()
    if type(annotations) is not dict:
        return props
    rank: dict[tuple[str, str], int] = {}
    for key, value in annotations.items():
        if type(key) is not str or not key.startswith(ANNOTATION_PREFIX) \
                or len(key) == len(ANNOTATION_PREFIX):
            continue
        m = _ANNOTATION.fullmatch(key, len(ANNOTATION_PREFIX))
        if m is None:
            warn(f"annotation '{key}' is not one the kubernetes filter knows: ignored")
            continue
        kind, stream, target = m.groups()
        if target is not None and target != container:
            continue
        chosen: Any
        if kind == "parser":
            if not parser_on:
                warn(f"annotation '{key}' not allowed (K8S-Logging.Parser is Off): ignored")
                continue
            if not merge_log:
                warn(f"annotation '{key}' has no effect: Merge_Log is Off")
                continue
            chosen = get_parser(value) if type(value) is str else None
            if chosen is None:
                warn(f"annotation parser '{value}' not found: ignored")
                continue
        else:
            if not exclude_on:
                warn(f"annotation '{key}' not allowed (K8S-Logging.Exclude is Off): ignored")
                continue
            chosen = to_bool(value)
            if chosen is None:
                warn(f"annotation '{key}': '{value}' is not a boolean: ignored")
                continue
        level = (2 if target is not None else 0) + (1 if stream is not None else 0)
        for s in (stream,) if stream is not None else ("stdout", "stderr"):
            slot = (kind, s)
            if rank.get(slot, -1) >= level:
                continue
            rank[slot] = level
            setattr(props, f"{kind}_{'out' if s == 'stdout' else 'err'}", chosen)
    return props


def trim(value: str) -> str:
    """Merge_Log_Trim: drop trailing newlines and trailing escaped ``\\n``/``\\r`` pairs (the
    first character is never looked at, as in Fluent Bit's value_trim_size)."""
    size = len(value)
    i = size - 1
    while i > 0:
        c = value[i]
        if c == "\n":
            size -= 1
            i -= 1
        elif value[i - 1] == "\\" and (c == "n" or c == "r"):
            size -= 2
            i -= 2
        else:
            break
    return value[:size] if size != len(value) else value


def trim_all(merged: dict[str, Any]) -> dict[str, Any]:
    for k, v in merged.items():
        if type(v) is str and v and v[-1] in "\nnr":
            merged[k] = trim(v)
    return merged


def json_fallback(text: str) -> Any:
    """What orjson refused, read as Fluent Bit's JSON reader would: raw control characters
    inside strings are accepted. None when it is not JSON either way."""
    if not _CTRL.search(text.rstrip()):
        return None
    try:  # only for the rare line with raw newlines/tabs inside its strings
        return json.loads(text, strict=False)
    except ValueError:
        return None


def json_object(text: str) -> dict[str, Any] | None:
    """``text`` as a JSON object, or None."""
    if text[:1] != "{" and text.lstrip()[:1] != "{":
        return None
    try:
        obj = _loads(text)
    except _JSONDecodeError:
        obj = json_fallback(text)
    return obj if type(obj) is dict else None


@dataclass(frozen=True, slots=True)
class MergeSettings:
    key: str | None = None  # Merge_Log_Key
    trim: bool = True
    keep_log: bool = True
    parser: Parser | None = None  # Merge_Parser


def merge(record: dict[str, Any], parser: Parser | None, ms: MergeSettings,
          t: int) -> tuple[dict[str, Any], int]:
    """Merge ``record['log']`` into ``record`` (changed in place); returns the record and its
    time. A record that cannot be merged is returned as it is."""
    log = record.get("log")
    if type(log) is str:
        use = parser or ms.parser
        if use is not None:
            result = use.parse(log)
            if result is None:
                return record, t
            merged, pt = result
            t = pt or time.time_ns()
        else:
            obj = json_object(log)
            if obj is None:
                return record, t
            merged = obj
        if ms.trim:
            merged = trim_all(merged)
    elif type(log) is dict:
        merged = log
    else:
        return record, t
    if not ms.keep_log:
        del record["log"]
    if ms.key is not None:
        if merged:
            record[ms.key] = merged
    else:
        record.update(merged)
    return record, t
