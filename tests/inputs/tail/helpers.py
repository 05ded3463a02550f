"""Run the real engine with a tail input and a capturing output (tests/engine/plugins.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson

import tests.engine.plugins  # noqa: F401  (registers test_sink)
from rillet.config.loader import load_parsers_file
from rillet.engine.chunk import body_dict
from rillet.engine.engine import Engine
from rillet.engine.pipeline import build
from rillet.inputs.tail import Tail
from tests.engine.harness import make_model, wait_for
from tests.engine.plugins import STATE, Sink
from tests.shared_data import CONFORMANCE as _CONF

CONFORMANCE = _CONF / "runtime" / "data" / "tail"


class Run:
    def __init__(self, engine: Engine, sink: Sink) -> None:
        self.engine = engine
        self.sink = sink

    @property
    def tail(self) -> Tail:
        plugin = self.engine.pipeline.inputs[0].plugin
        assert isinstance(plugin, Tail)
        return plugin

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.engine.pipeline.inputs[0].counters)

    def records(self) -> list[dict[str, Any]]:
        return [body_dict(b) for b in self.sink.delivered]

    def logs(self) -> list[Any]:
        return [r.get("log") for r in self.records()]

    async def wait_records(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        await wait_for(lambda: len(self.sink.delivered) >= n, timeout)
        return self.records()


@contextlib.asynccontextmanager
async def running(tail: dict[str, Any], service: dict[str, Any] | None = None,
                  parsers_file: Path | None = None,
                  sink_script: Callable[..., Any] | None = None,
                  extra_filters: list[dict[str, Any]] | None = None) -> AsyncIterator[Run]:
    key = f"sink-{id(tail)}"
    STATE[key] = Sink(sink_script)
    model = make_model(service=service, inputs=[{"name": "tail", "tag": "t", **tail}],
                       filters=extra_filters,
                       outputs=[{"name": "test_sink", "match": "*", "id": key}])
    if parsers_file is not None:
        load_parsers_file(str(parsers_file), model)
    engine = Engine(build(model))
    task = asyncio.create_task(engine.run())
    await engine.started.wait()
    try:
        yield Run(engine, STATE[key])
    finally:
        engine.request_stop("test done")
        await asyncio.wait_for(task, 30)
        STATE.pop(key, None)


def jsonl(records: list[dict[str, Any]]) -> list[str]:
    return [orjson.dumps(r).decode() for r in records]


def aio(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async test function with asyncio.run (pytest fixtures still apply)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))
    return wrapper
