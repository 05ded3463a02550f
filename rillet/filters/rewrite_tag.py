"""``rewrite_tag`` filter: re-emit records under a new tag (Fluent Bit's filter_rewrite_tag).

``Rule $KEY REGEX NEW_TAG KEEP`` (repeatable; the first rule whose REGEX is found in the KEY's
string value wins). KEY is a record accessor (``$log``, ``$kubernetes['labels']['app']``);
NEW_TAG is a template with ``$TAG``, ``$TAG[n]``, record accessor keys and ``$0``..``$n``, the
regex's groups (a variable without a value prints as nothing, as in Fluent Bit). A REGEX with
spaces is written in double quotes. The matching record is re-emitted through this filter's
``emitter`` input (named ``Emitter_Name``, default ``emitter_for_<instance>``), so it goes
through the pipeline again from the start, routed by its new tag; the original goes on only when
KEEP is true.

Loops: when a new tag matches this filter's own Match / Match_Regex, the copy would come back
and match again forever. ``Recursion_Action`` decides, as in Fluent Bit: ``exit`` (the default:
log, stop the agent; the record stays where it is), ``drop`` / ``drop_and_log`` (the copy is not
emitted), ``none`` (emit anyway).

Acknowledgements: the engine gives this filter shareable ack refs (``holds_records``); each
re-emitted batch holds its source batch's refs until its records are final, so the source input
does not advance past them before they are delivered (see ``rillet.inputs.emitter``).
``Emitter_Mem_Buf_Limit`` bounds the records waiting in the emitter: past it, matching records
are not re-emitted and go on under their original tag (counted as ``emit_refused``, logged).
"""

from __future__ import annotations

from typing import Any

import orjson

from rillet.config import values
from rillet.config.options import Option, T
from rillet.engine.chunk import Batch, Body
from rillet.engine.plugin import Filter, register
from rillet.engine.record_accessor import KeyPath, Template, TemplateError, key_path
from rillet.engine.router import Matcher
from rillet.filters.modify import split_tokens
from rillet.filters.records import escape_finder, key_needle
from rillet.inputs.emitter import Emitter, Upstream, shared_refs
from rillet.parsers.regex import RegexError, compile_ruby

_loads = orjson.loads
_dumps = orjson.dumps

DEFAULT_MEM_BUF_LIMIT = "10M"
_ACTIONS = ("none", "drop", "drop_and_log", "exit")


class Rule:
    __slots__ = ("keep", "path", "search", "tag", "top")

    def __init__(self, text: str) -> None:
        try:
            parts = split_tokens(text, 4)
        except ValueError as exc:
            raise ValueError(f"rule '{text}': {exc}") from None
        if len(parts) != 4:
            raise ValueError(f"rule '{text}': expected '$KEY REGEX NEW_TAG KEEP'")
        key, pattern, tag, keep = parts
        try:
            self.path: KeyPath = key_path(key)
            self.search = compile_ruby(pattern).search
            self.tag = Template.compile(tag)
            self.keep: bool = values.parse_bool(keep)
        except (TemplateError, RegexError, ValueError) as exc:
            raise ValueError(f"rule '{text}': {exc}") from None
        self.top = self.path.top


@register
class RewriteTagFilter(Filter):
    name = "rewrite_tag"
    description = "Rewrite records tags"
    holds_records = True  # ask the engine for shareable ack refs (nothing is held by time)
    options = (
        Option("rule", T.STR, None, "$KEY REGEX NEW_TAG KEEP (repeatable; the first match "
               "wins)", multiple=True),
        Option("emitter_name", T.STR, None, "name of the emitter input (default "
               "emitter_for_<instance>)"),
        Option("emitter_storage.type", T.STR, "memory", "buffering of the emitter input",
               choices=("memory", "filesystem")),
        Option("emitter_mem_buf_limit", T.SIZE, DEFAULT_MEM_BUF_LIMIT, "most bytes of records "
               "waiting in the emitter"),
        Option("recursion_action", T.STR, "exit", "when a new tag matches this filter's "
               "Match: none, drop, drop_and_log or exit", choices=_ACTIONS),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        if not o["rule"]:
            raise ValueError("missing 'rule': at least one Rule is needed")
        self.rules = [Rule(text) for text in o["rule"]]
        self.emitter_name: str = o["emitter_name"] or f"emitter_for_{self.instance}"
        self.emitter_storage: str = o["emitter_storage.type"]
        self.mem_buf_limit: int = o["emitter_mem_buf_limit"]
        self.action: str = o["recursion_action"]
        self.matcher = Matcher(o["match"], o["match_regex"])
        if o["match"] is not None and set(o["match"]) == {"*"}:
            self.log.warning("'Match' may cause infinite loop.")
        needles = [key_needle(r.top) for r in self.rules if r.top is not None]
        self._needles = [n for n in needles if n is not None] \
            if len(needles) == len(self.rules) and None not in needles else None
        self._hidden = escape_finder(self._needles or ())
        self.emitter: Emitter | None = None
        self.emitted = 0

    # The pipeline creates the emitter input this filter asks for (rillet.engine.pipeline).
    def emitter_request(self) -> tuple[str, int, str]:
        """Name, Mem_Buf_Limit and storage.type of the emitter input to create."""
        return self.emitter_name, self.mem_buf_limit, self.emitter_storage

    def attach_emitter(self, emitter: Emitter) -> None:
        emitter.limit = self.mem_buf_limit
        self.emitter = emitter

    def _new_tag(self, tag: str, record: dict[str, Any]) -> tuple[Rule, str] | None:
        for rule in self.rules:
            value = record.get(rule.top) if rule.top is not None else rule.path.get(record)
            if type(value) is not str:
                continue
            m = rule.search(value)
            if m is not None:
                return rule, rule.tag.render(tag, record, m, default="") or ""
        return None

    def _recursion(self, new_tag: str) -> bool:
        """True when the copy must not be emitted (a loop, handled per Recursion_Action)."""
        return self.action != "none" and self.matcher(new_tag)

    def _report_recursion(self, new_tag: str, count: int) -> None:
        self.counters.add("recursions", count)
        if self.action == "drop":
            return
        self.log.warning("recursion occurred. tag=%s (%d records in this batch)", new_tag,
                         count)
        if self.action == "exit":
            self.log.error("abort (Recursion_Action exit)")
            if self.emitter is not None:
                self.emitter.request_exit()

    def filter(self, batch: Batch) -> Batch:
        emitter = self.emitter
        if emitter is None:
            self.log.error("no emitter input attached: records pass unchanged")
            return batch
        tag = batch.tag
        new_tag_of = self._new_tag
        needles = self._needles
        hidden = self._hidden
        loads = _loads
        out_times: list[int] = []
        out_bodies: list[Body] = []
        groups: dict[str, tuple[list[int], list[bytes]]] = {}
        waiting = 0
        refused = 0
        loops = 0
        loop_tag = ""
        for t, body in zip(batch.times, batch.bodies, strict=True):
            if type(body) is bytes:
                if needles is not None and hidden(body) is None and \
                        not any(n in body for n in needles):
                    out_times.append(t)
                    out_bodies.append(body)
                    continue
                try:
                    record = loads(body)
                except orjson.JSONDecodeError:
                    record = None
                if type(record) is not dict:
                    out_times.append(t)
                    out_bodies.append(body)
                    continue
            else:
                record = body
            found = new_tag_of(tag, record)
            if found is None:
                out_times.append(t)
                out_bodies.append(body)
                continue
            rule, new_tag = found
            if self._recursion(new_tag):
                loops += 1
                loop_tag = new_tag
                if rule.keep or self.action == "exit":
                    out_times.append(t)
                    out_bodies.append(body)
                continue
            data = body if type(body) is bytes else _dumps(body)
            if not emitter.room(waiting + len(data)):
                refused += 1
                out_times.append(t)
                out_bodies.append(body)
                continue
            waiting += len(data)
            group = groups.get(new_tag)
            if group is None:
                group = groups[new_tag] = ([], [])
            group[0].append(t)
            group[1].append(data)
            if rule.keep:
                out_times.append(t)
                out_bodies.append(body)
        if loops:
            self._report_recursion(loop_tag, loops)
        if refused:
            self.counters.add("emit_refused", refused)
            self.log.warning("emitter %s over its limit (%d bytes): %d records not re-emitted",
                             self.emitter_name, self.mem_buf_limit, refused)
        if len(out_bodies) != len(batch.bodies):
            batch.size = batch.size * len(out_bodies) // max(1, len(batch.bodies))
        batch.times, batch.bodies = out_times, out_bodies
        if not groups:
            return batch
        refs = shared_refs(batch.ack)
        if refs is None:
            self.log.debug("source acknowledgement not shareable: re-emitted records do not "
                           "hold it back")
        for new_tag, (times, bodies) in groups.items():
            ack = None
            if refs:
                for ref in refs:
                    ref.hold()
                ack = Upstream(refs)
            emitter.add(Batch(new_tag, times, list(bodies), sum(map(len, bodies)), ack))
            self.emitted += len(bodies)
        self.counters.add("emit_records", sum(len(g[1]) for g in groups.values()))
        return batch

