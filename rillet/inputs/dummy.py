"""``dummy`` input: generates a fixed record (Fluent Bit's in_dummy).

Every interval (``1/Rate`` seconds, or ``Interval_Sec``/``Interval_Nsec``) it generates ``Copies``
records; after ``Samples`` intervals it stops. The record is serialized once at start and the
same bytes are reused, so the engine's own overhead is what a dummy pipeline measures.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch
from rillet.engine.plugin import Input, InputContext, register

DEFAULT_MESSAGE = '{"message":"dummy"}'
# When the loop falls behind, due intervals are merged into one batch of at most this many
# seconds' worth and this many records (keeps batches bounded, like a file read).
_MAX_CATCH_UP_SECONDS = 0.1
_MAX_BATCH_RECORDS = 10_000
# Behind by more than this (e.g. after a pause): skip the missed ticks, as Fluent Bit's paused
# timer does, rather than bursting.
_MAX_LAG_SECONDS = 1.0


def _json_object(text: str) -> str | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {exc}"
    return None if isinstance(value, dict) else "must be a JSON object"


@register
class Dummy(Input):
    name = "dummy"
    description = "Generate dummy data"
    options = (
        Option("dummy", T.STR, DEFAULT_MESSAGE, "the record to generate, a JSON object",
               check=_json_object),
        Option("rate", T.INT, "1", "intervals per second"),
        Option("interval_sec", T.INT, "0", "seconds between intervals (overrides rate)"),
        Option("interval_nsec", T.INT, "0", "nanoseconds between intervals (overrides rate)"),
        Option("samples", T.INT, "0", "stop after this many intervals (0 = never)"),
        Option("copies", T.INT, "1", "records generated per interval"),
        Option("start_time_sec", T.INT, "-1", "base timestamp, seconds (-1 = now)"),
        Option("start_time_nsec", T.INT, "-1", "base timestamp, nanoseconds (-1 = now)"),
        Option("fixed_timestamp", T.BOOL, "off", "every record gets the base timestamp"),
        Option("flush_on_startup", T.BOOL, "false", "generate the first interval at start"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        self.body = orjson.dumps(orjson.loads(o["dummy"]))
        sec, nsec = o["interval_sec"], o["interval_nsec"]
        if sec < 0 or nsec < 0:
            sec, nsec = 0, 0
        if sec > 0 or nsec > 0:
            self.interval = sec + nsec / 1e9
        elif o["rate"] > 1:
            self.interval = 1.0 / o["rate"]
        else:
            self.interval = 1.0
        if o["copies"] < 1:
            raise ValueError("copies: must be at least 1")
        start_sec, start_nsec = o["start_time_sec"], o["start_time_nsec"]
        self.base_ns: int | None = None
        if start_sec >= 0 or start_nsec >= 0:
            self.base_ns = max(start_sec, 0) * 1_000_000_000 + max(start_nsec, 0)
        self.generated = 0

    def _timestamp(self, started_ns: int) -> int:
        now = time.time_ns()
        if self.opts["fixed_timestamp"]:
            return self.base_ns if self.base_ns is not None else started_ns
        if self.base_ns is not None:
            return self.base_ns + (now - started_ns)
        return now

    async def run(self, ctx: InputContext) -> None:
        interval = self.interval
        samples = self.opts["samples"]
        copies = self.opts["copies"]
        body, size = self.body, len(self.body)
        tag = self.opts["tag"] or self.instance
        started_ns = time.time_ns()
        clock = time.monotonic
        next_tick = clock() + (0.0 if self.opts["flush_on_startup"] else interval)
        max_due = max(1, min(int(_MAX_CATCH_UP_SECONDS / interval),
                             _MAX_BATCH_RECORDS // copies))
        done = 0
        while not samples or done < samples:
            now = clock()
            if now < next_tick:
                await asyncio.sleep(next_tick - now)
                now = clock()
            if now - next_tick > _MAX_LAG_SECONDS:
                next_tick = now
            due = min(int((now - next_tick) / interval) + 1, max_due)
            if samples:
                due = min(due, samples - done)
            next_tick += due * interval
            done += due
            n = due * copies
            ts = self._timestamp(started_ns)
            self.generated += n
            await ctx.emit(Batch(tag, [ts] * n, [body] * n, size * n))
