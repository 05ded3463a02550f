"""Bulk API request bodies (NDJSON) built from record bytes, and bulk answers read per item.

:class:`BulkEncoder` turns a chunk into one ``_bulk`` body in one loop: an action line and a
document line per record. A document is the record's JSON text with the time key (and the tag
key) spliced in front of its first key; the record is decoded only when something must look
inside it (``Logstash_Prefix_Key``, a record-accessor index, ``Id_Key``, ``Replace_Dots`` on a
record with a dot, a record that already has the time or tag key). Per-second values (the time
key's text, the Logstash index) are computed once per distinct second.

:func:`read_answer` reads a bulk answer: ``{"errors":false,...}`` is accepted from its first bytes
without decoding the items; otherwise every item's status and error are returned in request
order, so the output can map them back to record indexes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from rillet.engine.chunk import Body
from rillet.engine.record_accessor import Template

_NS = 1_000_000_000
_dumps = orjson.dumps
_loads = orjson.loads

# Fluent Bit truncates a Logstash_Prefix_Key value to this many bytes.
PREFIX_KEY_MAX = 128


@dataclass(frozen=True)
class BulkSettings:
    index: str = "fluent-bit"
    type: str = "_doc"
    suppress_type_name: bool = False
    write_operation: str = "create"  # create | index | update | upsert
    logstash_format: bool = False
    logstash_prefix: str = "logstash"
    logstash_prefix_separator: str = "-"
    logstash_dateformat: str = "%Y.%m.%d"
    prefix_key: Template | None = None
    index_template: Template | None = None  # es Target_Index / opensearch Index with '$'
    time_key: str = "@timestamp"
    time_key_format: str = "%Y-%m-%dT%H:%M:%S"
    time_key_nanos: bool = False
    include_tag_key: bool = False
    tag_key: str = "flb-key"
    replace_dots: bool = False
    generate_id: bool = False
    id_key: Template | None = None
    current_time_index: bool = False
    upper_case_ids: bool = False  # opensearch prints generated ids in upper case

    @property
    def action(self) -> str:
        """The bulk action: ``upsert`` is an ``update`` with ``doc_as_upsert``."""
        return "update" if self.write_operation in ("update", "upsert") else self.write_operation


@dataclass(slots=True)
class Encoded:
    body: bytes
    sent: list[int]  # record index of every bulk item, in request order
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (record index, reason)
    missing_ids: int = 0  # records whose Id_Key had no string value


def replace_dots(value: Any) -> Any:
    """Keys with '.' -> '_' in every map, also inside lists (out_es ``es_pack_map_content``)."""
    if type(value) is dict:
        return {k.replace(".", "_") if type(k) is str else k: replace_dots(v)
                for k, v in value.items()}
    if type(value) is list:
        return [replace_dots(v) for v in value]
    return value


def format_id(digest: bytes, upper: bool) -> str:
    """16 bytes as ``8-4-4-4-12`` hex digits."""
    h = digest.hex().upper() if upper else digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class BulkEncoder:
    """Builds ``_bulk`` bodies for one output instance."""

    def __init__(self, s: BulkSettings) -> None:
        self.s = s
        self._time_key = s.time_key
        self._time_key_json = _dumps(s.time_key)
        self._tag_key_json = _dumps(s.tag_key)
        type_part = b"" if s.suppress_type_name else b',"_type":' + _dumps(s.type)
        self._action_head = b'{"' + s.action.encode() + b'":{"_index":'
        self._type_part = type_part
        self._doc_open = {"update": b'{"doc":',
                          "upsert": b'{"doc_as_upsert":true,"doc":'}.get(s.write_operation, b"")
        self._doc_close = b"}" if self._doc_open else b""
        self._needs_record = bool(s.prefix_key is not None or s.id_key is not None
                                  or (s.index_template is not None
                                      and s.index_template.uses_record))
        self._seconds: dict[int, tuple[bytes, str]] = {}

    # -- per-second values ----------------------------------------------------------------
    def _second(self, sec: int) -> tuple[bytes, str]:
        """The time key's text up to the fraction, and the Logstash date part, of ``sec``."""
        got = self._seconds.get(sec)
        if got is None:
            tm = time.gmtime(sec)
            s = self.s
            stamp = b'"' + time.strftime(s.time_key_format, tm).encode()
            date = time.strftime(s.logstash_dateformat, tm) if s.logstash_format else ""
            if len(self._seconds) > 4096:
                self._seconds.clear()
            got = self._seconds[sec] = (stamp, date)
        return got

    def static_index(self, now_ns: int) -> str:
        """``Index`` with its strftime conversions applied to the flush time."""
        index = self.s.index
        if "%" in index:
            return time.strftime(index, time.gmtime(now_ns // _NS))
        return index

    # -- encoding -------------------------------------------------------------------------
    def encode(self, tag: str, times: Sequence[int], bodies: Sequence[Body],
               now_ns: int | None = None) -> Encoded:
        s = self.s
        now = time.time_ns() if now_ns is None else now_ns
        static_index = self.static_index(now)
        actions: dict[str, bytes] = {}
        action_head = self._action_head
        type_part = self._type_part
        doc_open, doc_close = self._doc_open, self._doc_close
        nanos = s.time_key_nanos
        tag_part = (b"," + self._tag_key_json + b":" + _dumps(tag)) if s.include_tag_key else b""
        needs_record = self._needs_record
        check_dots = s.replace_dots
        second = self._second
        logstash = s.logstash_format
        prefix = s.logstash_prefix
        sep = s.logstash_prefix_separator
        index_tpl = s.index_template
        prefix_key = s.prefix_key
        id_key = s.id_key
        gen_id = s.generate_id
        blake = hashlib.blake2b
        upper = s.upper_case_ids
        fixed_time = now if s.current_time_index else None
        out: list[bytes] = []
        append = out.append
        sent: list[int] = []
        skipped: list[tuple[int, str]] = []
        missing_ids = 0

        for i, body in enumerate(bodies):
            t = times[i] if fixed_time is None else fixed_time
            sec, nsec = divmod(t, _NS)
            stamp, date = second(sec)
            frac = b".%09dZ\"" % nsec if nanos else b".%03dZ\"" % (nsec // 1_000_000)
            record: dict[str, Any] | None = None
            try:
                text = body if type(body) is bytes else _dumps(body)
                if needs_record or (check_dots and b"." in text):
                    record = body if type(body) is dict else _loads(text)
                    if check_dots:
                        record = replace_dots(record)
                        text = _dumps(record)
                doc = self._document(text, record, stamp + frac, tag_part)
            except (TypeError, ValueError) as exc:  # orjson's errors are ValueError/TypeError
                skipped.append((i, f"record cannot be serialized as JSON: {exc}"))
                continue

            # destination index
            index = static_index
            if logstash:
                head = prefix
                if prefix_key is not None:
                    value = prefix_key.render(tag, record)
                    if value:
                        head = value[:PREFIX_KEY_MAX]
                index = head + sep + date
            elif index_tpl is not None:
                index = index_tpl.render(tag, record) or static_index

            doc_id: str | None = None
            if id_key is not None:
                doc_id = _id_value(id_key, record)
                if doc_id is None:
                    missing_ids += 1
            elif gen_id:
                doc_id = format_id(blake(doc, digest_size=16).digest(), upper)

            if doc_id is None:
                action = actions.get(index)
                if action is None:
                    action = actions[index] = (action_head + _dumps(index) + type_part
                                               + b"}}\n")
            else:
                action = (action_head + _dumps(index) + type_part + b',"_id":'
                          + _dumps(doc_id) + b"}}\n")
            append(action)
            append(doc_open + doc + doc_close + b"\n")
            sent.append(i)
        return Encoded(b"".join(out), sent, skipped, missing_ids)

    def _document(self, text: bytes, record: dict[str, Any] | None, stamp: bytes,
                  tag_part: bytes) -> bytes:
        """The record's text with the time key (and tag key) first. A record that already
        has one of those keys keeps its own value (Fluent Bit writes the key twice, which
        Elasticsearch rejects as a duplicate field)."""
        head = b"{" + self._time_key_json + b":" + stamp + tag_part
        if len(text) <= 2:  # "{}"
            return head + b"}"
        if self._time_key_json in text or (tag_part and self._tag_key_json in text):
            rec = record if record is not None else _loads(text)
            if type(rec) is not dict:
                raise ValueError("record is not a JSON object")
            has_time = self._time_key in rec
            has_tag = bool(tag_part) and self.s.tag_key in rec
            if has_time or has_tag:
                parts = [] if has_time else [self._time_key_json + b":" + stamp]
                if tag_part and not has_tag:
                    parts.append(tag_part[1:])
                if not parts:
                    return text
                return b"{" + b",".join(parts) + b"," + text[1:]
        return head + b"," + text[1:]


def _id_value(id_key: Template, record: dict[str, Any] | None) -> str | None:
    """Id_Key's value: only a string is used (Fluent Bit warns and sends no ``_id`` else)."""
    if record is None or len(id_key.keys) != 1:
        return None
    value = id_key.keys[0].get(record)
    return value if type(value) is str else None


# --- answers ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    status: int
    reason: str = ""


@dataclass(slots=True)
class Answer:
    all_ok: bool = False
    items: list[Item] = field(default_factory=list)
    problem: str = ""  # the answer could not be read


def read_answer(payload: bytes) -> Answer:
    """A bulk answer: every item's status and error text, or ``all_ok`` when the answer says
    ``"errors":false``."""
    head = payload[:256]
    if b'"errors":false' in head or b'"errors": false' in head:
        return Answer(all_ok=True)
    try:
        doc = _loads(payload)
    except orjson.JSONDecodeError as exc:
        return Answer(problem=f"could not read the bulk answer ({exc}): "
                      + payload[:200].decode("utf-8", "replace"))
    if type(doc) is not dict:
        return Answer(problem="unexpected bulk answer: not a JSON object")
    if doc.get("errors") is False:
        return Answer(all_ok=True)
    raw = doc.get("items")
    if type(raw) is not list:
        return Answer(problem="unexpected bulk answer: no 'items' array")
    items: list[Item] = []
    for entry in raw:
        inner = next(iter(entry.values()), None) if type(entry) is dict and entry else None
        if type(inner) is not dict or type(inner.get("status")) is not int:
            return Answer(problem="unexpected bulk answer: an item without a status")
        status = inner["status"]
        items.append(Item(status, "" if status < 300 else error_text(inner.get("error"))))
    return Answer(items=items)


def error_text(error: Any) -> str:
    """``type: reason (caused by type: reason)`` of an item's error object."""
    if type(error) is not dict:
        return str(error) if error else "unknown error"
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}".rstrip(": ")
    cause = error.get("caused_by")
    if type(cause) is dict:
        text += f" (caused by {cause.get('type', 'error')}: {cause.get('reason', '')})"
    return text
