"""Test plugins for engine tests: an input fed by the test and an output scripted by it.

They are real plugins (registered, built from a config model, driven by the real engine); only
what they produce and answer is decided by the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch, Chunk
from rillet.engine.plugin import (
    Filter,
    FlushResult,
    Input,
    InputContext,
    Output,
    Status,
    register,
)

# Per-test state, keyed by the plugin's `id` option.
STATE: dict[str, Any] = {}


class Feed:
    """What a `test_feed` input emits, and the acks it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        self.acks: list[tuple[Any, bool]] = []
        self.acked = asyncio.Event()
        self.ctx: InputContext | None = None
        self.emitting = False

    def put(self, batch: Batch) -> None:
        self.queue.put_nowait(batch)


@register
class FeedInput(Input):
    name = "test_feed"
    description = "test input: emits the batches a test puts in its queue"
    options = (Option("id", T.STR, None, "state key"),)

    async def run(self, ctx: InputContext) -> None:
        feed: Feed = STATE[self.opts["id"]]
        feed.ctx = ctx
        while True:
            batch = await feed.queue.get()
            if batch is None:
                return
            feed.emitting = True
            await ctx.emit(batch)
            feed.emitting = False

    def on_ack(self, token: Any, complete: bool) -> None:
        feed: Feed = STATE[self.opts["id"]]
        feed.acks.append((token, complete))
        feed.acked.set()


Script = Callable[[Chunk, int], "FlushResult | asyncio.Future[FlushResult]"]


class Sink:
    """What a `test_sink` output received, and how it answers."""

    def __init__(self, script: Script | None = None) -> None:
        self.calls: list[tuple[float, list[Any]]] = []
        self.delivered: list[Any] = []
        self.script = script
        self.gate: asyncio.Event | None = None  # when set, flush waits for it
        self.stopped = False


@register
class SinkOutput(Output):
    name = "test_sink"
    description = "test output: records chunks, answers as the test scripts it"
    options = (Option("id", T.STR, None, "state key"),
               Option("fail_start", T.BOOL, "off", "raise in start()"))

    async def start(self) -> None:
        if self.opts["fail_start"]:
            raise ConnectionRefusedError("cannot reach the destination")

    async def stop(self) -> None:
        STATE[self.opts["id"]].stopped = True

    async def flush(self, chunk: Chunk) -> FlushResult:
        sink: Sink = STATE[self.opts["id"]]
        loop = asyncio.get_running_loop()
        sink.calls.append((loop.time(), list(chunk.bodies)))
        if sink.gate is not None:
            await sink.gate.wait()
        result: Any = Status.OK
        if sink.script is not None:
            result = sink.script(chunk, len(sink.calls))
            if asyncio.isfuture(result) or asyncio.iscoroutine(result):
                result = await result
        # Record what this answer says was delivered.
        if result == Status.OK:
            sink.delivered.extend(chunk.bodies)
        elif not isinstance(result, Status):
            failed = set()
            for start, stop, status, _ in result.segments:
                if status != Status.OK:
                    failed.update(range(start, stop))
            sink.delivered.extend(b for i, b in enumerate(chunk.bodies) if i not in failed)
        return result


@register
class MarkFilter(Filter):
    name = "test_mark"
    description = "test filter: appends its mark to each record's 'marks' list, drops 'drop' ones"
    options = (Option("mark", T.STR, "x", "the mark"),)

    def filter(self, batch: Batch) -> Batch:
        mark = self.opts["mark"]
        times: list[int] = []
        bodies: list[Any] = []
        for ts, body in zip(batch.times, batch.bodies, strict=True):
            if isinstance(body, dict) and body.get("drop"):
                continue
            if isinstance(body, dict):
                body = {**body, "marks": [*body.get("marks", []), mark]}
            times.append(ts)
            bodies.append(body)
        size = batch.size * len(bodies) // max(1, len(batch.bodies))
        return Batch(batch.tag, times, bodies, size, batch.ack)
