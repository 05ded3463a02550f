"""Configure a filter from ordered (key, value) settings (keys may repeat) and run batches."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
import pytest

from rillet.engine.chunk import Batch, body_dict
from rillet.engine.plugin import Plugin
from tests.plugin_kit import make_plugin

P = TypeVar("P", bound=Plugin)
T0 = 1_700_000_000_123_456_789


def configure(cls: type[P], *entries: tuple[str, str], **settings: str) -> P:
    """``cls`` built from ``entries`` (in order, repeatable) then ``settings``."""
    return make_plugin(cls, *entries, **settings)


def config_error(cls: type[Plugin], *entries: tuple[str, str], **settings: str) -> str:
    """The ValueError message ``cls`` raises for these settings."""
    with pytest.raises(ValueError) as info:
        configure(cls, *entries, **settings)
    return str(info.value)


def batch(records: list[Any], tag: str = "app.log", as_bytes: bool = False,
          ack: Any = None) -> Batch:
    bodies: list[Any] = [orjson.dumps(r) for r in records] if as_bytes else \
        [dict(r) for r in records]
    return Batch(tag, [T0 + i for i in range(len(records))], bodies, 100 * len(records), ack)


def run(plugin: Any, records: list[Any], tag: str = "app.log",
        as_bytes: bool = False) -> list[dict[str, Any]]:
    """The records that come out of ``plugin.filter``, as dicts."""
    out = plugin.filter(batch(records, tag, as_bytes))
    return [body_dict(b) for b in out.bodies]
