"""The es output inside the real engine: an item rejected with 429 is retried alone until it
is indexed, a mapping conflict is dropped with its reason (counted), nothing is indexed twice,
and the input is acknowledged once everything is final."""

from __future__ import annotations

import asyncio
from typing import Any

from rillet.engine.chunk import Batch
from tests.engine import plugins
from tests.engine.harness import make_pipeline, running, wait_for
from tests.engine.plugins import Feed
from tests.peers.bulk_server import BulkServer


def test_partial_bulk_failures_through_the_engine() -> None:
    feed = plugins.STATE["es-feed"] = Feed()
    rejections = {"left": 2}

    def rule(op: str, meta: dict[str, Any], doc: Any) -> tuple[int, str] | None:
        if doc.get("n") == 3 and rejections["left"]:
            rejections["left"] -= 1
            return 429, "es_rejected_execution_exception"
        return None

    async def main(server: BulkServer) -> Any:
        p = make_pipeline(
            inputs=[{"name": "test_feed", "id": "es-feed", "tag": "app"}],
            outputs=[{"name": "es", "match": "*", "port": server.port, "retry_limit": 5,
                      "generate_id": "on"}])
        async with running(p) as engine:
            records: list[Any] = [{"n": i} for i in range(5)]
            records[1] = {"n": "one"}  # mapping conflict with the numbers
            feed.put(Batch("app", [1_700_000_000_000_000_000 + i for i in range(5)],
                           records, 100, ack="tok"))
            await wait_for(lambda: bool(feed.acks), timeout=20)
            return engine

    with BulkServer() as server:
        server.item_rule = rule
        engine = asyncio.run(main(server))
        assert sorted(d["n"] for d in server.all_docs()) == [0, 2, 3, 4]
        assert feed.acks == [("tok", False)]  # one record was given up on
        counters = engine.pipeline.outputs[0].plugin.counters
        assert counters["dropped_records"] == 1
        assert counters["es_item_retries"] == 2
        # each retry carried only record 3
        assert [len(r.body.split(b"\n")) // 2 for r in server.requests] == [5, 1, 1]
