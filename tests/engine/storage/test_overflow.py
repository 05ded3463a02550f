"""Overflow mode, disk budgets (pause or drop_oldest) and dead letters."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from rillet.engine.chunk import Chunk
from rillet.engine.plugin import Partial, Status
from tests.engine.harness import running, wait_for
from tests.engine.storage.helpers import (
    async_test,
    batch,
    chunk_files,
    feed,
    numbers,
    pipeline,
    sink,
)


@async_test
async def test_overflow_writes_nothing_while_the_output_keeps_up(tmp_path: Path) -> None:
    f = feed("in")
    s = sink("o0")
    async with running(pipeline(tmp_path, storage="overflow")) as engine:
        for i in range(50):
            f.put(batch("t", i * 20, 20, ack=i))
        await wait_for(lambda: len(s.delivered) == 1000)
        assert engine.store is not None and engine.store.stats["bytes_written"] == 0
    assert len(f.acks) == 50 and chunk_files(tmp_path) == []
    assert numbers(s.delivered) == list(range(1000))


@async_test
async def test_overflow_spills_when_the_output_is_down_and_acks_the_input(
        tmp_path: Path) -> None:
    f = feed("in")
    up = asyncio.Event()

    def script(chunk: Chunk, n: int) -> Any:
        return Status.OK if up.is_set() else Status.RETRY

    s = sink("o0", script)
    p = pipeline(tmp_path, storage="overflow", output_opts=[{"retry_limit": "no_limits"}])
    async with running(p) as engine:
        for i in range(5):
            f.put(batch("t", i * 10, 10, ack=i))
            await asyncio.sleep(0.06)
        # Waiting for a retry is backpressure: written to disk, so final for the input.
        await wait_for(lambda: len(f.acks) == 5)
        assert engine.store is not None and engine.store.stats["chunks_written"] >= 1
        assert chunk_files(tmp_path)
        assert s.delivered == []
        up.set()
        await wait_for(lambda: len(s.delivered) >= 50, timeout=10)
        await wait_for(lambda: not chunk_files(tmp_path))
    assert sorted(set(numbers(s.delivered))) == list(range(50))


@async_test
async def test_full_disk_budget_pauses_the_input_and_loses_nothing(tmp_path: Path) -> None:
    f = feed("in")
    up = asyncio.Event()
    s = sink("o0", lambda chunk, n: Status.OK if up.is_set() else Status.RETRY)
    p = pipeline(tmp_path, storage="overflow",
                 output_opts=[{"retry_limit": "no_limits", "storage.total_limit_size": "3K"}])
    async with running(p) as engine:
        for i in range(10):
            f.put(batch("t", i * 10, 10, ack=i, pad=50))
        await wait_for(lambda: f.ctx is not None and f.ctx.paused, timeout=10)
        assert engine.store is not None and engine.store.stats["budget_full"] >= 1
        assert engine.store.used["test_sink.0"] <= 3 * 1024
        assert len(f.acks) < 10  # the rest waits: paused, not dropped
        up.set()
        await wait_for(lambda: len(f.acks) == 10, timeout=10)
        await wait_for(lambda: not chunk_files(tmp_path))
        assert not f.ctx.paused  # type: ignore[union-attr]
    counters = p.metrics.snapshot()["output"]["test_sink.0"]
    assert counters["dropped_records"] == 0
    assert sorted(set(numbers(s.delivered))) == list(range(100))


@async_test
async def test_drop_oldest_evicts_waiting_chunks_and_counts_them(tmp_path: Path) -> None:
    f = feed("in")
    s = sink("o0")
    s.gate = asyncio.Event()
    p = pipeline(tmp_path, service={"storage.max_chunks_up": 1},
                 output_opts=[{"storage.total_limit_size": "3K",
                               "storage.total_limit_action": "drop_oldest"}])
    async with running(p) as engine:
        for i in range(10):
            f.put(batch("t", i * 10, 10, ack=i, pad=50))
            await asyncio.sleep(0.06)  # one chunk each
        await wait_for(lambda: len(f.acks) == 10)  # never paused
        assert engine.store is not None
        assert engine.store.used["test_sink.0"] <= 3 * 1024
        s.gate.set()
        await wait_for(lambda: not chunk_files(tmp_path))
    counters = p.metrics.snapshot()["output"]["test_sink.0"]
    evicted = counters["storage_evicted_records"]
    assert evicted > 0 and counters["dropped_records"] == evicted
    assert len(s.delivered) == 100 - evicted
    assert numbers(s.delivered)[-10:] == list(range(90, 100))  # the newest survived


@async_test
async def test_dead_letters_keep_records_with_their_reason(tmp_path: Path) -> None:
    f = feed("in")

    def mapping(chunk: Chunk, n: int) -> Partial:
        return Partial().add(0, 2, Status.ERROR, "mapper_parsing_exception: field [n]")

    sink("o0", mapping)
    sink("o1", lambda chunk, n: Status.RETRY)
    p = pipeline(tmp_path, storage="memory", outputs=2,
                 service={"storage.keep.rejected": "on"},
                 output_opts=[{}, {"retry_limit": "1"}])
    async with running(p):
        f.put(batch("t", 0, 5, ack="x"))
        await wait_for(lambda: f.acks == [("x", False)], timeout=5)
    rejected = tmp_path / "rejected"
    first = [orjson.loads(line) for line in (rejected / "test_sink.0.jsonl").read_bytes()
             .splitlines()]
    assert [r["record"]["n"] for r in first] == [0, 1]
    assert {r["reason"] for r in first} == {"mapper_parsing_exception: field [n]"}
    assert {(r["output"], r["input"], r["tag"]) for r in first} == {
        ("test_sink.0", "test_feed.0", "t")}
    second = [orjson.loads(line) for line in (rejected / "test_sink.1.jsonl").read_bytes()
              .splitlines()]
    assert [r["record"]["n"] for r in second] == [0, 1, 2, 3, 4]
    assert second[0]["reason"] == "retry limit exhausted after 1 retries"
    assert second[0]["record_time"] == 1_700_000_000.0
    metrics = p.metrics.snapshot()["output"]
    assert metrics["test_sink.0"]["rejected_records"] == 2
    assert metrics["test_sink.1"]["rejected_records"] == 5


@async_test
async def test_overflow_spills_behind_a_slow_output_past_the_threshold(tmp_path: Path) -> None:
    f = feed("in")
    s = sink("o0")
    s.gate = asyncio.Event()  # slow: answers nothing until the gate opens
    p = pipeline(tmp_path, storage="overflow", service={"storage.max_chunks_up": 2},
                 input_opts={"storage.spill_threshold": "1K"})
    async with running(p) as engine:
        for i in range(8):
            f.put(batch("t", i * 10, 10, ack=i, pad=20))
            await asyncio.sleep(0.06)
        # The first chunks wait in memory (not final); once the output has been behind for a
        # Flush interval with 1K in flight, later chunks are written and final at once.
        await wait_for(lambda: len(f.acks) >= 4)
        assert engine.store is not None and engine.store.stats["chunks_written"] >= 4
        assert 0 not in [token for token, _ in f.acks]  # the first is still only in memory
        s.gate.set()
        await wait_for(lambda: len(f.acks) == 8)
        await wait_for(lambda: len(s.delivered) == 80)
    assert numbers(s.delivered) == list(range(80))  # order kept through the spill
