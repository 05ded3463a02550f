"""The old multiline mode: ``Multiline On`` with ``Parser_Firstline`` and ``Parser_N``
(Fluent Bit's ``tail_multiline.c``).

A line the first-line parser matches starts a message (its fields; its time, or the ingestion
time); the message before it is flushed. A following line that one of ``Parser_1..N`` matches
adds that parser's fields; a line no parser matches is appended, after a ``\\n``, to the last
field of the message when that field is a string, else it becomes a record of its own (as does
any line seen before the first first-line). A message is flushed ``Multiline_Flush`` seconds
after it started if no new first line came.
"""

from __future__ import annotations

from typing import Any

from rillet.engine.chunk import Body


class LegacyMultiline:
    __slots__ = (
        "append",
        "deadline",
        "firstline",
        "flush_seconds",
        "ignore_older_ns",
        "key",
        "parsers",
        "restarted",
        "segments",
        "skipping",
        "time",
    )

    def __init__(self, firstline: Any, parsers: list[Any], key: str, flush_seconds: float,
                 ignore_older_ns: int = 0) -> None:
        self.firstline = firstline
        self.parsers = parsers
        self.key = key
        self.flush_seconds = flush_seconds
        self.ignore_older_ns = ignore_older_ns
        # The message: parsed maps and raw continuation strings, in arrival order.
        self.segments: list[dict[str, Any] | str] = []
        self.time = 0
        self.append = False
        self.skipping = False
        self.deadline = 0.0
        self.restarted = False

    @property
    def pending(self) -> bool:
        return bool(self.segments)

    def feed(self, text: str, now: float, now_ns: int, times: list[int],
             bodies: list[Body]) -> None:
        r = self.firstline.parse(text)
        if r is not None:
            rec, t = r
            self.flush(times, bodies)
            t = t or now_ns
            if self.ignore_older_ns and t < now_ns - self.ignore_older_ns:
                self.skipping = True
                return
            self.skipping = False
            self.restarted = True
            self.segments = [rec]
            self.time = t
            self.append = bool(rec) and type(list(rec.values())[-1]) is str
            self.deadline = now + self.flush_seconds
            return
        if self.skipping:
            return
        for parser in self.parsers:
            r = parser.parse(text)
            if r is not None:
                if self.segments:
                    self.segments.append(r[0])
                    return
                break
        if self.segments and self.append and r is None:
            self.segments.append(text)
            return
        # Before any first line (or a line that cannot be appended): a record of its own.
        times.append(now_ns)
        bodies.append({self.key: text})

    def flush(self, times: list[int], bodies: list[Body]) -> None:
        segs = self.segments
        if not segs:
            return
        self.segments = []
        out: dict[str, Any] = {}
        i, n = 0, len(segs)
        while i < n:
            seg = segs[i]
            i += 1
            if isinstance(seg, str):
                continue
            items = list(seg.items())
            extra: list[str] = []
            while i < n and isinstance(segs[i], str):
                extra.append(segs[i])  # type: ignore[arg-type]
                i += 1
            for j, (k, v) in enumerate(items):
                if extra and j == len(items) - 1 and type(v) is str:
                    v = "\n".join([v, *extra])
                out[k] = v
        times.append(self.time)
        bodies.append(out)
