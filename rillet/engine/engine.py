"""The engine: ingestion, filters, chunks, flush scheduling, delivery, retries, acks, shutdown.

Data flow for one input batch (all in one event loop, one batch at a time):

1. the input awaits ``ctx.emit(batch)``;
2. the filters whose Match fits the tag run in declaration order, each over the whole batch;
3. the records join the input's open chunk for that tag; a chunk is dispatched when it reaches
   ``CHUNK_MAX`` bytes, on every ``Flush`` tick, and at once when its input is paused;
4. a dispatched chunk is delivered to every output whose Match fits, each on its own (a slow or
   failing output never holds back another); outputs answer per record range, and only the
   records that asked to be retried are retried, after a full-jitter backoff;
5. when every matching output has finished with a chunk (delivered or given up), each batch in it
   is acknowledged to its input (``Input.on_ack``) and its bytes leave the input's in-flight total.

Backpressure: an input with ``Mem_Buf_Limit`` is paused once its in-flight bytes reach the limit
(the write that crosses it is accepted, as in Fluent Bit) and resumed the moment they drop below,
without waiting for a timer. ``emit`` blocks while the input is paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rillet import log as rlog
from rillet.engine.chunk import AckList, AckRef, Batch, Chunk
from rillet.engine.metrics import OutputState
from rillet.engine.pipeline import FilterInstance, InputInstance, OutputInstance, Pipeline
from rillet.engine.plugin import InputContext, Partial, Status
from rillet.outputs import formats

# Fluent Bit's soft chunk size (FLB_INPUT_CHUNK_FS_MAX_SIZE).
CHUNK_MAX = 2_048_000

_log = rlog.get("engine")
_input_log = rlog.get("input")
_PAUSE_LOG_PERIOD = 10.0


@dataclass(slots=True, eq=False)
class _Route:
    filters: tuple[FilterInstance, ...]
    outputs: tuple[OutputInstance, ...]
    holds: bool = False  # a filter keeps records between batches: share ack tokens (AckRef)


@dataclass(slots=True, eq=False)
class _Flight:
    """A dispatched chunk until every output is done with it."""

    chunk: Chunk
    source: _InputRuntime
    pending: int
    dropped: int = 0
    born: float = 0.0  # time.time() when the chunk was opened (for the latency histogram)


@dataclass(slots=True, eq=False)
class _Retry:
    flight: _Flight
    output: OutputInstance
    chunk: Chunk
    attempt: int
    handle: asyncio.TimerHandle | None = None


class _InputRuntime(InputContext):
    """Per-input state; also the context handed to the input plugin."""

    def __init__(self, engine: Engine, inst: InputInstance) -> None:
        self.engine = engine
        self.inst = inst
        self.routes: dict[str, _Route] = {}
        self.open: dict[str, Chunk] = {}
        self.inflight = 0
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.paused_since = 0.0
        self.paused_seconds = 0.0
        self.task: asyncio.Task[None] | None = None
        self.pauses = 0
        self.born: dict[str, float] = {}  # tag -> time.time() its open chunk was created
        self._next_pause_log = 0.0

    # -- InputContext -------------------------------------------------------------------------
    async def emit(self, batch: Batch) -> None:
        if not self._resumed.is_set():
            await self._resumed.wait()
        self.engine._ingest(self, batch)
        if not self._resumed.is_set():
            await self._resumed.wait()

    async def wait_resumed(self) -> None:
        await self._resumed.wait()

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def request_exit(self) -> None:
        self.engine.request_stop(f"{self.inst.name} asked to exit")

    # -- backpressure ---------------------------------------------------------------------------
    def add_inflight(self, size: int) -> None:
        self.inflight += size
        limit = self.inst.mem_buf_limit
        if limit and self.inflight >= limit and self._resumed.is_set():
            self._resumed.clear()
            self.paused_since = now = time.monotonic()
            self.pauses += 1
            self.inst.counters["ingestion_paused"] = 1
            # A busy input may pause many times a second: say so at most every 10 s.
            level = logging.DEBUG
            if now >= self._next_pause_log:
                level, self._next_pause_log = logging.WARNING, now + _PAUSE_LOG_PERIOD
            _input_log.log(level, "%s paused (mem buf overlimit - buf size %dB exceeded limit "
                           "%dB; %d pauses so far)", self.inst.name, self.inflight, limit,
                           self.pauses)
            # Nothing would free memory until the next Flush tick otherwise.
            self.engine._dispatch_open(self)

    def release(self, size: int) -> None:
        self.inflight -= size
        if not self._resumed.is_set() and self.inflight < self.inst.mem_buf_limit:
            self.paused_seconds += time.monotonic() - self.paused_since
            self.inst.counters["ingestion_paused"] = 0
            _input_log.debug("%s resume (mem buf overlimit - buf size %dB now below limit "
                             "%dB)", self.inst.name, self.inflight, self.inst.mem_buf_limit)
            self._resumed.set()


@dataclass
class ShutdownReport:
    undelivered_chunks: int = 0
    undelivered_records: int = 0


class Engine:
    """Runs a :class:`Pipeline` until stopped; see the module docstring."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        service = pipeline.service
        self.flush_interval: float = service["flush"]
        self.grace: float = service["grace"]
        self.sched_base: float = service["scheduler.base"]
        self.sched_cap: float = service["scheduler.cap"]
        self.inputs: list[_InputRuntime] = []
        self.flights: set[_Flight] = set()
        self.retries: set[_Retry] = set()
        self.deliveries: set[asyncio.Task[None]] = set()
        self._semaphores: dict[OutputInstance, asyncio.Semaphore] = {}
        self._stop = asyncio.Event()
        self._draining = False
        self._idle = asyncio.Event()
        self.report = ShutdownReport()
        self.stop_reason = ""
        self.started = asyncio.Event()
        self.started_at = time.time()
        # Per-output delivery progress, read by the monitoring API (rillet/monitor/).
        self.output_states: dict[str, OutputState] = {o.name: OutputState()
                                                      for o in pipeline.outputs}
        self._ostate: dict[OutputInstance, OutputState] = {
            o: self.output_states[o.name] for o in pipeline.outputs}
        formats.configure(escape_unicode=service["json.escape_unicode"],
                          convert_nan_to_null=service["json.convert_nan_to_null"])

    # -- lifecycle ----------------------------------------------------------------------------
    async def run(self) -> int:
        """Start every plugin, run until a stop is requested, drain, and return the exit code."""
        p = self.pipeline
        started: list[FilterInstance | OutputInstance] = []
        startable: list[FilterInstance | OutputInstance] = [*p.outputs, *p.filters]
        for plug in startable:
            try:
                await plug.plugin.start()
            except Exception as exc:
                plug.log.error("cannot start: %s", exc)
                await self._stop_plugins(started)
                return 1
            started.append(plug)
        for out in p.outputs:
            self._semaphores[out] = asyncio.Semaphore(out.workers)
        for inst in p.inputs:
            rt = _InputRuntime(self, inst)
            self.inputs.append(rt)
        for rt in self.inputs:
            rt.task = asyncio.create_task(self._run_input(rt), name=f"input {rt.inst.name}")
        ticker = asyncio.create_task(self._ticker(), name="flush ticker")
        _log.info("started (%d inputs, %d filters, %d outputs)",
                  len(p.inputs), len(p.filters), len(p.outputs))
        self.started.set()
        await self._stop.wait()
        _log.info("stopping: %s", self.stop_reason or "requested")
        await self._stop_inputs()
        self._tick_filters(final=True)
        await self._drain()
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await self._stop_plugins([*p.filters, *p.outputs])
        _log.info("stopped")
        return 0

    @staticmethod
    async def _stop_plugins(instances: Iterable[FilterInstance | OutputInstance]) -> None:
        for inst in instances:
            try:
                await inst.plugin.stop()
            except Exception:
                inst.log.exception("error while stopping")

    @property
    def stopping(self) -> bool:
        """A stop was requested: inputs are stopping or the engine is draining."""
        return self._stop.is_set()

    def request_stop(self, reason: str = "") -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    async def _run_input(self, rt: _InputRuntime) -> None:
        try:
            await rt.inst.plugin.run(rt)
        except asyncio.CancelledError:
            raise
        except Exception:
            rt.inst.log.exception("input failed")
            rt.inst.counters.add("errors")

    async def _stop_inputs(self) -> None:
        for rt in self.inputs:
            if rt.task is not None and not rt.task.done():
                rt.task.cancel()
        for rt in self.inputs:
            if rt.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await rt.task
            # A paused input must not keep a blocked emit waiting forever.
            rt._resumed.set()
            try:
                await rt.inst.plugin.stop()
            except Exception:
                rt.inst.log.exception("error while stopping")

    async def _drain(self) -> None:
        """Deliver what is buffered until Grace expires (retries go at once, not after backoff)."""
        self._draining = True
        for rt in self.inputs:
            self._dispatch_open(rt)
        for retry in list(self.retries):
            self._fire_retry_now(retry)
        deadline = time.monotonic() + self.grace
        while self.flights and time.monotonic() < deadline:
            self._idle.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        if self.flights:
            records = sum(len(f.chunk) for f in self.flights)
            self.report.undelivered_chunks = len(self.flights)
            self.report.undelivered_records = records
            _log.warning("grace period of %gs expired: %d chunks (%d records) not delivered",
                         self.grace, len(self.flights), records)
        for retry in list(self.retries):
            if retry.handle is not None:
                retry.handle.cancel()
        for task in list(self.deliveries):
            task.cancel()
        if self.deliveries:
            await asyncio.gather(*self.deliveries, return_exceptions=True)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            self._tick_filters(final=False)
            for rt in self.inputs:
                if rt.open:
                    self._dispatch_open(rt)

    # -- ingestion ----------------------------------------------------------------------------
    def _route(self, rt: _InputRuntime, tag: str) -> _Route:
        route = rt.routes.get(tag)
        if route is None:
            p = self.pipeline
            route = _Route(tuple(f for f in p.filters if f.matcher(tag)),
                           tuple(o for o in p.outputs if o.matcher(tag)))
            route.holds = any(f.plugin.holds_records for f in route.filters)
            rt.routes[tag] = route
        return route

    def _ingest(self, rt: _InputRuntime, batch: Batch,
                resume: FilterInstance | None = None) -> None:
        """Run ``batch`` through its route's filters (those after ``resume`` when that filter
        releases held records) into the input's open chunk."""
        route = self._route(rt, batch.tag)
        filters = route.filters
        if resume is None:
            counters = rt.inst.counters
            counters["records"] += len(batch.bodies)
            counters["bytes"] += batch.size
            if route.holds and batch.ack is not None and type(batch.ack) is not AckRef:
                batch.ack = AckRef(batch.ack, rt)
        else:
            filters = filters[filters.index(resume) + 1:]
        for flt in filters:
            fc = flt.counters
            fc["records"] += len(batch.bodies)
            fc["bytes"] += batch.size
            before, before_size = len(batch.bodies), batch.size
            try:
                batch = flt.plugin.filter(batch)
            except Exception:
                # A filter bug must not lose the batch: pass it on unfiltered, loudly.
                flt.log.exception("filter failed, records passed on unchanged")
                fc.add("errors")
                continue
            after = len(batch.bodies)
            if after < before:
                fc["drop_records"] += before - after
                fc["drop_bytes"] += max(0, before_size - batch.size)
            elif after > before:
                fc["add_records"] += after - before
            if not after:
                break
        if not batch.bodies or not route.outputs:
            # Filtered out or routed nowhere: final right away (Fluent Bit drops unmatched data).
            if batch.ack is not None:
                self._ack(rt, batch.ack, True)
            return
        chunk = rt.open.get(batch.tag)
        if chunk is None:
            chunk = rt.open[batch.tag] = Chunk(batch.tag, rt.inst.name)
            rt.born[batch.tag] = time.time()
        chunk.append(batch)
        rt.add_inflight(batch.size)
        # add_inflight may have dispatched the open chunks already (the input just paused).
        if chunk.size >= CHUNK_MAX and rt.open.get(batch.tag) is chunk:
            del rt.open[batch.tag]
            self._dispatch(rt, chunk)

    # -- delivery -----------------------------------------------------------------------------
    def _dispatch_open(self, rt: _InputRuntime) -> None:
        chunks = list(rt.open.values())
        rt.open.clear()
        for chunk in chunks:
            self._dispatch(rt, chunk)

    def _dispatch(self, rt: _InputRuntime, chunk: Chunk) -> None:
        outputs = self._route(rt, chunk.tag).outputs
        now = time.time()
        flight = _Flight(chunk, rt, len(outputs), born=rt.born.pop(chunk.tag, now))
        self.flights.add(flight)
        n = len(chunk)
        for out in outputs:
            self._ostate[out].add_pending(n, now)
            self._spawn(flight, out, chunk, 0)

    def _spawn(self, flight: _Flight, out: OutputInstance, chunk: Chunk, attempt: int) -> None:
        task = asyncio.create_task(self._deliver(flight, out, chunk, attempt))
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    async def _deliver(self, flight: _Flight, out: OutputInstance, chunk: Chunk,
                       attempt: int) -> None:
        counters = out.counters
        async with self._semaphores[out]:
            try:
                result = await out.plugin.flush(chunk)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                out.log.exception("flush failed: %s", exc)
                result = Status.RETRY
        n = len(chunk)
        retry, errors, reasons = _split(result, n)
        failed = sum(b - a for a, b in retry) + sum(b - a for a, b in errors)
        ok = n - failed
        state = self._ostate[out]
        if ok:
            counters["proc_records"] += ok
            counters["proc_bytes"] += chunk.size * ok // n
            now = time.time()
            state.delivered(flight.source.inst.name, now, max(0.0, now - flight.born))
        if errors:
            dropped = sum(b - a for a, b in errors)
            counters["errors"] += 1
            counters["dropped_records"] += dropped
            flight.dropped += dropped
            out.log.error("chunk '%d' (%d records): %d records could not be delivered and are "
                          "dropped%s", chunk.id, n, dropped,
                          f": {'; '.join(reasons)}" if reasons else "")
        if retry:
            sub = chunk if retry == [(0, n)] else chunk.subset(retry)
            limit = out.retry_limit
            if limit is None or attempt < limit:
                state.settle(n - len(sub))
                self._schedule_retry(flight, out, sub, attempt + 1)
                return
            counters["retries_failed"] += 1
            counters["dropped_records"] += len(sub)
            flight.dropped += len(sub)
            _log.warning("chunk '%d' cannot be retried: task_id=%d, input=%s > output=%s, "
                         "%d records dropped", chunk.id, chunk.id, flight.source.inst.name,
                            out.name, len(sub))
        state.settle(n)
        self._route_done(flight)

    def _schedule_retry(self, flight: _Flight, out: OutputInstance, chunk: Chunk,
                        attempt: int) -> None:
        out.counters["retries"] += 1
        out.counters["retried_records"] += len(chunk)
        retry = _Retry(flight, out, chunk, attempt)
        self.retries.add(retry)
        if self._draining:
            wait = min(self.backoff(attempt), 0.5)
        else:
            wait = self.backoff(attempt)
            _log.warning("failed to flush chunk '%d', retry in %.3g seconds: task_id=%d, "
                         "input=%s > output=%s", chunk.id, wait, chunk.id,
                         flight.source.inst.name, out.name)
        retry.handle = asyncio.get_running_loop().call_later(wait, self._fire_retry_now, retry)

    def _fire_retry_now(self, retry: _Retry) -> None:
        if retry not in self.retries:
            return
        self.retries.discard(retry)
        if retry.handle is not None:
            retry.handle.cancel()
        self._spawn(retry.flight, retry.output, retry.chunk, retry.attempt)

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [base, min(cap, base * 2**attempt)] (Fluent Bit's scheduler)."""
        base, cap = self.sched_base, self.sched_cap
        top = min(cap, base * (2 ** min(attempt, 62)))
        return random.uniform(base, max(base, top))

    def _route_done(self, flight: _Flight) -> None:
        flight.pending -= 1
        if flight.pending > 0:
            return
        self.flights.discard(flight)
        rt = flight.source
        rt.release(flight.chunk.size)
        complete = flight.dropped == 0
        for token in flight.chunk.acks:
            self._ack(rt, token, complete)
        if not self.flights:
            self._idle.set()

    def _ack(self, rt: _InputRuntime, token: Any, complete: bool) -> None:
        """Hand ``token`` back to its input; a shared AckRef only when its last holder is done."""
        if type(token) is AckList:
            for item in token:
                self._ack(rt, item, complete)
            return
        if type(token) is AckRef:
            if not token.release(complete):
                return
            if isinstance(token.owner, _InputRuntime):
                rt = token.owner
            complete, token = token.complete, token.token
        try:
            rt.inst.plugin.on_ack(token, complete)
        except Exception:
            rt.inst.log.exception("acknowledgement handler failed")

    def _tick_filters(self, final: bool) -> None:
        """Let filters that hold records release them (by time, or all when ``final``)."""
        for flt in self.pipeline.filters:
            if not flt.plugin.holds_records:
                continue
            try:
                batches = flt.plugin.tick(final)
            except Exception:
                flt.log.exception("filter tick failed")
                flt.counters.add("errors")
                continue
            for batch in batches:
                # Continue on the route of an input that sent this tag through this filter.
                rt = next((r for r in self.inputs if flt in self._routed(r, batch.tag)), None)
                if rt is None:
                    rt = self.inputs[0] if self.inputs else None
                if rt is None:
                    continue
                if flt in self._route(rt, batch.tag).filters:
                    self._ingest(rt, batch, resume=flt)
                elif batch.ack is not None:
                    self._ack(rt, batch.ack, True)

    @staticmethod
    def _routed(rt: _InputRuntime, tag: str) -> tuple[FilterInstance, ...]:
        route = rt.routes.get(tag)
        return route.filters if route is not None else ()

    # -- introspection ------------------------------------------------------------------------
    def input_state(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        return {rt.inst.name: {
            "inflight_bytes": rt.inflight,
            "paused": rt.paused,
            "paused_seconds": rt.paused_seconds + (now - rt.paused_since if rt.paused else 0.0),
            "mem_buf_limit": rt.inst.mem_buf_limit,
        } for rt in self.inputs}


def _split(result: Any, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]],
                                          list[str]]:
    """Normalise a flush result to (retry ranges, error ranges, error reasons)."""
    if result == Status.OK:
        return [], [], []
    if isinstance(result, Partial):
        retry: list[tuple[int, int]] = []
        errors: list[tuple[int, int]] = []
        reasons: list[str] = []
        for start, stop, status, reason in sorted(result.segments):
            start, stop = max(0, start), min(n, stop)
            if stop <= start or status == Status.OK:
                continue
            if status == Status.RETRY:
                retry.append((start, stop))
            else:
                errors.append((start, stop))
                if reason:
                    reasons.append(reason)
        return _merge(retry), _merge(errors), reasons
    if result == Status.RETRY:
        return [(0, n)], [], []
    return [], [(0, n)], []


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, stop in ranges:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def install_signal_handlers(engine: Engine, loop: asyncio.AbstractEventLoop,
                            logger: logging.Logger = _log) -> None:
    """SIGTERM / SIGINT: stop reading, deliver what is buffered within Grace, exit 0."""
    import signal

    def _on_signal(signame: str) -> None:
        logger.info("%s received", signame)
        engine.request_stop(signame)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _on_signal, sig.name)
