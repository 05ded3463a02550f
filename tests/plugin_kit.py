"""Build one plugin instance from settings, as the engine would, for tests that call it directly."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

from rillet.config.model import Section
from rillet.config.options import resolve
from rillet.engine.chunk import Chunk
from rillet.engine.metrics import BY_KIND, Counters
from rillet.engine.plugin import FlushResult, Output, Plugin, full_table

P = TypeVar("P", bound=Plugin)

T0 = 1_700_000_000_123_456_789
T1 = 1_700_000_001_000_000_000


def make_plugin(cls: type[P], *entries: tuple[str, str], **settings: str) -> P:
    """``cls`` configured with ``entries`` (ordered (key, value) pairs; keys may repeat) then
    ``settings`` through its option table (errors fail the test)."""
    section = Section(cls.kind, "test.conf", 1)
    section.set("name", cls.name)
    for key, value in [*entries, *settings.items()]:
        section.set(key, value)
    errors: list[str] = []
    opts = resolve(section, full_table(cls), errors)
    assert errors == []
    instance = f"{cls.name}.0"
    log = logging.getLogger(f"rillet.{cls.kind}:{cls.name}:{instance}")
    return cls(instance, opts, log, Counters(BY_KIND[cls.kind]))


def make_chunk(bodies: list[Any], times: list[int] | None = None,
               tag: str = "dummy.0") -> Chunk:
    times = times if times is not None else [T0] * len(bodies)
    return Chunk(tag, "dummy.0", times, bodies)


def flush(plugin: Output, chunk: Chunk) -> FlushResult:
    return asyncio.run(plugin.flush(chunk))


def flush_all(plugin: Output, *chunks: Chunk) -> list[FlushResult]:
    """Start ``plugin``, flush ``chunks`` one after the other, stop it."""
    async def go() -> list[FlushResult]:
        await plugin.start()
        try:
            return [await plugin.flush(c) for c in chunks]
        finally:
            await plugin.stop()
    return asyncio.run(go())


def config_error(cls: type[Plugin], **settings: str) -> str:
    """The configuration error ``cls`` reports for ``settings`` (option table errors, or the
    ValueError of its ``__init__``); fails the test when there is none."""
    section = Section(cls.kind, "test.conf", 1)
    section.set("name", cls.name)
    for key, value in settings.items():
        section.set(key, value)
    errors: list[str] = []
    opts = resolve(section, full_table(cls), errors)
    if errors:
        return "; ".join(errors)
    try:
        cls(f"{cls.name}.0", opts, logging.getLogger("t"), Counters(BY_KIND[cls.kind]))
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"{cls.name}: no configuration error for {settings}")
