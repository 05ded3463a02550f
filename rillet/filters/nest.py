"""``nest`` filter: move top-level keys into a map, or lift a map's keys to the top level
(Fluent Bit's filter_nest).

- ``Operation nest``: the keys matching a ``Wildcard`` (repeatable; ``prefix*`` is a prefix,
  anything else an exact name) move into a new map under ``Nest_under``, appended after the keys
  that stay. A record with no matching key passes unchanged.
- ``Operation lift``: the map under ``Nested_under`` is replaced by its keys, appended after the
  record's other keys. A record whose key is missing or is not a map passes unchanged.

The moved keys gain ``Add_prefix`` (old name ``Prefix_with``) or lose ``Remove_prefix`` when
they start with it (the two are exclusive). ``Wildcard_exclude`` keeps keys out of a nest. A
moved key that collides with a key already at its destination replaces it (Fluent Bit writes
both; JSON readers keep the last).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch
from rillet.engine.plugin import Filter, register
from rillet.filters.records import key_needle, map_records


def wildcard_matcher(patterns: list[str]) -> Callable[[str], bool]:
    """Fluent Bit's nest wildcards: ``prefix*`` matches by prefix, other names exactly."""
    exact = frozenset(p for p in patterns if not p.endswith("*"))
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
    if not prefixes:
        return exact.__contains__
    return lambda key: key in exact or key.startswith(prefixes)


@register
class NestFilter(Filter):
    name = "nest"
    description = "nest records under a key, or lift a nested map"
    options = (
        Option("operation", T.STR, None, "nest or lift", choices=("nest", "lift")),
        Option("wildcard", T.STR, None, "nest: keys to move ('prefix*' for a prefix; "
               "repeatable)", multiple=True),
        Option("nest_under", T.STR, None, "nest: the key of the new map"),
        Option("nested_under", T.STR, None, "lift: the key of the map to lift"),
        Option("wildcard_exclude", T.STR, None, "nest: keys never to move, even when a "
               "Wildcard matches ('prefix*' for a prefix; repeatable)", multiple=True),
        Option("add_prefix", T.STR, None, "prefix added to the moved keys",
               aliases=("prefix_with",)),
        Option("remove_prefix", T.STR, None, "prefix removed from the moved keys"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        op = o["operation"]
        if op is None:
            raise ValueError("missing 'operation' (nest or lift)")
        if op == "nest":
            if not o["wildcard"]:
                raise ValueError("operation nest: missing 'wildcard'")
            if not o["nest_under"]:
                raise ValueError("operation nest: missing 'nest_under'")
        elif not o["nested_under"]:
            raise ValueError("operation lift: missing 'nested_under'")
        self.lift = op == "lift"
        self.match = wildcard_matcher(o["wildcard"])
        self.exact: frozenset[str] | None = None
        if o["wildcard_exclude"]:
            include, exclude = self.match, wildcard_matcher(o["wildcard_exclude"])
            self.match = lambda k: include(k) and not exclude(k)
        elif not any(w.endswith("*") for w in o["wildcard"]):
            self.exact = frozenset(o["wildcard"])
        self.key: str = o["nested_under"] if self.lift else o["nest_under"]
        add: str | None = o["add_prefix"]
        remove: str | None = o["remove_prefix"]
        if add and remove:
            raise ValueError("Add_prefix and Remove_prefix are exclusive")
        self.rename: Callable[[str], str] | None = None
        if add:
            self.rename = lambda k: add + k
        elif remove:
            cut = len(remove)
            self.rename = lambda k: k[cut:] if k.startswith(remove) else k
        # A serialized body that does not spell the lifted key cannot be changed by a lift.
        self._needle = key_needle(self.key) if self.lift else None

    def nest(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Nest in place (the filter owns the record it is handed); None when nothing moves."""
        exact = self.exact
        if exact is not None:  # names only: membership tests in C
            if exact.isdisjoint(record):
                return None
            keys = [k for k in record if k in exact]
        else:
            match = self.match
            keys = [k for k in record if match(k)]
            if not keys:
                return None
        pop = record.pop
        rename = self.rename
        moved = {k: pop(k) for k in keys} if rename is None else \
            {rename(k): pop(k) for k in keys}
        pop(self.key, None)
        record[self.key] = moved
        return record

    def lift_up(self, record: dict[str, Any]) -> dict[str, Any] | None:
        key = self.key
        inner = record.get(key)
        if type(inner) is not dict:
            return None
        out = {k: v for k, v in record.items() if k != key}
        rename = self.rename
        for k, v in inner.items():
            if rename is not None:
                k = rename(k)
            out.pop(k, None)
            out[k] = v
        return out

    def filter(self, batch: Batch) -> Batch:
        out = map_records(batch.bodies, self.lift_up if self.lift else self.nest, self._needle)
        if out is not None:
            batch.bodies = out
        return batch
