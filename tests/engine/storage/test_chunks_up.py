"""storage.max_chunks_up: chunks beyond it wait on disk (down) or pause the input; what
/api/v1/storage reports meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rillet.engine.storage.report import storage_v1
from tests.engine.harness import running, wait_for
from tests.engine.storage.helpers import async_test, batch, feed, numbers, pipeline, sink


@async_test
async def test_chunks_beyond_max_chunks_up_wait_on_disk_in_order(tmp_path: Path) -> None:
    f = feed("in")
    s = sink("o0")
    s.gate = asyncio.Event()
    p = pipeline(tmp_path, service={"storage.max_chunks_up": 2})
    async with running(p) as engine:
        for i in range(6):
            f.put(batch("t", i * 10, 10, ack=i))
            await asyncio.sleep(0.06)
        await wait_for(lambda: len(f.acks) == 6)  # all on disk: all final, never paused
        report = storage_v1(engine)
        layer = report["storage_layer"]["chunks"]
        assert layer["fs_chunks_up"] == 2 and layer["fs_chunks_down"] == 4
        assert layer["fs_chunks"] == 6 and layer["mem_chunks"] == 0
        assert report["input_chunks"]["test_feed.0"]["chunks"]["down"] == 4
        assert report["rillet"]["chunks_written"] == 6
        s.gate.set()
        await wait_for(lambda: len(s.delivered) == 60)
        assert numbers(s.delivered) == list(range(60))
        assert storage_v1(engine)["storage_layer"]["chunks"]["fs_chunks"] == 0


@async_test
async def test_pause_on_chunks_overlimit_pauses_instead(tmp_path: Path) -> None:
    f = feed("in")
    s = sink("o0")
    s.gate = asyncio.Event()
    p = pipeline(tmp_path, service={"storage.max_chunks_up": 2},
                 input_opts={"storage.pause_on_chunks_overlimit": "on"})
    async with running(p) as engine:
        for i in range(2):
            f.put(batch("t", i * 10, 10, ack=i))
            await asyncio.sleep(0.06)
        await wait_for(lambda: f.ctx is not None and f.ctx.paused)
        assert storage_v1(engine)["input_chunks"]["test_feed.0"]["status"]["overlimit"]
        assert engine.store is not None and not engine.store.backlog
        s.gate.set()
        await wait_for(lambda: f.ctx is not None and not f.ctx.paused)
        await wait_for(lambda: len(s.delivered) == 20)
