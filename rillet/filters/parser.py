"""``parser`` filter: parse one field of each record with named parsers (Fluent Bit's
filter_parser).

The first ``Parser`` that matches the ``Key_Name`` field's text wins. The new record is the
parsed fields, then (``Reserve_Data``) the record's other fields in their order, then
(``Preserve_Key``) the original field: Fluent Bit's four combinations. A key that is both
parsed and kept takes the later value at the earlier position (how Fluent Bit's duplicate
keys read as one map). When the parser yields a time, it replaces the record's time. A record
whose field is missing, is not a string, or matches no parser passes unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch, Body
from rillet.engine.plugin import Filter, register
from rillet.parsers.parser import Parser

_loads = orjson.loads


@register
class ParserFilter(Filter):
    name = "parser"
    description = "Parse events"
    options = (
        Option("key_name", T.STR, None, "field of the record to parse"),
        Option("parser", T.STR, None, "parser to try on the field (repeat: the first that "
               "matches wins)", multiple=True),
        Option("preserve_key", T.BOOL, "false", "keep the original Key_Name field"),
        Option("reserve_data", T.BOOL, "false", "keep the record's other fields"),
        Option("nest_under", T.STR, None, "put the parsed fields under this key"),
        Option("unescape_key", T.STR, None, "deprecated in Fluent Bit; accepted and ignored"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        if not o["key_name"]:
            raise ValueError("missing 'key_name'")
        if o["key_name"].startswith("$"):
            raise ValueError("key_name: record accessor patterns are not supported; name a "
                             "top-level key")
        if not o["parser"]:
            raise ValueError("Invalid 'parser': at least one Parser is needed")
        chosen: list[Parser] = []
        for name in o["parser"]:
            try:
                parser = self.parsers.get(name)
            except ValueError as exc:
                raise ValueError(f"parser '{name}': {exc}") from None
            if parser is None:
                raise ValueError(f"requested parser '{name}' not found")
            chosen.append(parser)
        self.chain = chosen
        if o["unescape_key"] is not None:
            self.log.warning("Unescape_Key is deprecated and has no effect")
        self.key: str = o["key_name"]
        # A serialized body without a backslash spells every key literally: when the quoted key
        # is absent the record cannot have the field and need not be decoded.
        self._needle = orjson.dumps(self.key)

    def filter(self, batch: Batch) -> Batch:
        key = self.key
        needle = self._needle
        chain = self.chain
        single = chain[0].parse if len(chain) == 1 else None
        reserve = self.opts["reserve_data"]
        preserve = self.opts["preserve_key"]
        nest = self.opts["nest_under"]
        times = batch.times
        bodies = batch.bodies
        out_times: list[int] = []
        out_bodies: list[Body] = []
        add_time = out_times.append
        add_body = out_bodies.append
        for t, body in zip(times, bodies, strict=True):
            if type(body) is bytes:
                if needle not in body and b"\\" not in body:
                    add_time(t)
                    add_body(body)
                    continue
                try:
                    record = _loads(body)
                except orjson.JSONDecodeError:
                    add_time(t)
                    add_body(body)
                    continue
            else:
                record = body
            value = record.get(key) if type(record) is dict else None
            if type(value) is not str:
                add_time(t)
                add_body(body)
                continue
            result = None
            if single is not None:
                result = single(value)
            else:
                for parser in chain:
                    result = parser.parse(value)
                    if result is not None:
                        break
            if result is None:
                add_time(t)
                add_body(body)
                continue
            parsed, ns = result
            if nest:
                parsed = {nest: parsed}
            if reserve:
                for k, v in record.items():
                    if k != key or preserve:
                        parsed[k] = v
            elif preserve:
                parsed[key] = value
            add_time(ns if ns else t)
            add_body(parsed)
        batch.times = out_times
        batch.bodies = out_bodies
        return batch
