"""Engine semantics: routing, acks after delivery, partial retries, Retry_Limit, backpressure,
Grace, isolation between outputs (issue: foundation, reference §1c and §1h)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any

import pytest

from rillet.config.model import ConfigError
from rillet.engine.chunk import Batch, Chunk
from rillet.engine.engine import CHUNK_MAX
from rillet.engine.pipeline import parse_retry_limit
from rillet.engine.plugin import Partial, Status
from tests.engine import plugins
from tests.engine.harness import make_pipeline, running, wait_for
from tests.engine.plugins import Feed, Sink


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 30))
    return wrapper


def feed(key: str) -> Feed:
    plugins.STATE[key] = f = Feed()
    return f


def sink(key: str, script: Any = None) -> Sink:
    plugins.STATE[key] = s = Sink(script)
    return s


def batch(tag: str, records: list[dict[str, Any]], ack: Any = None) -> Batch:
    return Batch(tag, [1_700_000_000_000_000_000 + i for i in range(len(records))],
                 list(records), 100 * len(records), ack)


def recs(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"n": i} for i in range(start, start + n)]


# --- routing ---------------------------------------------------------------------------------

@async_test
async def test_routing_table_several_outputs_share_a_chunk() -> None:
    f1, f2 = feed("in1"), feed("in2")
    kube, app, every = sink("kube"), sink("app"), sink("all")
    p = make_pipeline(
        inputs=[{"name": "test_feed", "id": "in1", "tag": "kube.a"},
                {"name": "test_feed", "id": "in2", "tag": "app.b"}],
        outputs=[{"name": "test_sink", "id": "kube", "match": "kube.*"},
                 {"name": "test_sink", "id": "app", "match_regex": "app"},
                 {"name": "test_sink", "id": "all", "match": "**"}])
    async with running(p):
        f1.put(batch("kube.var.log.x", recs(3), ack="k"))
        f2.put(batch("app.b", recs(2), ack="a"))
        f2.put(batch("other", recs(1), ack="o"))
        await wait_for(lambda: len(every.delivered) == 6)
        await wait_for(lambda: len(f1.acks) == 1 and len(f2.acks) == 2)
    assert kube.delivered == recs(3)
    assert app.delivered == recs(2)
    # An unmatched-by-some record still reaches the outputs that match it.
    assert sorted(every.delivered, key=lambda r: r["n"]) == sorted(
        recs(3) + recs(2) + recs(1), key=lambda r: r["n"])
    assert ("o", True) in f2.acks


@async_test
async def test_single_input_single_output_without_match_routes_everything() -> None:
    f, s = feed("i"), sink("o")
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    async with running(p):
        f.put(batch("whatever.tag", recs(2)))
        await wait_for(lambda: len(s.delivered) == 2)


@async_test
async def test_unmatched_records_are_dropped_and_acked() -> None:
    f, s = feed("i"), sink("o")
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}, {"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o", "match": "yes.*"}])
    async with running(p):
        f.put(batch("no.x", recs(2), ack=1))
        await wait_for(lambda: f.acks == [(1, True)])
    assert s.calls == []


@async_test
async def test_filters_run_in_declaration_order_and_may_drop() -> None:
    f, s = feed("i"), sink("o")
    p = make_pipeline(
        inputs=[{"name": "test_feed", "id": "i", "tag": "t"}],
        filters=[{"name": "test_mark", "match": "t*", "mark": "first"},
                 {"name": "test_mark", "match": "nope", "mark": "skipped"},
                 {"name": "test_mark", "match": "*", "mark": "second"}],
        outputs=[{"name": "test_sink", "id": "o", "match": "*"}])
    async with running(p) as engine:
        f.put(batch("t", [{"n": 0}, {"n": 1, "drop": True}], ack="b1"))
        f.put(batch("t", [{"drop": True}], ack="b2"))
        await wait_for(lambda: len(f.acks) == 2)
        metrics = engine.pipeline.metrics.snapshot()
    assert s.delivered == [{"n": 0, "marks": ["first", "second"]}]
    assert metrics["filter"]["test_mark.0"]["drop_records"] == 2
    assert metrics["filter"]["test_mark.1"]["records"] == 0
    assert metrics["input"]["test_feed.0"]["records"] == 3


# --- acks ------------------------------------------------------------------------------------

@async_test
async def test_acks_reach_the_input_only_after_every_output_delivered() -> None:
    f = feed("i")
    fast, slow = sink("fast"), sink("slow")
    slow.gate = asyncio.Event()
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "fast", "match": "*"},
                               {"name": "test_sink", "id": "slow", "match": "*"}])
    async with running(p):
        f.put(batch("t", recs(5), ack=("file", 0, 500)))
        await wait_for(lambda: len(fast.delivered) == 5 and len(slow.calls) == 1)
        await asyncio.sleep(0.2)
        assert f.acks == []  # the slow output has not answered yet
        slow.gate.set()
        await wait_for(lambda: f.acks == [(("file", 0, 500), True)])


@async_test
async def test_ack_reports_incomplete_when_records_were_given_up() -> None:
    f = feed("i")
    sink("o", lambda chunk, n: Status.ERROR)
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    async with running(p):
        f.put(batch("t", recs(2), ack="x"))
        await wait_for(lambda: f.acks == [("x", False)])


# --- partial success and retries --------------------------------------------------------------

@async_test
async def test_partial_success_retries_only_the_rest() -> None:
    f = feed("i")

    def script(chunk: Chunk, call: int) -> Any:
        if call == 1:
            return Partial().add(0, 4, Status.OK).add(4, 7, Status.RETRY).add(7, 10, Status.OK)
        return Status.OK

    s = sink("o", script)
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o", "retry_limit": 3}])
    async with running(p) as engine:
        f.put(batch("t", recs(10), ack="a"))
        await wait_for(lambda: f.acks == [("a", True)])
        counters = engine.pipeline.metrics.snapshot()["output"]["test_sink.0"]
    assert len(s.calls) == 2
    assert s.calls[1][1] == recs(3, start=4)  # only the failed range went again
    assert sorted(s.delivered, key=lambda r: r["n"]) == recs(10)  # each exactly once
    assert counters["proc_records"] == 10
    assert counters["retries"] == 1 and counters["retried_records"] == 3
    assert counters["dropped_records"] == 0


@async_test
async def test_partial_error_drops_only_those_records() -> None:
    f = feed("i")
    s = sink("o", lambda chunk, n: Partial().add(1, 2, Status.ERROR, "record too large"))
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    async with running(p) as engine:
        f.put(batch("t", recs(3), ack="a"))
        await wait_for(lambda: f.acks == [("a", False)])
        counters = engine.pipeline.metrics.snapshot()["output"]["test_sink.0"]
    assert s.delivered == [{"n": 0}, {"n": 2}]
    assert counters["errors"] == 1 and counters["dropped_records"] == 1
    assert counters["proc_records"] == 2


@pytest.mark.parametrize(("limit", "attempts"), [("1", 2), ("3", 4), ("no_retries", 1)])
def test_retry_limit_exhaustion_drops_and_counts(limit: str, attempts: int) -> None:
    @async_test
    async def scenario() -> None:
        f = feed("i")
        s = sink("o", lambda chunk, n: Status.RETRY)
        p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                          outputs=[{"name": "test_sink", "id": "o", "retry_limit": limit}])
        async with running(p) as engine:
            f.put(batch("t", recs(4), ack="a"))
            await wait_for(lambda: f.acks == [("a", False)])
            counters = engine.pipeline.metrics.snapshot()["output"]["test_sink.0"]
        assert len(s.calls) == attempts
        assert counters["retries"] == attempts - 1
        assert counters["retried_records"] == 4 * (attempts - 1)
        assert counters["retries_failed"] == 1
        assert counters["dropped_records"] == 4
        assert counters["proc_records"] == 0
    scenario()


@async_test
async def test_unlimited_retries_until_success() -> None:
    f = feed("i")
    s = sink("o", lambda chunk, n: Status.OK if n >= 6 else Status.RETRY)
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o", "retry_limit": "no_limits"}])
    async with running(p):
        f.put(batch("t", recs(2), ack="a"))
        await wait_for(lambda: f.acks == [("a", True)])
    assert len(s.calls) == 6


@async_test
async def test_flush_exception_is_retried_not_lost() -> None:
    f = feed("i")

    def script(chunk: Chunk, n: int) -> Any:
        if n == 1:
            raise ConnectionError("boom")
        return Status.OK

    s = sink("o", script)
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    async with running(p):
        f.put(batch("t", recs(2), ack="a"))
        await wait_for(lambda: f.acks == [("a", True)])
    assert s.delivered == recs(2)


def test_retry_limit_values() -> None:
    assert parse_retry_limit("1") == 1
    assert parse_retry_limit("10") == 10
    for unlimited in ("no_limits", "False", "off"):
        assert parse_retry_limit(unlimited) is None
    assert parse_retry_limit("no_retries") == 0
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError):
            parse_retry_limit(bad)


def test_bad_retry_limit_is_a_config_error() -> None:
    plugins.STATE["i"], plugins.STATE["o"] = Feed(), Sink()
    with pytest.raises(ConfigError) as err:
        make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o", "retry_limit": "lots"}])
    assert err.value.errors == [
        "test.conf:1: [OUTPUT] test_sink: retry_limit: invalid value 'lots' "
        "(a number, no_limits or no_retries)"]


def test_backoff_is_full_jitter_between_base_and_capped_exponential() -> None:
    from rillet.engine.engine import Engine

    plugins.STATE["i"], plugins.STATE["o"] = Feed(), Sink()
    p = make_pipeline(service={"scheduler.base": 5, "scheduler.cap": 2000},
                      inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    engine = Engine(p)
    for attempt, top in [(1, 10), (2, 20), (3, 40), (10, 2000), (100, 2000)]:
        waits = [engine.backoff(attempt) for _ in range(300)]
        assert min(waits) >= 5 and max(waits) <= top
        assert max(waits) > 5 + (top - 5) * 0.8  # spread over the whole range


# --- isolation -----------------------------------------------------------------------------------

@async_test
async def test_a_failing_or_slow_output_never_delays_another() -> None:
    f = feed("i")
    good = sink("good")
    stuck = sink("stuck")
    stuck.gate = asyncio.Event()  # never answers during the test
    failing = sink("failing", lambda chunk, n: Status.RETRY)
    p = make_pipeline(service={"scheduler.base": 10, "scheduler.cap": 20},
                      inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "stuck", "match": "*"},
                               {"name": "test_sink", "id": "failing", "match": "*",
                                "retry_limit": "no_limits"},
                               {"name": "test_sink", "id": "good", "match": "*"}])
    async with running(p):
        for i in range(5):
            f.put(batch(f"t{i}", recs(1, start=i)))
            await wait_for(lambda i=i: len(good.delivered) == i + 1, timeout=1.0)
        stuck.gate.set()
    assert len(failing.calls) >= 5


@async_test
async def test_a_chunk_waiting_to_retry_does_not_block_later_chunks() -> None:
    f = feed("i")
    s = sink("o", lambda chunk, n: Status.RETRY if chunk.bodies[0]["n"] == 0 else Status.OK)
    p = make_pipeline(service={"scheduler.base": 30, "scheduler.cap": 60},
                      inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o", "retry_limit": "no_limits"}])
    async with running(p) as engine:
        f.put(batch("a", recs(1), ack="first"))
        await wait_for(lambda: len(s.calls) == 1)
        for i in range(1, 4):
            f.put(batch("b", recs(1, start=i), ack=i))
            await wait_for(lambda i=i: (i, True) in f.acks, timeout=1.0)
        assert len(engine.retries) == 1


# --- chunks and flushing -------------------------------------------------------------------------

@async_test
async def test_full_chunk_flushes_before_the_flush_timer() -> None:
    f, s = feed("i"), sink("o")
    p = make_pipeline(service={"flush": 60}, inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    async with running(p):
        f.put(Batch("t", [1] * 10, [b"{}"] * 10, CHUNK_MAX // 2))
        await asyncio.sleep(0.1)
        assert s.calls == []  # half a chunk waits for the timer
        f.put(Batch("t", [1] * 10, [b"{}"] * 10, CHUNK_MAX // 2))
        await wait_for(lambda: len(s.delivered) == 20, timeout=1.0)


@async_test
async def test_flush_timer_dispatches_pending_records() -> None:
    f, s = feed("i"), sink("o")
    p = make_pipeline(service={"flush": 0.2}, inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    async with running(p):
        start = time.monotonic()
        f.put(batch("t", recs(3)))
        await wait_for(lambda: len(s.delivered) == 3, timeout=2.0)
        assert time.monotonic() - start < 1.0
        f.put(batch("t", recs(2)))
        f.put(batch("t", recs(2)))
        await wait_for(lambda: len(s.delivered) == 7, timeout=2.0)
    assert len(s.calls) == 2  # the two batches waited together for one tick


# --- backpressure ------------------------------------------------------------------------------

@async_test
async def test_mem_buf_limit_pauses_and_resumes_at_once() -> None:
    f, s = feed("i"), sink("o")
    s.gate = asyncio.Event()
    p = make_pipeline(service={"flush": 30},  # resume must not wait for a timer
                      inputs=[{"name": "test_feed", "id": "i", "mem_buf_limit": "1k"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    async with running(p) as engine:
        f.put(Batch("t", [1] * 3, [b"{}"] * 3, 600, ack=1))
        f.put(Batch("t", [1] * 3, [b"{}"] * 3, 600, ack=2))  # crosses 1,000 bytes: accepted
        f.put(Batch("t", [1] * 3, [b"{}"] * 3, 600, ack=3))
        await wait_for(lambda: f.ctx is not None and f.ctx.paused)
        state = engine.input_state()["test_feed.0"]
        assert state["paused"] and state["inflight_bytes"] == 1200
        # The pause dispatched the open chunk although Flush is 30 s away.
        await wait_for(lambda: len(s.calls) == 1)
        await asyncio.sleep(0.1)
        assert f.emitting and f.queue.qsize() == 1  # the input is blocked, third batch unread
        s.gate.set()
        await wait_for(lambda: not f.ctx.paused, timeout=0.5)
        assert engine.pipeline.metrics.snapshot()["input"]["test_feed.0"]["ingestion_paused"] == 0
        await wait_for(lambda: f.queue.qsize() == 0, timeout=0.5)
    assert len(s.delivered) == 9


# --- shutdown ------------------------------------------------------------------------------------

@async_test
async def test_grace_delivers_what_is_buffered() -> None:
    f = feed("i")
    calls = {"n": 0}

    def script(chunk: Chunk, n: int) -> Any:
        calls["n"] += 1
        return Status.RETRY if calls["n"] == 1 else Status.OK

    s = sink("o", script)
    p = make_pipeline(service={"flush": 60, "scheduler.base": 60, "scheduler.cap": 120,
                               "grace": 5},
                      inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o", "retry_limit": 5}])
    async with running(p) as engine:
        f.put(batch("a", recs(2), ack="a"))
        await asyncio.sleep(0.05)
        engine._dispatch_open(engine.inputs[0])  # first chunk fails, waits 60 s to retry
        await wait_for(lambda: len(s.calls) == 1)
        f.put(batch("b", recs(3, start=2), ack="b"))  # waits for the 60 s flush timer
        await wait_for(lambda: f.queue.qsize() == 0)
        started = time.monotonic()
    # Leaving the block stopped the engine: both were delivered within the grace period.
    assert time.monotonic() - started < 3
    assert sorted(s.delivered, key=lambda r: r["n"]) == recs(5)
    assert sorted(f.acks) == [("a", True), ("b", True)]


@async_test
async def test_grace_expiry_stops_with_undelivered_data_unacked() -> None:
    f, s = feed("i"), sink("o")
    s.gate = asyncio.Event()  # the output never answers
    p = make_pipeline(service={"grace": 0.3}, inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    started = time.monotonic()
    async with running(p) as engine:
        f.put(batch("t", recs(2), ack="a"))
        await wait_for(lambda: len(s.calls) == 1)
    assert time.monotonic() - started < 3
    assert f.acks == []  # not delivered: the input must not advance past it
    assert engine.report.undelivered_records == 2


# --- workers, names, log levels --------------------------------------------------------------

@pytest.mark.parametrize(("workers", "concurrent"), [(None, 1), (1, 1), (3, 3)])
def test_output_workers_bound_concurrent_flushes(workers: int | None, concurrent: int) -> None:
    @async_test
    async def scenario() -> None:
        f = feed("i")
        state = {"now": 0, "peak": 0}

        async def slow(chunk: Chunk, n: int) -> Status:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            await asyncio.sleep(0.05)
            state["now"] -= 1
            return Status.OK

        s = sink("o", slow)
        out: dict[str, Any] = {"name": "test_sink", "id": "o"}
        if workers is not None:
            out["workers"] = workers
        p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}], outputs=[out])
        async with running(p):
            for i in range(6):  # six tags: six chunks dispatched on the same tick
                f.put(batch(f"t{i}", recs(1, start=i)))
            await wait_for(lambda: len(s.delivered) == 6)
        assert state["peak"] == concurrent
    scenario()


def test_instance_names_and_alias() -> None:
    for key in ("a", "b", "o1", "o2"):
        plugins.STATE[key] = Feed() if key in "ab" else Sink()
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "a"},
                              {"name": "test_feed", "id": "b", "alias": "from_b"}],
                      outputs=[{"name": "test_sink", "id": "o1", "match": "*"},
                               {"name": "test_sink", "id": "o2", "match": "*"}])
    assert [i.name for i in p.inputs] == ["test_feed.0", "from_b"]
    assert [o.name for o in p.outputs] == ["test_sink.0", "test_sink.1"]
    assert [i.tag for i in p.inputs] == ["test_feed.0", "from_b"]  # no Tag: the instance name
    assert set(p.metrics.snapshot()["input"]) == {"test_feed.0", "from_b"}
    assert set(p.metrics.snapshot()["output"]["test_sink.0"]) == {
        "proc_records", "proc_bytes", "errors", "retries", "retries_failed",
        "dropped_records", "retried_records"}


def test_log_level_per_plugin_overrides_the_global_one() -> None:
    import logging

    plugins.STATE["i"], plugins.STATE["o"] = Feed(), Sink()
    p = make_pipeline(service={"log_level": "error"},
                      inputs=[{"name": "test_feed", "id": "i", "log_level": "debug"}],
                      outputs=[{"name": "test_sink", "id": "o"}])
    assert p.inputs[0].log.getEffectiveLevel() == logging.DEBUG
    assert p.outputs[0].log.level == logging.NOTSET  # inherits the service level
    assert p.service["log_level"] == "error"


@async_test
async def test_an_output_that_cannot_start_fails_startup_cleanly() -> None:
    from rillet.engine.engine import Engine

    f, ok, bad = feed("i"), sink("ok"), sink("bad")
    p = make_pipeline(inputs=[{"name": "test_feed", "id": "i"}],
                      outputs=[{"name": "test_sink", "id": "ok", "match": "*"},
                               {"name": "test_sink", "id": "bad", "match": "*",
                                "fail_start": "on"}])
    assert await Engine(p).run() == 1
    assert ok.stopped and not bad.stopped  # what started is stopped again
    assert f.ctx is None  # no input ever ran
