"""``Docker_Mode``: rejoin the lines Docker's json-file driver split (Fluent Bit's
``tail_dockermode.c``).

Docker writes a log line longer than 16 KiB as several JSON lines; only the last one's ``log``
value ends with ``\\n``. Fragments are buffered per file; when a fragment whose ``log`` ends with
``\\n`` arrives, the *last* fragment's JSON, with ``log`` replaced by the joined text, is the line
handed to ``Parser``. A line that is not a JSON object with a string ``log`` flushes what is
buffered and is processed as an ordinary line. ``Docker_Mode_Flush`` seconds after the last
fragment, a buffer is flushed as it is.

``Docker_Mode_Parser`` names a parser that recognises the *first line* of a multi-line message
(a stack trace): a complete line that starts a message is held, the following complete lines
are appended to it until a line matches the first-line parser again (or the flush timeout).
Complete lines that arrive while no first line was seen are records of their own (this is what
Fluent Bit's ``dockermode_firstline_detection`` case expects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from rillet.engine.chunk import Body

_loads = orjson.loads
_dumps = orjson.dumps

# (line) -> (time_ns | None, body) | None: the input's ordinary line processing.
LineFn = Callable[[bytes], tuple[int | None, Body] | None]


class DockerMode:
    __slots__ = (
        "complete",
        "deadline",
        "first",
        "flush_seconds",
        "key",
        "last",
        "parts",
        "restarted",
        "started_by_first",
    )

    def __init__(self, first: Any, flush_seconds: float, key: str = "log") -> None:
        self.first = first
        self.key = key  # a Parser (parse(data) -> result | None) or None
        self.flush_seconds = flush_seconds
        self.parts: list[str] = []
        self.last: dict[str, Any] | None = None
        self.complete = False
        self.started_by_first = False
        self.deadline = 0.0
        # Set when a buffer starts; the input uses it to hold back its committed offset.
        self.restarted = False

    @property
    def pending(self) -> bool:
        return bool(self.parts)

    def feed(self, line: bytes, obj: Any, now: float, normal: LineFn,
             times: list[int], bodies: list[Body], now_ns: int) -> None:
        """Process one line; ``obj`` is the line's decoded JSON (or None if it is not JSON)."""
        log = obj.get("log") if type(obj) is dict else None
        if type(log) is not str:
            self.flush(normal, times, bodies, now_ns)
            self._out(normal(line), times, bodies, now_ns)
            return
        first = self.first
        if first is not None and self.parts and self.complete \
                and first.parse(line) is not None:
            self.flush(normal, times, bodies, now_ns)
        if not self.parts:
            self.restarted = True
            self.started_by_first = first is not None and first.parse(line) is not None
        self.parts.append(log)
        self.last = obj
        self.deadline = now + self.flush_seconds
        if log.endswith("\n"):
            self.complete = True
            if first is None or not self.started_by_first:
                self.flush(normal, times, bodies, now_ns)
        else:
            self.complete = False

    @staticmethod
    def _out(result: tuple[int | None, Body] | None, times: list[int], bodies: list[Body],
             now_ns: int) -> None:
        if result is not None:
            t, body = result
            times.append(t or now_ns)
            bodies.append(body)

    def flush(self, normal: LineFn, times: list[int], bodies: list[Body], now_ns: int) -> None:
        """Emit the buffered message, if any."""
        if not self.parts or self.last is None:
            return
        obj = dict(self.last)
        obj["log"] = "".join(self.parts)
        self.parts = []
        self.last = None
        self.complete = False
        self.started_by_first = False
        self._out(normal(_dumps(obj)), times, bodies, now_ns)
