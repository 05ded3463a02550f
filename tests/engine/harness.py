"""Build a pipeline from plain dicts and run the real engine around a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from rillet.config.model import ConfigModel, Section
from rillet.engine.engine import Engine
from rillet.engine.pipeline import Pipeline, build


def section(kind: str, props: dict[str, Any]) -> Section:
    sec = Section(kind, "test.conf", 1)
    for key, value in props.items():
        sec.set(key, str(value), "test.conf", 1)
    return sec


Props = list[dict[str, Any]]


def make_model(service: dict[str, Any] | None = None, inputs: Props | None = None,
               filters: Props | None = None, outputs: Props | None = None) -> ConfigModel:
    model = ConfigModel.empty("test.conf")
    model.service = section("service", {"flush": 0.05, "grace": 2, "scheduler.base": 0.01,
                                        "scheduler.cap": 0.05, **(service or {})})
    model.inputs = [section("input", p) for p in inputs or []]
    model.filters = [section("filter", p) for p in filters or []]
    model.outputs = [section("output", p) for p in outputs or []]
    return model


def make_pipeline(**kw: Any) -> Pipeline:
    return build(make_model(**kw))


@contextlib.asynccontextmanager
async def running(pipeline: Pipeline) -> AsyncIterator[Engine]:
    engine = Engine(pipeline)
    task = asyncio.create_task(engine.run())
    await engine.started.wait()
    try:
        yield engine
    finally:
        engine.request_stop("test done")
        await asyncio.wait_for(task, 30)


async def wait_for(predicate: Any, timeout: float = 5.0, step: float = 0.005) -> None:
    """Poll until predicate() is true; fail the test on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)
