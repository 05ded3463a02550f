"""The monitoring API's routes (Fluent Bit's /api/v1 and /api/v2, plus rillet's additions).

| path | answer |
|---|---|
| ``/`` | build information |
| ``/api/v1/uptime`` | ``{"uptime_sec": N, "uptime_hr": "..."}`` |
| ``/api/v1/metrics`` (``/prometheus``) | counters per instance (JSON / Prometheus text) |
| ``/api/v1/storage`` | storage layer and chunks per input (with ``storage.metrics on``) |
| ``/api/v1/health`` | ``ok`` 200 / ``error`` 500 (with ``Health_Check on``) |
| ``/api/v2/metrics`` (``/prometheus``) | cmetrics text / Prometheus text |
| ``/api/v2/health`` | JSON health, 200 / 500 (with ``Health_Check on``) |
| ``/api/v2/reload`` | GET ``{"hot_reload_count": N}``; POST/PUT reload (with ``Hot_Reload on``) |
| ``/api/v2/ready`` | rillet: 200 once inputs run and outputs have started, else 503 |
| ``/api/v2/pipeline`` | rillet: live state per instance (what ``rillet top`` shows) |

Handlers only read the engine's counters and state: no handler awaits the pipeline.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from rillet.engine.storage import report as storage_report
from rillet.monitor import render
from rillet.monitor.http import JSON, PROMETHEUS, TEXT, Request, Response

if TYPE_CHECKING:
    from rillet.monitor.agent import Agent


def _json(status: int, value: object) -> Response:
    return Response(status, orjson.dumps(value), JSON)


class MonitorAPI:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        service = agent.pipeline.service
        self.health_check: bool = service["health_check"]
        self.storage_metrics: bool = service["storage.metrics"]
        self.routes = {
            "/": self.root,
            "/api/v1/uptime": self.uptime,
            "/api/v1/metrics": self.metrics,
            "/api/v1/metrics/prometheus": self.metrics_prometheus,
            "/api/v2/metrics": self.metrics_v2,
            "/api/v2/metrics/prometheus": self.metrics_v2_prometheus,
            "/api/v2/reload": self.reload,
            "/api/v2/ready": self.ready,
            "/api/v2/pipeline": self.pipeline,
        }
        if self.storage_metrics:
            self.routes["/api/v1/storage"] = self.storage
        if self.health_check:
            self.routes["/api/v1/health"] = self.health
            self.routes["/api/v2/health"] = self.health_v2

    async def __call__(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        handler = self.routes.get(path)
        if handler is None:
            return Response(404, b"not found\n")
        if path != "/api/v2/reload" and request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers=[("Allow", "GET, HEAD")])
        return await handler(request)

    # -- v1 -------------------------------------------------------------------------------------
    async def root(self, request: Request) -> Response:
        return _json(200, {"fluent-bit": {"version": render.VERSION, "edition": render.EDITION,
                                          "flags": render.FLAGS}})

    async def uptime(self, request: Request) -> Response:
        seconds = int(time.time() - self.agent.started_at)
        return _json(200, {"uptime_sec": seconds, "uptime_hr": render.uptime_hr(seconds)})

    async def metrics(self, request: Request) -> Response:
        return _json(200, render.metrics_v1(self.agent.engine))

    async def metrics_prometheus(self, request: Request) -> Response:
        text = render.prometheus_v1(self.agent.engine, self.agent.started_at)
        return Response(200, text.encode(), PROMETHEUS)

    async def storage(self, request: Request) -> Response:
        return _json(200, storage_report.storage_v1(self.agent.engine))

    async def health(self, request: Request) -> Response:
        state = self.agent.health_state()
        return Response(200, b"ok\n") if state.healthy else Response(500, b"error\n")

    # -- v2 -------------------------------------------------------------------------------------
    async def metrics_v2(self, request: Request) -> Response:
        text = render.cmetrics_text(self.agent.engine, self.agent.info())
        return Response(200, text.encode(), TEXT)

    async def metrics_v2_prometheus(self, request: Request) -> Response:
        text = render.prometheus_v2(self.agent.engine, self.agent.info())
        return Response(200, text.encode(), PROMETHEUS)

    async def health_v2(self, request: Request) -> Response:
        state = self.agent.health_state()
        checker = self.agent.health
        body = {"status": "ok" if state.healthy else "error", "errors": state.errors,
                "retries_failed": state.retries_failed,
                "error_limit": checker.errors_limit, "retry_failure_limit":
                checker.retry_failure_limit, "period_limit": checker.period,
                "stalled_outputs": state.stalled}
        return _json(200 if state.healthy else 500, body)

    async def reload(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            return _json(200, {"hot_reload_count": self.agent.reloads})
        if request.method not in ("POST", "PUT"):
            return Response(405, b"method not allowed\n",
                            headers=[("Allow", "GET, HEAD, POST, PUT")])
        if not self.agent.hot_reload:
            return _json(400, {"reload": "not enabled", "status": -1})
        if self.agent.reloading:
            return _json(400, {"reload": "in progress", "status": -2})
        errors = self.agent.request_reload("HTTP request")
        if errors:
            return _json(400, {"reload": "failed", "status": -1, "errors": errors})
        return _json(200, {"reload": "done", "status": 0})

    async def ready(self, request: Request) -> Response:
        state = self.agent.readiness()
        return _json(200 if state == "ready" else 503, {"status": state})

    async def pipeline(self, request: Request) -> Response:
        body = render.pipeline_state(self.agent.engine)
        body["uptime_sec"] = int(time.time() - self.agent.started_at)
        body["hot_reload_count"] = self.agent.reloads
        body["status"] = self.agent.readiness()
        return _json(200, body)
