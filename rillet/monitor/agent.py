"""The agent: runs the engine, the monitoring server and hot reload.

Hot reload (``Hot_Reload On`` or ``-Y``; SIGHUP or ``POST``/``PUT /api/v2/reload``):

1. the configuration is read and the whole new pipeline is built and validated first; if
   anything is wrong the running pipeline is kept, every error is logged and the failure is
   counted (``rillet_hot_reload_failures_total``; the HTTP answer lists the errors);
2. the running engine is drained as on SIGTERM: inputs stop, buffered and in-flight records are
   delivered within ``Grace``, and acknowledged, so inputs that keep offsets (tail's DB) have
   committed exactly what was delivered;
3. the new engine starts; its inputs resume from the committed offsets. If it cannot start (an
   output fails in ``start()``), the previous configuration is built again and restarted, and
   the failure is counted. ``fluentbit_hot_reloaded_times`` counts reloads that took effect.

The monitoring server keeps running across reloads (its address is read at startup).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

from rillet import log as rlog
from rillet.config.model import ConfigError
from rillet.engine.engine import Engine
from rillet.engine.pipeline import Pipeline, build
from rillet.monitor.api import MonitorAPI
from rillet.monitor.health import HealthChecker, HealthState
from rillet.monitor.http import HttpServer
from rillet.monitor.render import AgentInfo

_log = rlog.get("engine")
_reload_log = rlog.get("reload")
_http_log = rlog.get("http_server")

Loader = Callable[[], Pipeline]


def _checker(service: Any) -> HealthChecker:
    return HealthChecker(service["hc_errors_count"], service["hc_retry_failure_count"],
                         service["hc_period"], float(service["hc_stall_timeout"]))


class Agent:
    """Run ``pipeline``; ``load`` reads the configuration again for a hot reload."""

    def __init__(self, pipeline: Pipeline, load: Loader | None = None, *,
                 install_signals: bool = True) -> None:
        self.pipeline = pipeline
        self.load = load
        self.install_signals = install_signals
        service = pipeline.service
        self.hot_reload: bool = service["hot_reload"]
        self.health = _checker(service)
        self.started_at = time.time()
        self.engine: Engine | None = None
        self.server: HttpServer | None = None
        self.reloads = 0
        self.reload_failures = 0
        self.reloading = False
        self.state = "starting"
        self.finished: list[dict[str, Any]] = []  # per replaced engine: its final counters
        self._pending: Pipeline | None = None
        self._stopping = False
        self._stop_reason = ""
        self._wake: asyncio.Event | None = None

    # -- control ------------------------------------------------------------------------------
    def stop(self, reason: str = "") -> None:
        self._stopping = True
        self._stop_reason = reason
        if self._wake is not None:
            self._wake.set()

    def request_reload(self, why: str) -> list[str]:
        """Validate the configuration again; schedule the reload if it is good.

        Returns the errors (empty when the reload was scheduled)."""
        if self.load is None:
            return ["no configuration file to reload"]
        if self.reloading:
            return ["a reload is already in progress"]
        _reload_log.info("reloading the configuration (%s)", why)
        errors: list[str] = []
        try:
            new = self.load()
        except ConfigError as exc:
            errors = list(exc.errors)
        except OSError as exc:
            errors = [str(exc)]
        except Exception as exc:  # a plugin constructor bug must not kill the agent
            _reload_log.exception("reading the new configuration failed")
            errors = [f"{type(exc).__name__}: {exc}"]
        if errors:
            self.reload_failures += 1
            for line in errors:
                _reload_log.error("%s", line)
            _reload_log.error("hot reload failed: %d error(s) in the new configuration; the "
                              "running pipeline is kept", len(errors))
            return errors
        for warning in new.warnings:
            _reload_log.warning("%s", warning)
        self._pending = new
        self.reloading = True
        if self._wake is not None:
            self._wake.set()
        return []

    # -- views for the API ----------------------------------------------------------------------
    def health_state(self) -> HealthState:
        return self.health.state(self.engine)

    def readiness(self) -> str:
        engine = self.engine
        if self.state == "running" and engine is not None and engine.started.is_set() \
                and not engine.stopping:
            return "ready"
        if self.state == "running":
            return "stopping"
        return self.state

    def info(self) -> AgentInfo:
        return AgentInfo(self.started_at, self.reloads, self.reload_failures,
                         self.readiness() == "ready", self.health.stall_timeout)

    # -- running --------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._stopping:
            self._wake.set()
        service = self.pipeline.service
        if service["http_server"]:
            self.server = HttpServer(service["http_listen"], service["http_port"],
                                     MonitorAPI(self), _http_log)
            try:
                await self.server.start()
            except OSError as exc:
                _http_log.error("cannot listen on %s:%s: %s", service["http_listen"],
                                service["http_port"], exc)
                return 1
            _http_log.info("listen iface=%s tcp_port=%d", service["http_listen"],
                           self.server.port)
        if self.install_signals:
            self._signals(loop, install=True)
        sampler = asyncio.create_task(self._sample(), name="health sampler")
        try:
            return await self._loop()
        finally:
            self.state = "stopped"
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            if self.install_signals:
                self._signals(loop, install=False)
            if self.server is not None:
                await self.server.close()

    async def _loop(self) -> int:
        assert self._wake is not None
        previous: Pipeline | None = None
        while True:
            engine = Engine(self.pipeline)
            self.engine = engine
            self.health.reset()
            task = asyncio.create_task(engine.run(), name="engine")
            started = asyncio.create_task(engine.started.wait())
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            if not engine.started.is_set():
                rc = task.result()
                if previous is None:
                    return rc
                self.reload_failures += 1
                _reload_log.error("hot reload failed: the new pipeline did not start; "
                                  "restarting the previous configuration")
                try:
                    restored = build(previous.model)
                except ConfigError as exc:  # pragma: no cover - it was valid a moment ago
                    for line in exc.errors:
                        _reload_log.error("%s", line)
                    return 1
                self._apply_service(restored)
                self.pipeline, previous = restored, None
                continue
            if previous is not None:
                self.reloads += 1
                _reload_log.info("hot reload done (%d so far)", self.reloads)
                previous = None
            self.state = "running"
            self.reloading = False
            self.health.sample(engine)
            waiter = asyncio.create_task(self._wake.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                waiter.cancel()
                return task.result()
            self._wake.clear()
            if self._stopping:
                engine.request_stop(self._stop_reason)
                self.state = "stopping"
                return await task
            new, self._pending = self._pending, None
            if new is None:
                continue
            self.state = "reloading"
            self.reloading = True
            engine.request_stop("hot reload")
            await task
            self._remember(engine)
            if self._stopping:
                return 0
            self._apply_service(new)
            previous, self.pipeline = self.pipeline, new

    def _remember(self, engine: Engine) -> None:
        self.finished.append({"metrics": engine.pipeline.metrics.snapshot(),
                              "undelivered_records": engine.report.undelivered_records})
        del self.finished[:-10]

    def _apply_service(self, pipeline: Pipeline) -> None:
        """Service settings a reload may change (the HTTP server's address is not one)."""
        service = pipeline.service
        self.hot_reload = service["hot_reload"]
        self.health = _checker(service)
        old = self.pipeline.service
        if (old["log_level"], old["log_file"]) != (service["log_level"], service["log_file"]):
            rlog.setup(service["log_level"], path=service["log_file"])

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.state == "running":
                self.health.sample(self.engine)

    def _signals(self, loop: asyncio.AbstractEventLoop, install: bool) -> None:
        def on_stop(name: str) -> None:
            _log.info("%s received", name)
            self.stop(name)

        def on_hup() -> None:
            if not self.hot_reload:
                _log.warning("SIGHUP received but Hot_Reload is off: ignored")
                return
            self.request_reload("SIGHUP")

        handlers: list[tuple[signal.Signals, Callable[..., None], tuple[Any, ...]]] = [
            (signal.SIGTERM, on_stop, ("SIGTERM",)), (signal.SIGINT, on_stop, ("SIGINT",)),
            (signal.SIGHUP, on_hup, ())]
        for sig, fn, args in handlers:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                if install:
                    loop.add_signal_handler(sig, fn, *args)
                else:
                    loop.remove_signal_handler(sig)
