"""Shared by the es/opensearch and http output tests: run an output's start, flushes and stop
in one event loop (its connection pool belongs to that loop)."""

from __future__ import annotations

import asyncio

from rillet.engine.chunk import Chunk
from rillet.engine.plugin import FlushResult, Output, Partial, Status


def deliver(plugin: Output, *chunks: Chunk) -> list[FlushResult]:
    async def run() -> list[FlushResult]:
        await plugin.start()
        try:
            return [await plugin.flush(chunk) for chunk in chunks]
        finally:
            await plugin.stop()
    return asyncio.run(run())


def segments(result: FlushResult) -> list[tuple[int, int, Status]]:
    """A flush result as (start, stop, status) segments ([] for OK)."""
    if isinstance(result, Partial):
        return [(a, b, s) for a, b, s, _ in result.segments]
    return [] if result is Status.OK else [(-1, -1, result)]


def reasons(result: FlushResult) -> list[str]:
    return [r for _, _, _, r in result.segments] if isinstance(result, Partial) else []
