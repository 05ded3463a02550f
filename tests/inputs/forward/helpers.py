"""A recording InputContext and a running push input, for the forward/http/tcp input tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from rillet.engine.chunk import Batch
from rillet.engine.plugin import InputContext
from rillet.inputs.listen import PushInput


class Collect(InputContext):
    """Records every emitted batch; ``pause()``/``resume()`` drive backpressure."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.changed = asyncio.Event()
        self._resumed = asyncio.Event()
        self._resumed.set()

    async def emit(self, batch: Batch) -> None:
        await self._resumed.wait()
        self.batches.append(batch)
        self.changed.set()

    async def wait_resumed(self) -> None:
        await self._resumed.wait()

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def pause(self) -> None:
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    def request_exit(self) -> None:
        raise AssertionError("push inputs never ask to exit")

    def records(self) -> list[tuple[str, int, dict[str, Any]]]:
        return [(b.tag, t, orjson.loads(body) if isinstance(body, bytes) else body)
                for b in self.batches for t, body in zip(b.times, b.bodies, strict=True)]

    async def wait_records(self, n: int, timeout: float = 5.0) -> list[tuple[str, int,
                                                                            dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.records()) < n:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"expected {n} records, got {self.records()}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return self.records()


@contextlib.asynccontextmanager
async def serving(plugin: PushInput) -> AsyncIterator[Collect]:
    """Run ``plugin`` until the block ends; yields its context once it listens."""
    ctx = Collect()
    task = asyncio.create_task(plugin.run(ctx))
    ready = asyncio.create_task(plugin.ready.wait())
    await asyncio.wait([task, ready], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # the input failed to start: raise its error
    assert ready.done(), "the input did not start listening"
    try:
        yield ctx
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await plugin.stop()


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)
