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

Storage (``storage.path``, see docs/storage.md): a ``filesystem`` input's chunk is written to disk
when it is dispatched and acknowledged to the input at once; an ``overflow`` input's chunk is
written only under backpressure (its input has ``storage.spill_threshold`` bytes waiting, or the
chunk waits for a retry). Each output that finishes a stored chunk is recorded on disk; chunks
kept only on disk wait in the store's backlog and are loaded back as memory frees. A chunk that
cannot be written (disk error, budget full) is delivered from memory with memory semantics, and
its input is paused until the write succeeds or the chunk is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rillet import log as rlog
from rillet.engine.chunk import AckList, AckRef, Batch, Chunk
from rillet.engine.deadletter import DeadLetters
from rillet.engine.metrics import OutputState
from rillet.engine.pipeline import FilterInstance, InputInstance, OutputInstance, Pipeline
from rillet.engine.plugin import InputContext, Partial, Status
from rillet.engine.storage.store import StorageError, Store, StoredChunk
from rillet.outputs import formats

# Fluent Bit's soft chunk size (FLB_INPUT_CHUNK_FS_MAX_SIZE).
CHUNK_MAX = 2_048_000

_log = rlog.get("engine")
_input_log = rlog.get("input")
_storage_log = rlog.get("storage")
_PAUSE_LOG_PERIOD = 10.0
MEMORY, FILESYSTEM, OVERFLOW = 0, 1, 2
_MODES = {"memory": MEMORY, "filesystem": FILESYSTEM, "overflow": OVERFLOW}


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
    outputs: tuple[OutputInstance, ...] = ()
    stored: StoredChunk | None = None  # its chunk file, once written
    released: bool = False  # its bytes have left the input's in-flight total already
    blocked: bool = False  # a write failed: its input stays paused until it is written or done
    finished: list[str] | None = None  # outputs done with it (tracked when storage is on)


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
        opts = inst.opts
        self.mode = _MODES.get(inst.storage, MEMORY)
        self.spill_threshold: int = opts.get("storage.spill_threshold") or 0
        self.pause_on_overlimit: bool = bool(opts.get("storage.pause_on_chunks_overlimit"))
        self.blocks = 0  # flights whose chunk could not be written (storage backpressure)
        self.overlimit = False  # paused by storage.pause_on_chunks_overlimit

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
            self.pause("mem buf overlimit - buf size %dB exceeded limit %dB",
                       self.inflight, limit)
            # Nothing would free memory until the next Flush tick otherwise.
            self.engine._dispatch_open(self)

    def pause(self, why: str, *args: Any) -> None:
        if not self._resumed.is_set():
            return
        self._resumed.clear()
        self.paused_since = now = time.monotonic()
        self.pauses += 1
        self.inst.counters["ingestion_paused"] = 1
        # A busy input may pause many times a second: say so at most every 10 s.
        level = logging.DEBUG
        if now >= self._next_pause_log:
            level, self._next_pause_log = logging.WARNING, now + _PAUSE_LOG_PERIOD
        _input_log.log(level, "%s paused (" + why + "; %d pauses so far)", self.inst.name,
                       *args, self.pauses)

    def release(self, size: int) -> None:
        self.inflight -= size
        if not self._resumed.is_set():
            self.maybe_resume()

    def maybe_resume(self) -> None:
        """Resume unless something still holds the input: Mem_Buf_Limit, a chunk that could
        not be written, or storage.pause_on_chunks_overlimit."""
        limit = self.inst.mem_buf_limit
        if (self._resumed.is_set() or (limit and self.inflight >= limit) or self.blocks
                or self.overlimit):
            return
        self.paused_seconds += time.monotonic() - self.paused_since
        self.inst.counters["ingestion_paused"] = 0
        _input_log.debug("%s resume (buf size %dB, limit %dB)", self.inst.name, self.inflight,
                         limit)
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
        # Storage (docs/storage.md): chunk files, the backlog, dead letters.
        self.store: Store | None = None
        self.dead_letters: DeadLetters | None = None
        self.max_chunks_up: int = max(1, service.get("storage.max_chunks_up") or 128)
        self.backlog_mem_limit: int = service.get("storage.backlog.mem_limit") or 0
        self.fs_up = 0  # stored chunks in memory (flights with a chunk file)
        self.fs_up_bytes = 0
        self.blocked: set[_Flight] = set()
        self.persisted_at_exit = 0
        path = service.get("storage.path")
        if path:
            rejected = os.path.join(path, service["storage.rejected.path"])
            skip = os.path.relpath(rejected, path).split(os.sep)[0]
            self.store = Store(
                path, sync_full=service["storage.sync"] == "full",
                checksum=service["storage.checksum"],
                delete_irrecoverable=service["storage.delete_irrecoverable_chunks"],
                limits={o.name: o.total_limit_size for o in pipeline.outputs},
                drop_oldest={o.name for o in pipeline.outputs
                             if o.opts.get("storage.total_limit_action") == "drop_oldest"},
                skip_dirs=(skip,), log=_storage_log)
            if service["storage.keep.rejected"]:
                self.dead_letters = DeadLetters(rejected, service["storage.rejected.max_size"],
                                                _storage_log)
            # Shown from the start with storage on; otherwise only once something is rejected
            # (/api/v1/metrics keeps Fluent Bit's exact keys on a clean run).
            for out in pipeline.outputs:
                out.counters.setdefault("rejected_records", 0)

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
        if self.store is not None:
            # What a previous run left goes first (order per tag).
            self.store.scan()
            self._load_backlog()
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
        if self.store is not None:
            self.store.close()
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
            if self.store is not None:
                self._persist_at_exit()
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
            if self.store is not None:
                self._storage_tick()

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
        if rt.mode and self.store is not None and self._dispatch_stored(rt, chunk, outputs):
            return
        self._launch(rt, chunk, outputs, rt.born.pop(chunk.tag, None))

    def _launch(self, rt: _InputRuntime, chunk: Chunk, outputs: tuple[OutputInstance, ...],
                born: float | None, stored: StoredChunk | None = None) -> _Flight:
        now = time.time()
        flight = _Flight(chunk, rt, len(outputs), born=now if born is None else born,
                         outputs=outputs)
        if stored is not None:
            flight.stored = stored
            flight.released = True
            stored.up = True
            self.fs_up += 1
            self.fs_up_bytes += chunk.size
        elif self.store is not None:
            flight.finished = []
        self.flights.add(flight)
        n = len(chunk)
        for out in outputs:
            self._ostate[out].add_pending(n, now)
            self._spawn(flight, out, chunk, 0)
        return flight

    def _spawn(self, flight: _Flight, out: OutputInstance, chunk: Chunk, attempt: int) -> None:
        task = asyncio.create_task(self._deliver(flight, out, chunk, attempt))
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    # -- storage ------------------------------------------------------------------------------
    def _dispatch_stored(self, rt: _InputRuntime, chunk: Chunk,
                         outputs: tuple[OutputInstance, ...]) -> bool:
        """A filesystem or overflow input's chunk: write it when its mode says so. False when
        it goes on as a plain memory chunk."""
        store = self.store
        assert store is not None
        waiting = (chunk.input_name, chunk.tag) in store.backlog_keys  # keep order per tag
        full = self._up_full()
        if rt.mode == OVERFLOW and not waiting and not full and (
                rt.inflight < rt.spill_threshold or not self._behind(outputs)):
            return False
        born = rt.born.pop(chunk.tag, None)
        try:
            sc = store.persist(chunk, [o.name for o in outputs], self._evicted)
        except StorageError as exc:
            self._block(self._launch(rt, chunk, outputs, born), exc)
            return True
        self._acknowledge_stored(rt, chunk)
        if rt.mode == OVERFLOW or waiting or (full and not rt.pause_on_overlimit):
            store.queue(sc)  # down: on disk only until the backlog loads it
            self._load_backlog()
            return True
        self._launch(rt, chunk, outputs, born, sc)
        if rt.pause_on_overlimit and self.fs_up >= self.max_chunks_up:
            rt.overlimit = True
            rt.pause("storage.max_chunks_up reached: %d chunks up", self.fs_up)
        return True

    def _up_full(self) -> bool:
        """As many stored chunks are in memory as storage.max_chunks_up and
        storage.backlog.mem_limit allow."""
        return self.fs_up >= self.max_chunks_up or bool(
            self.backlog_mem_limit and self.fs_up_bytes >= self.backlog_mem_limit)

    def _behind(self, outputs: tuple[OutputInstance, ...]) -> bool:
        """Some output has had records pending for a whole Flush interval (not keeping up)."""
        now = time.time()
        limit = self.flush_interval
        for out in outputs:
            state = self._ostate[out]
            if state.pending > 0 and now - state.pending_since >= limit:
                return True
        return False

    def _acknowledge_stored(self, rt: _InputRuntime, chunk: Chunk) -> None:
        """The chunk is on disk: its records are final for the input (Fluent Bit's model)."""
        acks, chunk.acks = chunk.acks, []
        rt.release(chunk.size)
        for token in acks:
            self._ack(rt, token, True)

    def _spill(self, flight: _Flight) -> bool:
        """Write an in-memory flight for the outputs that still owe it; False if refused."""
        store = self.store
        assert store is not None
        done = flight.finished or ()
        routes = [o.name for o in flight.outputs if o.name not in done]
        try:
            sc = store.persist(flight.chunk, routes, self._evicted)
        except StorageError as exc:
            self._block(flight, exc)
            return False
        sc.up = True
        flight.stored = sc
        self.fs_up += 1
        self.fs_up_bytes += flight.chunk.size
        if not flight.released:
            flight.released = True
            self._acknowledge_stored(flight.source, flight.chunk)
        self._unblock(flight)
        return True

    def _block(self, flight: _Flight, exc: StorageError) -> None:
        if flight.blocked:
            return
        flight.blocked = True
        self.blocked.add(flight)
        rt = flight.source
        rt.blocks += 1
        rt.inst.counters.add("storage_blocked_chunks")
        rt.pause("storage: %s", str(exc))

    def _unblock(self, flight: _Flight) -> None:
        if not flight.blocked:
            return
        flight.blocked = False
        self.blocked.discard(flight)
        rt = flight.source
        rt.blocks -= 1
        rt.maybe_resume()

    def _evicted(self, sc: StoredChunk, output: str) -> None:
        """drop_oldest made room on disk by giving up a waiting chunk for ``output``."""
        out = next((o for o in self.pipeline.outputs if o.name == output), None)
        if out is not None:
            out.counters["dropped_records"] += sc.records
            out.counters.add("storage_evicted_records", sc.records)
        _storage_log.warning("storage.total_limit_size of %s is full: oldest chunk %s "
                             "(%d records) dropped for it (storage.total_limit_action "
                             "drop_oldest)", output, sc.path, sc.records)

    def _storage_tick(self) -> None:
        """Retry the writes that failed, then load backlog chunks into free memory."""
        for flight in sorted(self.blocked, key=lambda f: f.chunk.id):
            if not self._spill(flight):
                break
        self._load_backlog()

    def _load_backlog(self) -> None:
        store = self.store
        if store is None or not self.inputs:
            return
        while store.backlog and not self._up_full():
            got = store.take()
            if got is None:
                return
            sc, times, bodies = got
            rt = next((r for r in self.inputs if r.inst.name == sc.input_name), self.inputs[0])
            chunk = Chunk(sc.tag, sc.input_name, times, bodies, sc.file_size)
            outputs = tuple(o for o in self.pipeline.outputs if o.name in sc.owed)
            if len(outputs) != len(sc.owed):
                gone = sorted(sc.owed - {o.name for o in outputs})
                if outputs:  # the others still owe it: the gone ones are done with it
                    for name in gone:
                        store.done(sc, name)
                else:  # owed only to outputs that are gone: route it by tag again
                    outputs = self._route(rt, sc.tag).outputs
                    store.reroute(sc, [o.name for o in outputs])
                _storage_log.warning("chunk %s is owed to outputs that no longer exist (%s): "
                                     "sent to %s", sc.path, ", ".join(gone),
                                     ", ".join(o.name for o in outputs) or "nobody (deleted)")
                if not outputs:
                    continue
            self._launch(rt, chunk, outputs, None, sc)

    def _persist_at_exit(self) -> None:
        """Grace expired: write what is still owed, then acknowledge it to its inputs."""
        store = self.store
        assert store is not None
        saved = failed = 0
        for flight in sorted(self.flights, key=lambda f: f.chunk.id):
            if flight.stored is not None:
                continue
            if self._spill(flight):
                saved += 1
            else:
                failed += 1
        self.persisted_at_exit = saved
        if saved or failed:
            _storage_log.info("shutdown: %d undelivered chunks written to %s for the next run%s",
                              saved, store.root, f"; {failed} could not be written and were "
                              "not acknowledged" if failed else "")

    def _reject(self, flight: _Flight, out: OutputInstance, chunk: Chunk,
                segments: list[tuple[int, int, str]]) -> None:
        """Records ``out`` gave up on: counted, and kept as dead letters when asked."""
        out.counters.add("rejected_records", sum(b - a for a, b, _ in segments))
        dead = self.dead_letters
        if dead is None:
            return
        for start, stop, reason in segments:
            if not dead.write(out.name, chunk.input_name, chunk.tag, reason,
                              chunk.times[start:stop], chunk.bodies[start:stop]):
                out.counters.add("dead_letter_errors")

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
        retry, errors, reasons, segments = _split(result, n)
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
            self._reject(flight, out, chunk, segments)
        if retry:
            sub = chunk if retry == [(0, n)] else chunk.subset(retry)
            limit = out.retry_limit
            if limit is None or attempt < limit:
                state.settle(n - len(sub))
                self._schedule_retry(flight, out, sub, attempt + 1)
                if (flight.stored is None and not flight.blocked
                        and flight.source.mode == OVERFLOW and self.store is not None):
                    self._spill(flight)  # waiting for a retry is backpressure: spill
                return
            counters["retries_failed"] += 1
            counters["dropped_records"] += len(sub)
            flight.dropped += len(sub)
            _log.warning("chunk '%d' cannot be retried: task_id=%d, input=%s > output=%s, "
                         "%d records dropped", chunk.id, chunk.id, flight.source.inst.name,
                            out.name, len(sub))
            self._reject(flight, out, sub, [(0, len(sub), f"retry limit exhausted after "
                                                          f"{attempt} retries")])
        state.settle(n)
        self._route_done(flight, out)

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

    def _route_done(self, flight: _Flight, out: OutputInstance) -> None:
        flight.pending -= 1
        stored = flight.stored
        if stored is not None:
            assert self.store is not None
            self.store.done(stored, out.name)
        elif flight.finished is not None:
            flight.finished.append(out.name)
        if flight.pending > 0:
            return
        self.flights.discard(flight)
        rt = flight.source
        if not flight.released:
            rt.release(flight.chunk.size)
        if flight.blocked:
            self._unblock(flight)
        complete = flight.dropped == 0
        for token in flight.chunk.acks:
            self._ack(rt, token, complete)
        if stored is not None:
            self.fs_up -= 1
            self.fs_up_bytes -= flight.chunk.size
            if self.fs_up < self.max_chunks_up:
                for other in self.inputs:
                    if other.overlimit:
                        other.overlimit = False
                        other.maybe_resume()
            self._load_backlog()
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


Ranges = list[tuple[int, int]]


def _split(result: Any, n: int) -> tuple[Ranges, Ranges, list[str], list[tuple[int, int, str]]]:
    """Normalise a flush result to (retry ranges, error ranges, error reasons, error segments
    with their reason)."""
    if result == Status.OK:
        return [], [], [], []
    if isinstance(result, Partial):
        retry: Ranges = []
        errors: Ranges = []
        reasons: list[str] = []
        segments: list[tuple[int, int, str]] = []
        for start, stop, status, reason in sorted(result.segments):
            start, stop = max(0, start), min(n, stop)
            if stop <= start or status == Status.OK:
                continue
            if status == Status.RETRY:
                retry.append((start, stop))
            else:
                errors.append((start, stop))
                segments.append((start, stop, reason or "the output rejected these records"))
                if reason:
                    reasons.append(reason)
        return _merge(retry), _merge(errors), reasons, segments
    if result == Status.RETRY:
        return [(0, n)], [], [], []
    return [], [(0, n)], [], [(0, n, "the output answered ERROR")]


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
