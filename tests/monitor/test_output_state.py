"""The engine's per-output delivery state that health and the gauges read."""

from __future__ import annotations

import asyncio
import time

from rillet.engine.chunk import Batch
from rillet.engine.metrics import Histogram
from rillet.engine.plugin import Partial, Status
from tests.engine.harness import make_pipeline, running, wait_for
from tests.engine.plugins import STATE, Feed, Sink


def test_pending_last_success_and_latency_through_retries() -> None:
    answers = iter([Status.RETRY, Partial().add(0, 1, Status.RETRY), Status.OK,
                    Partial().add(1, 2, Status.ERROR, "bad"), Status.OK])

    async def main() -> None:
        STATE["os"] = Feed()
        STATE["os-out"] = Sink(script=lambda chunk, n: next(answers))
        pipeline = make_pipeline(inputs=[{"name": "test_feed", "id": "os", "tag": "t"}],
                                 outputs=[{"name": "test_sink", "id": "os-out", "match": "*",
                                           "retry_limit": "5"}])
        async with running(pipeline) as engine:
            state = engine.output_states["test_sink.0"]
            assert (state.pending, state.last_success) == (0, 0.0)
            feed: Feed = STATE["os"]
            sink: Sink = STATE["os-out"]
            before = time.time()
            feed.put(Batch("t", [1, 2, 3], [{"i": 1}, {"i": 2}, {"i": 3}], 30))
            await wait_for(lambda: len(sink.calls) >= 1)
            assert state.pending == 3 and state.pending_since >= before
            await wait_for(lambda: state.pending == 0, 5)  # RETRY, partial RETRY, OK
            assert len(sink.calls) == 3 and state.last_success >= before
            hist = state.latency["test_feed.0"]
            assert hist.count == 2  # two flushes delivered records
            feed.put(Batch("t", [4, 5], [{"i": 4}, {"i": 5}], 20))
            await wait_for(lambda: len(sink.calls) == 4 and state.pending == 0, 5)
            assert engine.pipeline.metrics.groups["output"]["test_sink.0"]["dropped_records"] == 1

    asyncio.run(main())


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram()
    for v in (0.1, 0.5, 0.7, 3.0, 100.0):
        h.observe(v)
    assert h.cumulative() == [2, 3, 3, 3, 4, 4, 4, 4, 5]
    assert h.count == 5 and abs(h.sum - 104.3) < 1e-9
