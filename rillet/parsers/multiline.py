"""Multiline parsers: Fluent Bit's multiline core (``src/multiline/``) on top of rillet's records.

A :class:`MultilineParser` is a stateless definition (a ``[MULTILINE_PARSER]`` section or one of
the built-ins docker, cri, go, python, java, ruby). A :class:`MultilineGroup` is the state one
source owns: the tail input keeps one per file, the ``multiline`` filter one per tag. Feeding it
lines (:meth:`MultilineGroup.feed`, :meth:`MultilineGroup.feed_many`) or records
(:meth:`MultilineGroup.feed_record`) returns the records that are complete.

Semantics (Fluent Bit's, see docs/multiline.md for the few deliberate differences):

- Several parsers: the one that consumed the source's last line is tried first, then the others in
  order; the first that consumes the line is remembered. A line no parser consumes ends every
  pending message of the source (they come out first) and comes out as a record of its own.
- Each parser keeps one message per *group*: the value of ``key_group`` (``stream``: stdout and
  stderr interleaved are separate messages), at most 6 groups per source.
- ``regex``: a rule of a ``start_state`` begins a message (flushing the previous one); the rules
  reachable from the current state continue it (lines joined with ``"\\n"``); a rule whose next
  state can start a message ends it at once; any other line is not consumed.
- ``endswith`` / ``equal``: the line is appended; a match of ``match_string`` (xor ``negate``) on
  the ``key_pattern`` value (else the content) completes the message. Content is concatenated
  as is when the parser has a ``key_content`` (docker's ``log`` keeps its ``"\\n"``), else joined
  with ``"\\n"``.
- A message's record is its first line's record with the ``key_content`` value replaced by the
  joined text, or ``{key_content: text}`` (``{key: text}`` with no key_content) for raw lines;
  its time is the first line's time.
- A message that would exceed ``buffer_limit`` bytes is cut there, emitted at once and counted in
  :attr:`MultilineGroup.truncated` (warning "multiline message truncated due to buffer limit",
  logged once per group, i.e. per file or tag).
- A pending message is flushed ``flush_timeout`` ms after its last line (:meth:`flush_expired`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from rillet import log as rlog
from rillet.config.options import Options
from rillet.parsers import multiline_builtin as _builtin
from rillet.parsers.definitions import rules_of
from rillet.parsers.regex import RegexError, compile_ruby

if TYPE_CHECKING:
    from rillet.parsers.registry import ParserRegistry

BUILTIN_NAMES: tuple[str, ...] = ("docker", "cri", "go", "python", "java", "ruby")

FLUSH_TIMEOUT_MS = 4000  # FLB_ML_FLUSH_TIMEOUT
MAX_GROUPS = 6  # FLB_ML_MAX_GROUPS: groups (key_group values) per source and parser
REGEX, ENDSWITH, EQUAL = "regex", "endswith", "equal"
_KINDS = {"regex": REGEX, "endswith": ENDSWITH, "equal": EQUAL, "eq": EQUAL}

_log = rlog.get("multiline")
_now_ns = time.time_ns
_monotonic = time.monotonic

Record = dict[str, Any]
Out = list[tuple[int, Record]]


class LineParser(Protocol):
    """What a multiline parser needs from its pre-parser (``rillet.parsers.parser.Parser``)."""

    def parse(self, data: bytes | str) -> tuple[dict[str, Any], int | None] | None: ...


class Rule:
    """One ``rule "from_states" "/regex/" "to_state"`` line, linked to the rules it leads to."""

    __slots__ = ("continues", "ends", "from_states", "pattern", "search", "start", "to_state")

    def __init__(self, from_states: str, pattern: str, to_state: str) -> None:
        self.from_states = tuple(s.strip() for s in from_states.split(",") if s.strip())
        if not self.from_states:
            raise ValueError("rule is empty or has invalid 'from_states' tokens")
        self.pattern = pattern
        try:
            self.search: Any = compile_ruby(pattern).search
        except RegexError as exc:
            raise ValueError(f"rule regex {pattern!r}: {exc}") from None
        self.to_state = to_state.strip()
        self.start = "start_state" in self.from_states
        # Rules of to_state that continue a message (start rules are skipped there), and whether
        # to_state can start a new message, in which case the message ends with this line.
        self.continues: tuple[Rule, ...] = ()
        self.ends = False


class MultilineParser:
    """A multiline parser definition; stateless, shared by every source that uses it."""

    def __init__(self, name: str, kind: str, *, match_string: str | None = None,
                 negate: bool = False, flush_timeout: int = FLUSH_TIMEOUT_MS,
                 key_content: str | None = None, key_group: str | None = None,
                 key_pattern: str | None = None, parser: LineParser | None = None,
                 rules: Sequence[tuple[str, str, str]] = ()) -> None:
        # The constants themselves: the hot paths compare types by identity.
        norm = _KINDS.get(kind.strip().lower())
        if norm is None:
            raise ValueError(f"multiline parser '{name}': unknown type '{kind}' (regex, "
                             "endswith or equal)")
        kind = norm
        self.name = name
        self.type = kind
        self.match_string = match_string
        self.negate = negate
        self.flush_timeout = flush_timeout
        self.key_content = key_content or None
        self.key_group = key_group or None
        self.key_pattern = key_pattern or None
        self.parser = parser
        self.rules = [Rule(*r) for r in rules]
        if kind == REGEX:
            if not self.rules:
                raise ValueError(f"multiline parser '{name}': a regex parser needs rules")
            if not self.rules[0].start:
                raise ValueError(f"multiline parser '{name}': the first rule must be for "
                                 "'start_state'")
            self._link()
        elif match_string is None or match_string == "":
            raise ValueError(f"multiline parser '{name}': a {kind} parser needs match_string")
        self.start_rules = tuple(r for r in self.rules if r.start)

    def _link(self) -> None:
        known = {s for r in self.rules for s in r.from_states}
        for rule in self.rules:
            if rule.to_state not in known:
                raise ValueError(f"multiline parser '{self.name}': to_state='{rule.to_state}' "
                                 "is not registered")
            targets = [r for r in self.rules if rule.to_state in r.from_states]
            rule.continues = tuple(r for r in targets if not r.start)
            rule.ends = any(r.start for r in targets)

    def rules_source(self) -> list[tuple[str, str, str]]:
        """The rules as ``(from_states, regex, to_state)`` text, as they were defined."""
        return [(", ".join(r.from_states), r.pattern, r.to_state) for r in self.rules]

    def __repr__(self) -> str:
        return f"MultilineParser({self.name!r}, {self.type!r})"


def build(opts: Options, registry: ParserRegistry) -> MultilineParser:
    """A parser from a resolved ``MULTILINE_OPTIONS`` section; ValueError explains a failure."""
    name = opts.get("name") or ""
    pre: LineParser | None = None
    if opts.get("parser"):
        pre = registry.get(opts["parser"])
        if pre is None:
            raise ValueError(f"multiline parser '{name}' points to an undefined parser "
                             f"'{opts['parser']}'")
    return MultilineParser(
        name, opts.get("type") or "", match_string=opts.get("match_string"),
        negate=bool(opts.get("negate")),
        flush_timeout=int(opts.get("flush_timeout") or FLUSH_TIMEOUT_MS),
        key_content=opts.get("key_content"), key_group=opts.get("key_group"),
        key_pattern=opts.get("key_pattern"), parser=pre, rules=rules_of(opts))


_BUILTINS: dict[str, MultilineParser] = {}


def builtin(name: str, registry: ParserRegistry | None = None) -> MultilineParser | None:
    """The built-in multiline parser called ``name`` (Fluent Bit's), or None."""
    name = name.strip().lower()  # Fluent Bit looks multiline parsers up case-insensitively
    parser = _BUILTINS.get(name)
    if parser is not None:
        return parser
    if name == "docker":
        parser = MultilineParser("docker", ENDSWITH, match_string="\n", key_content="log",
                                 key_group="stream", parser=_builtin.DockerLineParser())
    elif name == "cri":
        parser = MultilineParser("cri", EQUAL, match_string="F", key_content="log",
                                 key_group="stream", key_pattern="_p",
                                 parser=_builtin.CriLineParser())
    elif name in _builtin.REGEX_BUILTINS:
        parser = MultilineParser(name, REGEX, rules=_builtin.REGEX_BUILTINS[name])
    else:
        return None
    _BUILTINS[name] = parser
    return parser


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class _Pending:
    """One message being assembled (Fluent Bit's stream group)."""

    __slots__ = ("context", "deadline", "name", "nbytes", "nl", "parts", "refs", "rule", "size",
                 "time", "truncated")

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.parts: list[str] = []
        self.size = 0  # characters in parts
        self.nbytes = -1  # UTF-8 bytes in parts, counted only near the buffer limit
        self.nl = False  # the text so far ends with "\n"
        self.time: int | None = None  # set while a message is pending
        self.context: Record | None = None  # the first line's record
        self.rule: Rule | None = None  # regex state (kept after a flush, as Fluent Bit does)
        self.deadline = 0.0
        self.truncated = False
        self.refs: list[Any] = []


class _Source:
    """A parser's state inside one group: its messages by key_group value."""

    __slots__ = ("fast", "groups", "key_content", "key_group", "key_pattern", "match", "negate",
                 "parser", "pre", "sep", "timeout", "type")

    def __init__(self, parser: MultilineParser, key_content: str | None,
                 flush_ms: int | None) -> None:
        self.parser = parser
        self.type = parser.type
        self.key_content = key_content if key_content is not None else parser.key_content
        self.key_group = parser.key_group
        self.key_pattern = parser.key_pattern
        self.pre = parser.parser.parse if parser.parser is not None else None
        # endswith/equal join raw lines with "\n", structured content as is (breakline_prepare)
        self.sep = self.key_content is None
        self.timeout = (flush_ms if flush_ms is not None else parser.flush_timeout) / 1000.0
        self.groups: dict[str | None, _Pending] = {None: _Pending(None)}
        self.match: str = parser.match_string or ""
        self.negate = parser.negate
        # feed_many's fast path: structured lines (docker, cri) of an endswith/equal parser.
        self.fast = self.pre is not None and parser.type is not REGEX and \
            self.key_content is not None

    def group(self, name: Any) -> _Pending:
        if type(name) is not str or self.key_group is None:
            return self.groups[None]
        g = self.groups.get(name)
        if g is None:
            if len(self.groups) >= MAX_GROUPS:
                return self.groups[None]
            g = self.groups[name] = _Pending(name)
        return g


class MultilineGroup:
    """The multiline state of one source (a file, a tag); see the module docstring.

    ``key``: the record key of raw text when the parser has no ``key_content`` (Fluent Bit:
    ``log``). ``key_content`` overrides every parser's (the filter's ``multiline.key_content``);
    ``flush_ms`` overrides every parser's ``flush_timeout`` (the filter's ``flush_ms``).
    ``buffer_limit`` 0 means no limit.

    ``ref`` (optional): an object tagged onto every message the lines fed next join; when such a
    message is emitted its refs are appended to :attr:`released` and :attr:`joins` counts the
    joins. The multiline filter uses it to hold acknowledgements while records are pending.
    """

    def __init__(self, parsers: list[MultilineParser], buffer_limit: int = 2_000_000,
                 key: str = "log", *, key_content: str | None = None,
                 flush_ms: int | None = None) -> None:
        if not parsers:
            raise ValueError("a multiline group needs at least one parser")
        self.parsers = list(parsers)
        self.limit = max(0, int(buffer_limit))
        self.key = key
        self._sources = [_Source(p, key_content, flush_ms) for p in parsers]
        self._lru: _Source | None = None
        self.truncated = 0
        self._warned = False
        self.ref: Any = None
        self.released: list[Any] = []
        self.joins = 0
        self._unconsumed: tuple[int, Record] | None = None
        self._ot: list[int] = []
        self._or: list[Record] = []
        self._now = 0.0

    # -- public API ---------------------------------------------------------------------------
    def feed(self, time_ns: int, line: str) -> Out:
        """One raw line (no trailing newline): the records it completes, in order."""
        times, records = self.feed_many([time_ns], [line])
        return list(zip(times, records, strict=True))

    def feed_many(self, times: list[int], lines: list[str]) -> tuple[list[int], list[Record]]:
        """A batch of raw lines: ``(times, records)`` completed by them, in order."""
        ot: list[int] = []
        orr: list[Record] = []
        self._ot, self._or = ot, orr
        self._now = _monotonic()
        limit4 = self.limit // 4 if self.limit else 1 << 62
        line_one = self._line
        after_lru = self._after_lru
        add_t, add_r = ot.append, orr.append
        for t, line in zip(times, lines, strict=False):
            src = self._lru
            # Fast path: the remembered parser is docker/cri-like (structured, endswith/equal),
            # its message for this stream is empty and the line is complete by itself.
            if src is None or not src.fast:
                line_one(t, line)
                continue
            try:
                parsed = src.pre(line)  # type: ignore[misc]
            except Exception:
                parsed = None
            if parsed is None:
                self._unconsumed = None
                after_lru(t, line)
                continue
            rec, rt = parsed
            if rt is None:
                rt = t
            content = rec.get(src.key_content)  # type: ignore[arg-type]
            if type(content) is not str:
                self._unconsumed = (rt, rec)
                after_lru(t, line)
                continue
            kg = src.key_group
            if kg is None:
                g = src.groups[None]
            else:
                name = rec.get(kg)
                g = src.groups.get(name) if type(name) is str else None  # type: ignore[assignment]
                if g is None:
                    g = src.group(name)
            kp = src.key_pattern
            pattern = content if kp is None else rec.get(kp, content)
            if type(pattern) is not str:
                pattern = content
            if g.time is None and len(content) <= limit4:
                ms = src.match
                if src.type is ENDSWITH:
                    if len(pattern) >= len(ms) and pattern.endswith(ms) is not src.negate:
                        add_t(rt)
                        add_r(rec)
                        continue
                elif (pattern == ms) is not src.negate:
                    add_t(rt)
                    add_r(rec)
                    continue
            if not self._process(src, rt, rec, content, pattern, g):
                self._unconsumed = (rt, rec)
                after_lru(t, line)
        return ot, orr

    def feed_record(self, time_ns: int, record: Record) -> Out:
        """A record (filter mode): the records it completes, in order."""
        ot: list[int] = []
        orr: list[Record] = []
        self._ot, self._or = ot, orr
        self._now = _monotonic()
        lru = self._lru
        if lru is None or not self._try_record(lru, time_ns, record):
            for src in self._sources:
                if src is lru:
                    continue
                if self._try_record(src, time_ns, record):
                    self._lru = src
                    break
            else:
                # Not consumed: it ends the pending messages of its stream and passes as is.
                self._flush_stream(record)
                ot.append(time_ns)
                orr.append(record)
        return list(zip(ot, orr, strict=True))

    def flush_expired(self, now: float) -> Out:
        """Messages whose flush timeout has passed (``now``: time.monotonic())."""
        ot: list[int] = []
        orr: list[Record] = []
        self._ot, self._or = ot, orr
        for src in self._sources:
            for g in src.groups.values():
                if g.time is not None and g.deadline <= now:
                    self._flush(src, g)
        return list(zip(ot, orr, strict=True))

    def next_deadline(self) -> float | None:
        """When the next pending message times out (time.monotonic()), None if none is."""
        best: float | None = None
        for src in self._sources:
            for g in src.groups.values():
                if g.time is not None and (best is None or g.deadline < best):
                    best = g.deadline
        return best

    def flush_all(self) -> Out:
        """Every pending message (end of input, shutdown)."""
        ot: list[int] = []
        orr: list[Record] = []
        self._ot, self._or = ot, orr
        self._flush_every()
        return list(zip(ot, orr, strict=True))

    @property
    def pending(self) -> bool:
        return any(g.time is not None for src in self._sources for g in src.groups.values())

    # -- line and record paths ------------------------------------------------------------------
    def _line(self, t: int, line: str) -> None:
        self._unconsumed = None
        lru = self._lru
        if lru is not None and self._try_text(lru, t, line):
            return
        self._after_lru(t, line)

    def _after_lru(self, t: int, line: str) -> None:
        lru = self._lru
        for src in self._sources:
            if src is lru:
                continue
            if self._try_text(src, t, line):
                self._lru = src
                return
        unconsumed = self._unconsumed
        if unconsumed is not None:
            # A structured line (a pre-parser read it) that no rule took: it ends the pending
            # messages of its own stream only and comes out as the parsed record.
            self._unconsumed = None
            self._flush_stream(unconsumed[1])
            self._ot.append(unconsumed[0])
            self._or.append(unconsumed[1])
            return
        # No parser consumed the raw line: it ends every pending message and stands alone.
        self._flush_every()
        src = self._sources[0]
        g = src.groups[None]
        g.time = t
        self._cat(g, line)
        if self.ref is not None:
            self._join(g)
        self._flush(src, g)

    def _try_text(self, src: _Source, t: int, line: str) -> bool:
        pre = src.pre
        if pre is None:
            return self._process(src, t, None, line, line, None)
        try:
            parsed = pre(line)
        except Exception:
            return False
        if parsed is None:
            return False
        rec, rt = parsed
        if rt is None:
            rt = t
        if self._structured(src, rt, rec):
            return True
        if self._unconsumed is None:
            self._unconsumed = (rt, rec)
        return False

    def _try_record(self, src: _Source, t: int, record: Record) -> bool:
        pre = src.pre
        if pre is not None:
            kc = src.key_content
            text = record.get(kc) if kc is not None else None
            if type(text) is not str:
                return False
            try:
                parsed = pre(text)
            except Exception:
                return False
            if parsed is None:
                return False
            record, rt = parsed
            if rt is not None:
                t = rt
        return self._structured(src, t, record)

    def _structured(self, src: _Source, t: int, rec: Record) -> bool:
        kc = src.key_content
        content = rec.get(kc) if kc is not None else None
        if type(content) is not str:
            return False
        kp = src.key_pattern
        pattern = rec.get(kp, content) if kp is not None else content
        if type(pattern) is not str:
            pattern = content
        g = src.group(rec.get(src.key_group)) if src.key_group is not None else None
        return self._process(src, t, rec, content, pattern, g)

    # -- the state machines ---------------------------------------------------------------------
    def _process(self, src: _Source, t: int, rec: Record | None, content: str, pattern: str,
                 g: _Pending | None) -> bool:
        if g is None:
            g = src.groups[None]
        if src.type is REGEX:
            return self._regex(src, g, t, rec, content)
        ms: str = src.parser.match_string  # type: ignore[assignment]
        if src.type is ENDSWITH:
            if len(pattern) < len(ms):
                return False
            done = pattern.endswith(ms) is not src.parser.negate
        else:
            done = (pattern == ms) is not src.parser.negate
        if g.time is None:
            g.time = t
            g.context = rec
        if src.sep and g.parts and not g.nl:
            g.parts.append("\n")
            g.size += 1
            if g.nbytes >= 0:
                g.nbytes += 1
            g.nl = True
        if not self._cat(g, content):
            done = True
        if self.ref is not None:
            self._join(g)
        if done:
            self._flush(src, g)
        else:
            g.deadline = self._now + src.timeout
        return True

    def _regex(self, src: _Source, g: _Pending, t: int, rec: Record | None,
               content: str) -> bool:
        rule: Rule | None = None
        state = g.rule
        if state is not None:
            for candidate in state.continues:
                if candidate.search(content):
                    rule = candidate
                    break
        if rule is not None:
            # A continuation line.
            if g.time is None:
                g.time = t
                g.context = rec
            if g.parts and not g.nl:
                g.parts.append("\n")
                g.size += 1
                if g.nbytes >= 0:
                    g.nbytes += 1
                g.nl = True
            ok = self._cat(g, content) if content else self._cat(g, "\n")
            if self.ref is not None:
                self._join(g)
            if not ok:
                self._flush(src, g)
                g.rule = None
                return True
        else:
            for candidate in src.parser.start_rules:
                if candidate.search(content):
                    rule = candidate
                    break
            if rule is None:
                return False
            if g.time is not None:
                self._flush(src, g)
            g.time = t
            g.context = rec
            ok = self._cat(g, content)
            if self.ref is not None:
                self._join(g)
            if not ok:
                self._flush(src, g)
                g.rule = None
                return True
        g.rule = rule
        if rule.ends:
            self._flush(src, g)
        else:
            g.deadline = self._now + src.timeout
        return True

    def _cat(self, g: _Pending, text: str) -> bool:
        """Append ``text`` within the buffer limit; False when it had to be cut."""
        if not text:
            return True
        limit = self.limit
        n = len(text)
        if limit and (g.nbytes >= 0 or (g.size + n) * 4 > limit):
            if g.nbytes < 0:
                g.nbytes = sum(_utf8_len(p) for p in g.parts)
            if g.nbytes >= limit:
                g.truncated = True
                return False
            size = _utf8_len(text)
            avail = limit - g.nbytes
            if size > avail:
                text = text.encode("utf-8", "surrogatepass")[:avail].decode("utf-8", "ignore")
                g.truncated = True
                if text:
                    g.parts.append(text)
                    g.size += len(text)
                    g.nbytes += _utf8_len(text)
                    g.nl = text[-1] == "\n"
                return False
            g.nbytes += size
        g.parts.append(text)
        g.size += n
        g.nl = text[-1] == "\n"
        return True

    def _join(self, g: _Pending) -> None:
        ref = self.ref
        refs = g.refs
        if not refs or refs[-1] is not ref:
            refs.append(ref)
            self.joins += 1

    def _flush(self, src: _Source, g: _Pending) -> None:
        if g.time is None:
            return
        parts = g.parts
        text = parts[0] if len(parts) == 1 else "".join(parts)
        ctx = g.context
        if ctx is None:
            if not text:
                # Fluent Bit packs nothing for an empty raw message (an empty line).
                self._reset(g)
                return
            record: Record = {src.key_content or self.key: text}
        else:
            record = ctx
            kc = src.key_content
            if text and kc is not None and kc in ctx:
                ctx[kc] = text
        self._ot.append(g.time)
        self._or.append(record)
        if g.truncated:
            self.truncated += 1
            if not self._warned:
                self._warned = True
                _log.warning("multiline message truncated due to buffer limit "
                             "(multiline_buffer_limit %d bytes, parser '%s')", self.limit,
                             src.parser.name)
        self._reset(g)

    def _reset(self, g: _Pending) -> None:
        if g.refs:
            self.released.extend(g.refs)
            g.refs = []
        g.parts = []
        g.size = 0
        g.nbytes = -1
        g.nl = False
        g.time = None
        g.context = None
        g.truncated = False

    def _flush_stream(self, rec: Record) -> None:
        for src in self._sources:
            kg = src.key_group
            g = src.group(rec.get(kg)) if kg is not None else src.groups[None]
            if g.time is not None:
                self._flush(src, g)

    def _flush_every(self) -> None:
        for src in self._sources:
            for g in src.groups.values():
                if g.time is not None:
                    self._flush(src, g)
