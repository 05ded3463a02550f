"""``/api/v1/storage`` in Fluent Bit's JSON shape, from the engine's real storage state.

A memory chunk is an open or dispatched chunk without a file; a filesystem chunk has a file and
is "up" (its records are in memory, being delivered) or "down" (only on disk, in the backlog).
rillet adds a ``rillet`` object: the store's counters, disk budgets and dead letters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rillet.engine.engine import Engine


def chunk_counts(engine: Engine) -> dict[str, tuple[int, int, int, int, int]]:
    """Per input: (memory chunks, filesystem chunks up, down, busy chunks, busy bytes)."""
    per: dict[str, list[int]] = {rt.inst.name: [len(rt.open), 0, 0, 0, 0]
                                 for rt in engine.inputs}
    for flight in engine.flights:
        row = per.setdefault(flight.chunk.input_name, [0, 0, 0, 0, 0])
        row[1 if flight.stored is not None else 0] += 1
        row[3] += 1
        row[4] += flight.chunk.size
    store = engine.store
    if store is not None:
        for sc in store.backlog:
            per.setdefault(sc.input_name, [0, 0, 0, 0, 0])[2] += 1
    return {name: (r[0], r[1], r[2], r[3], r[4]) for name, r in per.items()}


def storage_v1(engine: Engine | None) -> dict[str, Any]:
    from rillet.monitor.render import human_size

    inputs: dict[str, Any] = {}
    totals = {"total_chunks": 0, "mem_chunks": 0, "fs_chunks": 0, "fs_chunks_up": 0,
              "fs_chunks_down": 0}
    if engine is None:
        return {"storage_layer": {"chunks": totals}, "input_chunks": inputs}
    per = chunk_counts(engine)
    store = engine.store
    limits = {rt.inst.name: rt.inst.mem_buf_limit for rt in engine.inputs}
    paused = {rt.inst.name: rt.paused for rt in engine.inputs}
    inflight = {rt.inst.name: rt.inflight for rt in engine.inputs}
    for name, (mem, up, down, busy, busy_size) in per.items():
        totals["mem_chunks"] += mem
        totals["fs_chunks_up"] += up
        totals["fs_chunks_down"] += down
        inputs[name] = {
            "status": {"overlimit": paused.get(name, False),
                       "mem_size": human_size(inflight.get(name, 0)),
                       "mem_limit": human_size(limits.get(name, 0))},
            "chunks": {"total": mem + up + down, "up": mem + up, "down": down, "busy": busy,
                       "busy_size": human_size(busy_size)},
        }
    totals["fs_chunks"] = totals["fs_chunks_up"] + totals["fs_chunks_down"]
    totals["total_chunks"] = totals["mem_chunks"] + totals["fs_chunks"]
    body: dict[str, Any] = {"storage_layer": {"chunks": totals}, "input_chunks": inputs}
    if store is not None:
        extra: dict[str, Any] = {"path": store.root, **store.stats,
                                 "disk_budget": {name: {"used": store.used[name], "limit": lim}
                                                 for name, lim in store.limits.items()},
                                 "write_fault": store.faulty}
        dead = engine.dead_letters
        if dead is not None:
            extra["dead_letters"] = {"path": dead.directory, "records": dead.written,
                                     "errors": dead.errors}
        body["rillet"] = extra
    return body
