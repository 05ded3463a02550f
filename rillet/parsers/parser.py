"""Fluent Bit's parsers: ``json``, ``regex``, ``logfmt`` and ``ltsv``.

``build(opts)`` turns a resolved ``[PARSER]`` definition (:data:`definitions.PARSER_OPTIONS`)
into a :class:`Parser`; ``parser.parse(text)`` returns ``(record, time_ns)`` or None when the
text does not match. It never raises: the tail input and the kubernetes filter call it on
whatever a file holds.

What each format does with the time field follows Fluent Bit (``flb_parser_*.c``):

- json: the time is looked up after the decoders; a value that does not parse is a warning and
  the field stays; Types do not apply.
- regex: named groups in definition order; empty captures are dropped (Skip_Empty_Values); a
  time that does not parse is a warning and the field is dropped; Types, then decoders.
- logfmt / ltsv: a time that does not parse makes the whole line fail.

Time_Key defaults to ``time``. Without Time_Keep a parsed time field leaves the record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from rillet.config.options import Options
from rillet.parsers import decoders as dec
from rillet.parsers.regex import (
    RegexError,
    anchored_at_start,
    backtracking_risk,
    compile_ruby,
    fast_guard,
)
from rillet.parsers.timefmt import TimeFormat, compile_format, parse_offset

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

# Lines longer than this are not run through a regex that the startup check found may
# backtrack catastrophically (counted in Parser.skipped_long, warned about once).
RISKY_MAX_CHARS = 4096

_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?\d*)")
_HEXNUM = re.compile(r"[ \t\n\v\f\r]*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]*)")
_FLOAT = re.compile(r"[ \t\n\v\f\r]*([+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
                    r"|inf(?:inity)?|nan))", re.IGNORECASE)
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_U64 = 1 << 64


def to_integer(text: str) -> int:
    """C's ``atoll``: leading digits, 0 when there are none (``"12abc"`` -> 12)."""
    digits = _INT.match(text).group(1)  # type: ignore[union-attr]
    if digits in ("", "+", "-"):
        return 0
    return max(_I64_MIN, min(_I64_MAX, int(digits)))


def to_hex(text: str) -> int:
    """C's ``strtoull(text, NULL, 16)``: optional ``0x``, a minus wraps around."""
    m = _HEXNUM.match(text)
    if m is None or not m.group(2):
        return 0
    value = min(int(m.group(2), 16), _U64 - 1)
    return (_U64 - value) % _U64 if m.group(1) == "-" else value


def to_float(text: str) -> float:
    """C's ``atof``: the longest leading number, 0.0 when there is none."""
    m = _FLOAT.match(text)
    return float(m.group(1)) if m else 0.0


class RegexPlan(NamedTuple):
    """A plain regex parser, for callers that run it inline on a text without a newline::

        m = plan.first(text) or plan.match(text)
        values = m.groups()  # in the order of plan.names; keep the non-empty ones
        # time: plan.time_cache.get(record[plan.time_key]) -> (ns, _); on a miss (or anything
        # unusual) call Parser.parse(text) instead, which parses, counts and warns.

    ``first`` is a faster regex proven to give the same groups whenever it matches (or the
    regex itself); a record with the time field loses it unless ``time_keep``."""

    first: Callable[[str], re.Match[str] | None]
    match: Callable[[str], re.Match[str] | None]
    names: tuple[str, ...]
    time_key: str | None
    time_keep: bool
    time_cache: dict[str, tuple[int, int]]


class Parser:
    """A built parser. Attributes: ``name``, ``format``, ``time_key`` (None without
    Time_Format), counters ``time_errors``, ``skipped_long`` and ``errors``."""

    def __init__(self, opts: Options, log: logging.Logger | None = None) -> None:
        self.name: str = opts["name"]
        self.format: str = opts["format"]
        self.log = log or logging.getLogger(f"rillet.parser:{self.name}")
        self.time_keep: bool = bool(opts.get("time_keep"))
        self.time_errors = 0
        self.skipped_long = 0
        self.errors = 0
        self._warned: set[str] = set()
        fmt = opts.get("time_format")
        self.time_format: str | None = fmt
        self.time_key: str | None = (opts.get("time_key") or "time") if fmt else None
        self._time: TimeFormat | None = None
        if fmt:
            offset = 0
            if opts.get("time_offset") and not opts.get("time_system_timezone"):
                offset = parse_offset(opts["time_offset"])
            self._time = compile_format(fmt, offset=offset, zone=opts.get("time_zone"),
                                        system_tz=bool(opts.get("time_system_timezone")),
                                        strict=opts.get("time_strict", True) is not False)
        elif opts.get("time_zone"):
            raise ValueError("time_zone needs a Time_Format")
        self.types: dict[str, str] = parse_types(opts.get("types"))
        self.decoders = dec.parse_rules(opts.get("decode_field_as") or [],
                                        opts.get("decode_field") or [],
                                        opts.get("decode_order"))
        self.skip_empty: bool = opts.get("skip_empty_values", True) is not False
        self.no_bare_keys: bool = bool(opts.get("logfmt_no_bare_keys"))
        self.regex: re.Pattern[str] | None = None
        self._anchored = False
        self._guard: re.Pattern[str] | None = None
        self._names: tuple[str, ...] = ()
        self._all_named = False
        self._time_cache: dict[str, tuple[int, int]] | None = \
            self._time.text_cache() if self._time is not None else None
        self.max_chars = 0
        impl: Callable[[str | bytes], tuple[dict[str, Any], int | None] | None]
        if self.format == "json":
            impl = self._json
        elif self.format == "regex":
            pattern = opts.get("regex")
            if not pattern:
                raise ValueError("a regex parser needs a Regex")
            try:
                self.regex = compile_ruby(pattern)
            except RegexError as exc:
                raise ValueError(f"regex: {exc}") from None
            if not self.regex.groupindex:
                self.log.warning("[parser:%s] the regex has no named group: it never gives "
                                 "a record", self.name)
            self._anchored = anchored_at_start(pattern)
            guard = fast_guard(pattern) if self._anchored else None
            if guard is not None and guard.groupindex == self.regex.groupindex \
                    and guard.groups == self.regex.groups:
                self._guard = guard
            self._names = tuple(self.regex.groupindex)
            # Every group named: m.groups() lists the groupdict() values in the same order.
            self._all_named = len(self._names) == self.regex.groups
            risk = backtracking_risk(pattern)
            if risk:
                self.max_chars = RISKY_MAX_CHARS
                self.log.warning("[parser:%s] regex may backtrack catastrophically (%s): "
                                 "lines longer than %d characters are not parsed",
                                 self.name, risk, RISKY_MAX_CHARS)
            impl = self._regex
        elif self.format == "logfmt":
            impl = self._logfmt
        elif self.format == "ltsv":
            impl = self._ltsv
        else:
            raise ValueError(f"invalid format '{self.format}'")
        self._impl = impl

    # --- public -------------------------------------------------------------------------------

    def parse(self, data: str | bytes) -> tuple[dict[str, Any], int | None] | None:
        """``(record, time_ns)``; None when ``data`` does not match. Never raises."""
        try:
            return self._impl(data)
        except Exception as exc:  # a bug must not take the pipeline down: count and skip
            self.errors += 1
            self._warn_once("error", "[parser:%s] cannot parse record: %r", self.name, exc)
            return None

    def time_of(self, text: str) -> int | None:
        """The time field ``text`` -> ns, or None (warned once per parser)."""
        tf = self._time
        if tf is None:
            return None
        ns, _ = tf(text)
        if ns is None:
            self.time_errors += 1
            self._warn_once("time", "[parser:%s] invalid time format %s for '%s'",
                            self.name, self.time_format, text[:254])
        return ns

    def inline_regex(self) -> RegexPlan | None:
        """What a caller needs to run this regex parser inline on one-line texts, for the
        plain case only (Start-anchored regex with only named groups, Skip_Empty_Values, no
        Types, decoders or length limit, a time format that caches whole texts); None
        otherwise. See :class:`RegexPlan` for how to use it."""
        rx = self.regex
        if rx is None or not self._anchored or not self._all_named or not self._names \
                or self.types or self.decoders or self.max_chars or not self.skip_empty:
            return None
        if self.time_key is not None and self._time_cache is None:
            return None
        return RegexPlan(self._guard.match if self._guard is not None else rx.match, rx.match,
                         self._names, self.time_key, self.time_keep,
                         self._time_cache if self._time_cache is not None else {})

    # --- helpers ------------------------------------------------------------------------------

    def _warn_once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            self.log.warning(msg, *args)

    def _cast(self, record: dict[str, Any]) -> dict[str, Any]:
        for key, kind in self.types.items():
            value = record.get(key)
            if type(value) is not str:
                continue
            if kind == "integer":
                record[key] = to_integer(value)
            elif kind == "float":
                record[key] = to_float(value)
            elif kind == "hex":
                record[key] = to_hex(value)
            elif kind == "bool":
                low = value[:5].lower()
                if low.startswith("true"):
                    record[key] = True
                elif low == "false":
                    record[key] = False
                else:
                    self._warn_once(f"cast:{key}", "[PARSER] key=%s cast error. save as "
                                    "string.", key)
        return record

    # --- formats ------------------------------------------------------------------------------

    def _json(self, data: str | bytes) -> tuple[dict[str, Any], int | None] | None:
        try:
            record = _loads(data)
        except _JSONDecodeError:
            if type(data) is not bytes:
                return None
            try:  # invalid UTF-8 inside strings: keep what can be read
                record = _loads(data.decode("utf-8", "replace"))
            except _JSONDecodeError:
                return None
        if type(record) is not dict:
            return None
        if self.decoders:
            record = self.decoders.apply(record)
        key = self.time_key
        if key is None:
            return record, None
        value = record.get(key)
        if type(value) is not str:
            return record, None
        ns = self.time_of(value)
        if ns is not None and not self.time_keep:
            del record[key]
        return record, ns

    def _regex(self, data: str | bytes) -> tuple[dict[str, Any], int | None] | None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if self.max_chars and len(text) > self.max_chars:
            self.skipped_long += 1
            self._warn_once("long", "[parser:%s] line of %d characters not parsed: the regex "
                            "may backtrack catastrophically (limit %d)", self.name,
                            len(text), self.max_chars)
            return None
        rx: re.Pattern[str] = self.regex  # type: ignore[assignment]
        # A pattern that starts with ^ matches a one-line text only at 0: match, not search.
        if self._anchored and "\n" not in text:
            guard = self._guard
            m = (guard.match(text) if guard is not None else None) or rx.match(text)
        else:
            m = rx.search(text)
        if m is None:
            return None
        names = self._names
        if not names:
            return None
        values = m.groups() if self._all_named else m.group(*names)
        if len(names) == 1 and not self._all_named:
            values = (values,)  # m.group(one) is not a tuple
        if self.skip_empty:
            if all(values):
                record: dict[str, Any] = dict(zip(names, values, strict=True))
            else:
                record = {k: v for k, v in zip(names, values, strict=True) if v}
        else:
            record = {k: v or "" for k, v in zip(names, values, strict=True)}
        ns = None
        key = self.time_key
        if key is not None:
            value = record.get(key)
            if value is not None:
                cache = self._time_cache
                hit = cache.get(value) if cache is not None else None
                ns = hit[0] if hit is not None else self.time_of(value)
                if ns is None or not self.time_keep:
                    del record[key]
        if self.types:
            record = self._cast(record)
        if self.decoders:
            record = self.decoders.apply(record)
        return record, ns

    def _kv_time(self, record: dict[str, Any], raw: dict[str, str]) -> tuple[bool, int | None]:
        """logfmt/ltsv time: (ok, ns); a time that does not parse fails the line."""
        key = self.time_key
        if key is None:
            return True, None
        value = raw.get(key)
        if not value:
            return True, None
        ns = self.time_of(value)
        if ns is None:
            return False, None
        if not self.time_keep:
            record.pop(key, None)
        return True, ns

    def _logfmt(self, data: str | bytes) -> tuple[dict[str, Any], int | None] | None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        typed = bool(self.types)
        record: dict[str, Any] = {}
        raw: dict[str, str] = {}
        pos, n = 0, len(text)
        garbage, pair = _LF_GARBAGE.match, _LF_PAIR.match
        while pos < n:
            pos = garbage(text, pos).end()  # type: ignore[union-attr]
            if pos >= n:
                break
            m = pair(text, pos)
            if m is None:  # pragma: no cover - the garbage run stops at an ident byte
                break
            key, has_value, quoted, plain = m.group(1, 2, 3, 4)
            pos = m.end()
            if has_value is None and self.no_bare_keys:
                return None
            value_text = quoted if quoted is not None else (plain or "")
            raw.setdefault(key, value_text)
            if typed:
                record[key] = value_text
            elif not value_text:
                record[key] = "" if quoted is not None else True
            elif quoted is not None and "\\" in quoted:
                record[key] = dec.unescape_utf8_json(quoted)
            else:
                record[key] = value_text
            if pos < n and text[pos] in "\r\n":
                break
        if not record:
            return None
        ok, ns = self._kv_time(record, raw)
        if not ok:
            return None
        if typed:
            record = self._cast(record)
        if self.decoders:
            record = self.decoders.apply(record)
        return record, ns

    def _ltsv(self, data: str | bytes) -> tuple[dict[str, Any], int | None] | None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        record: dict[str, Any] = {}
        pos, n = 0, len(text)
        field = _LTSV_FIELD.match
        while pos < n:
            m = field(text, pos)
            if m is None:
                break
            label, value = m.group(1, 2)
            pos = m.end()
            if label:
                record[label] = value
            if pos < n and text[pos] == "\t":
                pos += 1
            if pos < n and text[pos] in "\r\n":
                break
        if not record:
            return None
        ok, ns = self._kv_time(record, record.copy())
        if not ok:
            return None
        if self.types:
            record = self._cast(record)
        if self.decoders:
            record = self.decoders.apply(record)
        return record, ns


# logfmt (flb_parser_logfmt.c): an ident byte is any byte above ' ' except '"' and '='.
_LF_GARBAGE = re.compile(r'[\x00-\x20"=]*')
_LF_PAIR = re.compile(r'([^\x00-\x20"=]+)(=(?:"((?:[^"\\]|\\.)*\\?)"?|([^\x00-\x20"=]*)))?',
                      re.DOTALL)
# ltsv (flb_parser_ltsv.c): label [0-9A-Za-z_.-]*, ':', value up to TAB, CR, LF or NUL.
_LTSV_FIELD = re.compile(r"([0-9A-Za-z_.\-]*):([^\x00\t\n\r]*)")

_TYPES = ("string", "integer", "bool", "float", "hex")


def parse_types(text: str | None) -> dict[str, str]:
    """``Types key:type ...`` -> {key: type}; an unknown type is ``string``, as in Fluent Bit."""
    out: dict[str, str] = {}
    for item in (text or "").split():
        key, sep, kind = item.partition(":")
        if not sep:
            continue
        kind = kind.lower()
        out.setdefault(key, kind if kind in _TYPES else "string")
    return {k: v for k, v in out.items() if v != "string"}


def build(opts: Options) -> Parser:
    """A parser from its resolved definition; ValueError with the reason if it cannot be built."""
    return Parser(opts)
