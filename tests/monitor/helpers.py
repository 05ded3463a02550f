from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from rillet.engine.pipeline import Pipeline, build
from rillet.monitor.agent import Agent
from tests.engine.harness import make_model, wait_for

MONITOR = {"http_server": "on", "http_listen": "127.0.0.1", "http_port": 0,
           "health_check": "on", "storage.metrics": "on"}


def make(service: dict[str, Any] | None = None, **kw: Any) -> Callable[[], Pipeline]:
    """A loader: builds the pipeline of these settings (again at every call)."""
    return lambda: build(make_model(service={**MONITOR, **(service or {})}, **kw))


@contextlib.asynccontextmanager
async def agent_running(load: Callable[[], Pipeline],
                        reload: Callable[[], Pipeline] | None = None) -> AsyncIterator[Agent]:
    agent = Agent(load(), reload or load, install_signals=False)
    task = asyncio.create_task(agent.run())
    await wait_for(lambda: agent.readiness() == "ready" or task.done(), 10)
    assert not task.done(), task.result()
    try:
        yield agent
    finally:
        agent.stop("test done")
        await asyncio.wait_for(task, 30)


def port(agent: Agent) -> int:
    assert agent.server is not None
    return agent.server.port
