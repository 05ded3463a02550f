"""``multiline`` filter: join multi-line messages inside records (Fluent Bit's filter_multiline).

Two modes, as in Fluent Bit:

- ``parser`` (default): the records of each tag go through a :class:`MultilineGroup` made of the
  ``multiline.parser`` list (built-in or ``[MULTILINE_PARSER]``), reading the text from
  ``multiline.key_content`` (overriding each parser's own key_content). rillet keeps one group per
  tag and per ``stream`` value, so stdout and stderr records never mix.
- ``partial_message``: records split by Docker's logging drivers (``partial_message`` true,
  ``partial_id``, ``partial_last``) are concatenated on ``multiline.key_content``; the joined
  record has the first part's keys and time, without the ``partial_*`` keys, the content last.

With ``buffer on`` (the default) a message may wait for later batches: the filter keeps it and
releases it when it completes, when it has had no new line for ``flush_ms``, or at shutdown
(``tick``). Acknowledgements of the batches whose records are held are held with them, so an input
such as tail never commits an offset past a record that is still in the filter. With
``buffer off`` every batch is self-contained: whatever is pending at its end is flushed.

The ``emitter_*`` options are accepted for compatibility: rillet needs no emitter input, released
records continue through the filters after this one (see docs/multiline.md).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import AckList, AckRef, Batch, Body
from rillet.engine.plugin import Filter, register
from rillet.parsers.multiline import MultilineGroup, MultilineParser

IDLE_SECONDS = 300.0  # the state of a tag/stream with nothing pending is dropped after this
_PARTIAL_PREFIX = "partial_"
_loads = orjson.loads
_dumps = orjson.dumps
_monotonic = time.monotonic


def _is_true(value: Any) -> bool:
    """Fluent Bit compares the first four characters of the value with "true", ignoring case."""
    if value is True:
        return True
    if type(value) is bytes:
        value = value.decode("utf-8", "replace")
    return type(value) is str and value[:4].lower() == "true"


def _refs(ack: Any) -> list[AckRef]:
    """A batch's acknowledgement as a list of shareable refs."""
    if ack is None:
        return []
    if type(ack) is AckRef:
        return [ack]
    if type(ack) is AckList:
        return [a if type(a) is AckRef else AckRef(a) for a in ack]
    return [AckRef(ack)]


def _ack_of(refs: list[AckRef]) -> AckList | None:
    return AckList(refs) if refs else None


def _size(bodies: list[Body]) -> int:
    return sum(len(b) if type(b) is bytes else len(_dumps(b)) for b in bodies)


class _Packer:
    """A Docker partial message being assembled (Fluent Bit's split_message_packer)."""

    __slots__ = ("fields", "key", "last_write", "parts", "refs", "time")

    def __init__(self, record: dict[str, Any], key: str, time_ns: int) -> None:
        self.key = key
        self.time = time_ns
        self.fields = [(k, v) for k, v in record.items()
                       if k != key and not (type(k) is str and k.startswith(_PARTIAL_PREFIX))]
        self.parts: list[str] = []
        self.last_write = 0.0
        self.refs: list[Any] = []

    def record(self) -> dict[str, Any]:
        out = dict(self.fields)
        out.pop(self.key, None)
        out[self.key] = "".join(self.parts)
        return out


@register
class MultilineFilter(Filter):
    name = "multiline"
    description = "Concatenate multiline messages"
    holds_records = True
    options = (
        Option("multiline.parser", T.CLIST, None, "multiline parsers to try in order: docker, "
               "cri, go, python, java, ruby or a [MULTILINE_PARSER] name", multiple=True),
        Option("multiline.key_content", T.STR, None, "key holding the text to join"),
        Option("mode", T.STR, "parser", "parser (multiline parsers) or partial_message "
               "(Docker's split records)", choices=("parser", "partial_message")),
        Option("buffer", T.BOOL, "true", "keep pending messages across batches"),
        Option("flush_ms", T.INT, "2000", "milliseconds without a new line before a pending "
               "message is released"),
        Option("emitter_name", T.STR, None, "accepted for compatibility (no emitter input is "
               "needed)"),
        Option("emitter_storage.type", T.STR, "memory", "accepted for compatibility",
               choices=("memory", "filesystem")),
        Option("emitter_mem_buf_limit", T.SIZE, "10M", "accepted for compatibility"),
        Option("debug_flush", T.BOOL, "false", "log every joined record at info level"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        self.partial = o["mode"] == "partial_message"
        self.buffered: bool = o["buffer"]
        self.key_content: str | None = o["multiline.key_content"]
        self.flush_ms: int = o["flush_ms"]
        self.debug: bool = o["debug_flush"]
        names = [n for group in o["multiline.parser"] for n in group if n]
        if self.partial and not self.buffered:
            raise ValueError("'partial_message' 'Mode' requires 'Buffer' to be 'On'")
        if self.partial and not self.key_content:
            raise ValueError("'Mode' 'partial_message' requires 'multiline.key_content'")
        if not self.partial and not names:
            raise ValueError("The default 'Mode' 'parser' requires at least one "
                             "'multiline.parser'")
        if self.buffered and self.flush_ms < 500:
            raise ValueError(f"flush_ms: flush timeout '{self.flush_ms}' is too low "
                             "(at least 500)")
        self.ml_parsers: list[MultilineParser] = []
        for name in names:
            parser = self.parsers.multiline(name)
            if parser is None:
                raise ValueError(f"multiline.parser: parser '{name}' not registered")
            self.ml_parsers.append(parser)
        self.limit = self.parsers.multiline_buffer_limit
        # parser mode: (tag, stream) -> group; partial mode: tag -> partial_id -> packer
        self.groups: dict[tuple[str, str | None], MultilineGroup] = {}
        self.used: dict[int, float] = {}  # id(group) -> time.monotonic() of its last batch
        self.packers: dict[str, dict[str, _Packer]] = {}
        self._warned: set[str] = set()
        self.counters.setdefault("emit_records", 0)
        self.counters.setdefault("emit_truncated", 0)

    # -- engine interface -----------------------------------------------------------------------
    def filter(self, batch: Batch) -> Batch:
        if self.partial:
            return self._filter_partial(batch)
        return self._filter_parser(batch)

    def tick(self, final: bool = False) -> list[Batch]:
        now = _monotonic()
        by_tag: dict[str, tuple[list[int], list[Body], list[AckRef]]] = {}
        if self.partial:
            for tag, packers in self.packers.items():
                limit = now - self.flush_ms / 1000.0
                for pid in [p for p, pk in packers.items() if final or pk.last_write < limit]:
                    packer = packers.pop(pid)
                    times, bodies, refs = by_tag.setdefault(tag, ([], [], []))
                    times.append(packer.time)
                    bodies.append(packer.record())
                    refs.extend(packer.refs)
            for tag in [t for t, packers in self.packers.items() if not packers]:
                del self.packers[tag]
        else:
            idle = now - IDLE_SECONDS
            for key, group in list(self.groups.items()):
                if not group.pending:
                    # Forget the state of tags (pods) gone quiet; it holds nothing.
                    if final or self.used.get(id(group), 0.0) < idle:
                        del self.groups[key]
                        self.used.pop(id(group), None)
                    continue
                tag = key[0]
                out = group.flush_all() if final else group.flush_expired(now)
                if not out and not group.released:
                    continue
                times, bodies, refs = by_tag.setdefault(tag, ([], [], []))
                for t, record in out:
                    times.append(t)
                    bodies.append(record)
                refs.extend(self._take_released(group))
        batches = []
        for tag, (times, bodies, refs) in by_tag.items():
            self._emitted(bodies)
            batches.append(Batch(tag, times, bodies, _size(bodies), _ack_of(refs)))
        return batches

    # -- parser mode --------------------------------------------------------------------------
    def _group(self, tag: str, stream: str | None) -> MultilineGroup:
        key = (tag, stream)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = MultilineGroup(
                self.ml_parsers, self.limit, key_content=self.key_content,
                flush_ms=self.flush_ms if self.buffered else None)
        return group

    def _take_released(self, group: MultilineGroup) -> list[AckRef]:
        refs: list[AckRef] = []
        for item in group.released:
            refs.extend(item)
        group.released = []
        return refs

    def _filter_parser(self, batch: Batch) -> Batch:
        cur = _refs(batch.ack)
        tag = batch.tag
        out_t: list[int] = []
        out_b: list[Body] = []
        add_t, add_b = out_t.append, out_b.append
        touched: dict[int, tuple[MultilineGroup, int]] = {}
        last_key: Any = ()
        group: MultilineGroup | None = None
        for t, body in zip(batch.times, batch.bodies, strict=False):
            if type(body) is bytes:
                try:
                    record = _loads(body)
                except orjson.JSONDecodeError:
                    record = None
            else:
                record = body
            if type(record) is not dict:
                add_t(t)
                add_b(body)
                continue
            stream = record.get("stream")
            key = stream if type(stream) is str else None
            if group is None or key != last_key:
                group = self._group(tag, key)
                last_key = key
                if id(group) not in touched:
                    touched[id(group)] = (group, group.truncated)
                    group.ref = cur if cur else None
                    group.joins = 0
            for rt, rec in group.feed_record(t, record):
                add_t(rt)
                add_b(rec)
        released: list[AckRef] = []
        joins = 0
        now = _monotonic()
        for g, truncated_before in touched.values():
            if not self.buffered:
                for rt, rec in g.flush_all():
                    add_t(rt)
                    add_b(rec)
            joins += g.joins
            g.joins = 0
            g.ref = None
            released.extend(self._take_released(g))
            if g.truncated > truncated_before:
                self.counters.add("emit_truncated", g.truncated - truncated_before)
            self.used[id(g)] = now
        for ref in cur:
            ref.hold(joins)
        n_in = len(batch.bodies)
        if self.buffered and len(out_b) != n_in:
            self._emitted(out_b)
        size = batch.size if len(out_b) == n_in else batch.size * len(out_b) // max(1, n_in)
        return Batch(tag, out_t, out_b, size, _ack_of(released + cur))

    def _emitted(self, bodies: list[Body]) -> None:
        self.counters.add("emit_records", len(bodies))
        if self.debug:
            for body in bodies:
                self.log.info("multiline flush: %s", body)

    # -- partial_message mode -------------------------------------------------------------------
    def _warn_once(self, what: str, tag: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            self.log.warning("%s for a record with tag %s (passed on unchanged; warned once)",
                             what, tag)

    def _filter_partial(self, batch: Batch) -> Batch:
        cur = _refs(batch.ack)
        tag = batch.tag
        key: str = self.key_content  # type: ignore[assignment]
        packers = self.packers.setdefault(tag, {})
        out_t: list[int] = []
        out_b: list[Body] = []
        released: list[AckRef] = []
        joins = 0
        now = _monotonic()
        touched = False
        for t, body in zip(batch.times, batch.bodies, strict=False):
            if type(body) is bytes:
                if b"partial_message" not in body:
                    out_t.append(t)
                    out_b.append(body)
                    continue
                try:
                    record = _loads(body)
                except orjson.JSONDecodeError:
                    record = None
            else:
                record = body
            if type(record) is not dict or not _is_true(record.get("partial_message")):
                out_t.append(t)
                out_b.append(body)
                continue
            pid = record.get("partial_id")
            if type(pid) is bytes:
                pid = pid.decode("utf-8", "replace")
            if type(pid) is not str:
                self._warn_once("Could not find partial_id but partial_message key is true",
                                tag)
                out_t.append(t)
                out_b.append(body)
                continue
            text = record.get(key)
            if type(text) is bytes:
                text = text.decode("utf-8", "replace")
            if type(text) is not str:
                self._warn_once(f"Could not find key {key} (a string) in a partial record", tag)
                out_t.append(t)
                out_b.append(body)
                continue
            touched = True
            packer = packers.get(pid)
            if packer is None:
                packer = packers[pid] = _Packer(record, key, t)
            packer.parts.append(text)
            packer.last_write = now
            if cur and (not packer.refs or packer.refs[-1] is not cur[-1]):
                packer.refs.extend(cur)
                joins += 1
            if _is_true(record.get("partial_last")):
                del packers[pid]
                out_t.append(packer.time)
                out_b.append(packer.record())
                released.extend(packer.refs)
        for ref in cur:
            ref.hold(joins)
        if not touched:
            return Batch(tag, out_t, out_b, batch.size, _ack_of(cur))
        size = batch.size * len(out_b) // max(1, len(batch.bodies))
        return Batch(tag, out_t, out_b, size, _ack_of(released + cur))
