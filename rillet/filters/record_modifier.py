"""``record_modifier`` filter: append fixed fields, drop or keep keys, add a UUID (Fluent Bit's
filter_record_modifier).

``Remove_key`` and ``Allowlist_key`` (old name ``Whitelist_key``) compare top-level keys ignoring
case, and a name ending in ``*`` is a prefix, as in Fluent Bit; they cannot be used together.
``Record KEY VALUE`` fields are appended after the record's own keys (a string value: the rest
of the line after the key); an existing key of that name is replaced by the appended one (Fluent
Bit writes both; every JSON reader keeps the last). ``Uuid_key`` appends a random UUID (v4).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch
from rillet.engine.plugin import Filter, register
from rillet.filters.records import map_records


def key_matcher(names: list[str]) -> Callable[[str], bool]:
    """Fluent Bit's key list test: case-insensitive names, ``prefix*`` for a prefix."""
    exact = {n.lower() for n in names if not n.endswith("*")}
    prefixes = tuple(n[:-1].lower() for n in names if n.endswith("*"))

    def matches(key: str) -> bool:
        low = key.lower()
        return low in exact or (bool(prefixes) and low.startswith(prefixes))
    return matches


@register
class RecordModifierFilter(Filter):
    name = "record_modifier"
    description = "modify record"
    options = (
        Option("record", T.STR, None, "KEY VALUE: append this field (repeatable)",
               multiple=True),
        Option("remove_key", T.STR, None, "remove this key; 'prefix*' for a prefix "
               "(repeatable)", multiple=True),
        Option("allowlist_key", T.STR, None, "keep only these keys; 'prefix*' for a prefix "
               "(repeatable)", multiple=True, aliases=("whitelist_key",)),
        Option("uuid_key", T.STR, None, "append a random UUID under this key"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        fields: list[tuple[str, str]] = []
        for text in o["record"]:
            parts = text.strip().split(None, 1)
            if len(parts) != 2:
                raise ValueError(f"Record '{text}': invalid record parameters, expects "
                                 "'KEY VALUE'")
            fields.append((parts[0], parts[1]))
        if o["remove_key"] and o["allowlist_key"]:
            raise ValueError("remove_key and allowlist_key are exclusive with each other")
        self.fields = fields
        self.uuid_key: str | None = o["uuid_key"]
        self.remove = key_matcher(o["remove_key"]) if o["remove_key"] else None
        self.allow = key_matcher(o["allowlist_key"]) if o["allowlist_key"] else None
        if not (fields or self.remove or self.allow or self.uuid_key):
            self.log.warning("no Record, Remove_key, Allowlist_key or Uuid_key: records pass "
                             "unchanged")

    def change(self, record: dict[str, Any]) -> dict[str, Any] | None:
        if self.remove is not None:
            record = {k: v for k, v in record.items() if not self.remove(k)}
        elif self.allow is not None:
            record = {k: v for k, v in record.items() if self.allow(k)}
        for key, value in self.fields:
            record.pop(key, None)
            record[key] = value
        if self.uuid_key:
            record.pop(self.uuid_key, None)
            record[self.uuid_key] = str(uuid.uuid4())
        return record

    def filter(self, batch: Batch) -> Batch:
        if not (self.fields or self.remove or self.allow or self.uuid_key):
            return batch
        out = map_records(batch.bodies, self.change)
        if out is not None:
            batch.bodies = out
        return batch
