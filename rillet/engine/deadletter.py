"""Dead letters: records an output finally gave up on, kept with the reason.

With ``storage.keep.rejected on`` every record an output gives up on (an ERROR answer, a Partial
ERROR segment, or retries exhausted) is appended as one JSON line to
``<storage.rejected.path>/<output>.jsonl``::

    {"time": "2026-11-28T08:00:00.123Z", "output": "es.0", "input": "tail.0", "tag": "kube.x",
     "reason": "mapper_parsing_exception ...", "record_time": 1764316800.5, "record": {...}}

A file is rotated to ``<output>.jsonl.1`` (replacing the previous one) when it passes
``storage.rejected.max_size``, so the dead letters of one output never take more than twice
that. Write errors are logged once per condition and counted, never raised.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import orjson

from rillet.engine.chunk import Body, bodies_fragments

_OPTS = orjson.OPT_APPEND_NEWLINE


class DeadLetters:
    def __init__(self, directory: str, max_size: int, log: logging.Logger) -> None:
        self.directory = os.path.abspath(directory)
        self.max_size = max_size
        self.log = log
        self.errors = 0
        self.written = 0
        self._sizes: dict[str, int] = {}
        self._failing = False

    def path(self, output: str) -> str:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in output)
        return os.path.join(self.directory, f"{safe}.jsonl")

    def write(self, output: str, input_name: str, tag: str, reason: str,
              times: Sequence[int], bodies: Sequence[Body]) -> bool:
        """Append the records; False (logged, counted) when they could not be written."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        stamp += f".{int(now % 1 * 1000):03d}Z"
        head = {"time": stamp, "output": output, "input": input_name, "tag": tag,
                "reason": reason}
        dumps = orjson.dumps
        path = self.path(output)
        try:
            data = b"".join(dumps({**head, "record_time": t / 1e9, "record": b}, option=_OPTS)
                            for t, b in zip(times, bodies_fragments(bodies), strict=True))
            size = self._sizes.get(path)
            if size is None:
                os.makedirs(self.directory, exist_ok=True)
                try:
                    size = os.stat(path).st_size
                except FileNotFoundError:
                    size = 0
            if size and size + len(data) > self.max_size:
                os.replace(path, path + ".1")
                size = 0
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except (OSError, TypeError) as exc:
            self.errors += 1
            self._sizes.pop(path, None)
            if not self._failing:
                self._failing = True
                self.log.error("cannot write dead letters to %s: %s (%d records of %s lost "
                               "from the dead-letter file; they stay counted)", path,
                               getattr(exc, "strerror", None) or exc, len(bodies), output)
            return False
        self._failing = False
        self._sizes[path] = size + len(data)
        self.written += len(bodies)
        return True
