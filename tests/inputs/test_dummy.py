"""The dummy input's options (Fluent Bit's in_dummy config map)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from rillet.config.model import ConfigError
from rillet.engine.chunk import Batch
from rillet.engine.plugin import InputContext
from rillet.inputs.dummy import Dummy
from tests.engine.harness import make_pipeline


class Collect(InputContext):
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def emit(self, batch: Batch) -> None:
        self.batches.append(batch)

    async def wait_resumed(self) -> None:
        return None

    @property
    def paused(self) -> bool:
        return False

    def request_exit(self) -> None:
        raise AssertionError("dummy never asks to exit")


def make(**props: Any) -> Dummy:
    p = make_pipeline(inputs=[{"name": "dummy", **props}],
                      outputs=[{"name": "null", "match": "*"}])
    plugin = p.inputs[0].plugin
    assert isinstance(plugin, Dummy)
    return plugin


def run(plugin: Dummy, timeout: float = 5) -> Collect:
    ctx = Collect()
    asyncio.run(asyncio.wait_for(plugin.run(ctx), timeout))
    return ctx


def records(ctx: Collect) -> list[tuple[int, bytes]]:
    return [(t, b) for batch in ctx.batches for t, b in zip(batch.times, batch.bodies,
                                                             strict=True)]


def test_defaults_generate_the_default_message_with_the_instance_tag() -> None:
    plugin = make(samples=1, flush_on_startup="on")
    before = time.time_ns()
    out = records(run(plugin))
    assert [b for _, b in out] == [b'{"message":"dummy"}']
    assert before <= out[0][0] <= time.time_ns()
    assert run(make(samples=1, flush_on_startup="on")).batches[0].tag == "dummy.0"


def test_custom_message_copies_and_samples() -> None:
    plugin = make(dummy='{"a": 1, "b": [true, null]}', copies=3, samples=4, rate=100,
                  tag="my.tag")
    ctx = run(plugin)
    out = records(ctx)
    assert len(out) == 12
    assert {b for _, b in out} == {orjson.dumps({"a": 1, "b": [True, None]})}
    assert {batch.tag for batch in ctx.batches} == {"my.tag"}
    assert sum(batch.size for batch in ctx.batches) == 12 * len(out[0][1])


def test_rate_paces_generation() -> None:
    start = time.monotonic()
    out = records(run(make(rate=20, samples=10)))
    elapsed = time.monotonic() - start
    assert len(out) == 10
    assert 0.4 <= elapsed < 2.0  # 10 intervals of 50 ms


def test_interval_overrides_rate() -> None:
    start = time.monotonic()
    run(make(rate=1000, interval_sec=0, interval_nsec=100_000_000, samples=3))
    assert time.monotonic() - start >= 0.25


def test_fixed_timestamp_with_start_time() -> None:
    out = records(run(make(start_time_sec=1_700_000_000, start_time_nsec=5,
                           fixed_timestamp="on", samples=3, rate=100)))
    assert {t for t, _ in out} == {1_700_000_000_000_000_005}


def test_start_time_moves_forward_from_the_base() -> None:
    out = records(run(make(start_time_sec=1_000, start_time_nsec=0, samples=3, rate=20)))
    times = [t for t, _ in out]
    assert 1_000 * 10**9 <= times[0] < 1_001 * 10**9
    assert times == sorted(times) and times[-1] > times[0]


@pytest.mark.parametrize(("value", "reason"), [
    ('{"a": ', "invalid JSON"),
    ('[1, 2]', "must be a JSON object"),
])
def test_bad_dummy_message_is_a_config_error(value: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as err:
        make(dummy=value)
    assert err.value.errors[0].startswith("test.conf:1: [INPUT] dummy: dummy: ")
