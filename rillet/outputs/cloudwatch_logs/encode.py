"""Records -> CloudWatch Logs events -> PutLogEvents request bodies.

PutLogEvents limits (AWS API reference), enforced here because nothing downstream does:

- at most 10,000 events and 1,048,576 bytes per request, counting each event as its message's
  UTF-8 bytes plus 26;
- events in chronological order, and a request spanning less than 24 hours;
- an event message of at most 1,048,550 bytes (1 MiB minus the 26): longer ones are truncated at
  a UTF-8 character boundary (counted);
- no empty messages (skipped and counted).

The message is the record's JSON text (serialized bodies pass through untouched), or with
``log_key`` that key's value: strings raw, anything else as JSON.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import orjson

from rillet.engine.chunk import Body

MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENTS = 10_000
MAX_EVENT_BYTES = MAX_BATCH_BYTES - EVENT_OVERHEAD  # 1,048,550
MAX_SPAN_MS = 24 * 3600 * 1000

_dumps = orjson.dumps
_loads = orjson.loads
_MISSING: Any = object()


@dataclass(slots=True)
class Events:
    """The events of one destination, in send order (sorted by timestamp)."""

    idx: list[int] = field(default_factory=list)  # record index in the chunk
    ts: list[int] = field(default_factory=list)  # milliseconds
    msgs: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # UTF-8 bytes + 26
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (record index, reason)
    truncated: int = 0
    empty: int = 0

    def __len__(self) -> int:
        return len(self.idx)


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """``data`` cut to at most ``limit`` bytes without splitting a UTF-8 character."""
    if len(data) <= limit:
        return data
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


def encode(times: Sequence[int], bodies: Sequence[Body], indices: Sequence[int] | None,
           log_key: str | None = None, max_event: int = MAX_EVENT_BYTES) -> Events:
    """Events for the records at ``indices`` (all when None), sorted by time."""
    if log_key is None:
        ev = _encode_whole(times, bodies, indices, max_event)
        if ev is not None:
            _sort(ev)
            return ev
    ev = Events()
    idx_out, ts_out, msgs_out, sizes_out = ev.idx, ev.ts, ev.msgs, ev.sizes
    skipped = ev.skipped
    dumps, loads = _dumps, _loads
    missing = _MISSING
    order: Sequence[int] = range(len(bodies)) if indices is None else indices
    for i in order:
        body = bodies[i]
        try:
            if log_key is None:
                data = body if type(body) is bytes else dumps(body)
            else:
                record = loads(body) if type(body) is bytes else body
                value = record.get(log_key, missing) if type(record) is dict else missing
                if value is missing:
                    skipped.append((i, f"could not find log_key '{log_key}' in record"))
                    continue
                if type(value) is str:
                    data = value.encode("utf-8", "surrogateescape")
                else:
                    data = dumps(value)
        except (orjson.JSONEncodeError, orjson.JSONDecodeError) as exc:
            skipped.append((i, f"record cannot be encoded: {exc}"))
            continue
        n = len(data)
        if n == 0:
            ev.empty += 1
            skipped.append((i, "empty log message"))
            continue
        if n > max_event:
            data = truncate_utf8(data, max_event)
            n = len(data)
            ev.truncated += 1
        try:
            msg = data.decode()
        except UnicodeDecodeError:
            msg = data.decode("utf-8", "replace")
            n = len(msg.encode())
            if n > max_event:
                msg = truncate_utf8(msg.encode(), max_event).decode()
                n = len(msg.encode())
        idx_out.append(i)
        ts_out.append(times[i] // 1_000_000)
        msgs_out.append(msg)
        sizes_out.append(n + EVENT_OVERHEAD)
    _sort(ev)
    return ev


def _encode_whole(times: Sequence[int], bodies: Sequence[Body], indices: Sequence[int] | None,
                  max_event: int) -> Events | None:
    """The common case in list comprehensions: whole records, none empty, oversized or
    unencodable. None when any record needs the careful path."""
    dumps = _dumps
    if indices is None:
        idx = list(range(len(bodies)))
        picked: Sequence[Body] = bodies
        ptimes: Sequence[int] = times
    else:
        idx = list(indices)
        picked = [bodies[i] for i in idx]
        ptimes = [times[i] for i in idx]
    try:
        datas = [b if type(b) is bytes else dumps(b) for b in picked]
        msgs = [d.decode() for d in datas]
    except (orjson.JSONEncodeError, UnicodeDecodeError):
        return None
    lengths = [len(d) for d in datas]
    if lengths and (max(lengths) > max_event or min(lengths) == 0):
        return None
    overhead = EVENT_OVERHEAD
    return Events(idx=idx, ts=[t // 1_000_000 for t in ptimes], msgs=msgs,
                  sizes=[n + overhead for n in lengths])


def _sort(ev: Events) -> None:
    ts = ev.ts
    if ts == sorted(ts):
        return
    order = sorted(range(len(ts)), key=ts.__getitem__)  # stable: equal times keep order
    ev.idx = [ev.idx[k] for k in order]
    ev.ts = [ts[k] for k in order]
    ev.msgs = [ev.msgs[k] for k in order]
    ev.sizes = [ev.sizes[k] for k in order]


def split(ev: Events, max_bytes: int = MAX_BATCH_BYTES, max_events: int = MAX_EVENTS,
          max_span_ms: int = MAX_SPAN_MS) -> list[tuple[int, int]]:
    """Slices of ``ev`` (sorted by time) that each fit one PutLogEvents request."""
    n = len(ev.ts)
    if n == 0:
        return []
    ts = ev.ts
    cum = list(accumulate(ev.sizes))
    if n <= max_events and ts[-1] - ts[0] < max_span_ms and cum[-1] <= max_bytes:
        return [(0, n)]
    out: list[tuple[int, int]] = []
    start, base = 0, 0
    while start < n:
        stop = bisect_right(cum, base + max_bytes, start)  # bytes
        stop = max(stop, start + 1)  # an event is never larger than a request (truncated)
        stop = min(stop, start + max_events,
                   bisect_left(ts, ts[start] + max_span_ms, start))  # count, span
        out.append((start, stop))
        base = cum[stop - 1]
        start = stop
    return out


def request_body(group: str, stream: str, ev: Events, start: int, stop: int) -> bytes:
    """The PutLogEvents JSON for events ``start:stop`` (no sequence token: AWS ignores them
    since January 2023)."""
    events = [{"timestamp": t, "message": m}
              for t, m in zip(ev.ts[start:stop], ev.msgs[start:stop], strict=True)]
    return _dumps({"logGroupName": group, "logStreamName": stream, "logEvents": events})


def index_ranges(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Record indices -> sorted, merged ``(start, stop)`` runs."""
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        elif not out or out[-1][1] < i:
            out.append((i, i + 1))
    return out
