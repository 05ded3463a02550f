"""Engine fix made for the tail input: a batch that both pauses its input (Mem_Buf_Limit) and
fills its chunk past the chunk size used to fail the input with a KeyError (the pause had
already dispatched the chunk)."""

from __future__ import annotations

import asyncio

from rillet.engine.chunk import Batch
from rillet.engine.engine import CHUNK_MAX
from tests.engine.harness import make_pipeline, running, wait_for
from tests.engine.plugins import STATE, Feed, Sink
from tests.inputs.tail.helpers import aio


@aio
async def test_batch_crossing_the_limit_and_the_chunk_size() -> None:
    STATE["pf"], STATE["ps"] = Feed(), Sink()
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "pf", "mem_buf_limit": "1MB"}],
                      outputs=[{"name": "test_sink", "id": "ps", "match": "*"}])
    async with running(p) as engine:
        feed: Feed = STATE["pf"]
        feed.put(Batch("t", [1, 2], [{"a": 1}, {"a": 2}], CHUNK_MAX + 10, ack="tok"))
        await wait_for(lambda: len(STATE["ps"].delivered) == 2, 5)
        await wait_for(lambda: feed.acks == [("tok", True)], 5)
        assert engine.pipeline.inputs[0].counters.get("errors", 0) == 0
        await asyncio.sleep(0)
