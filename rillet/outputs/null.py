"""``null`` output: discards records (Fluent Bit's out_null).

It takes out_stdout's ``format`` / ``json_date_key`` / ``json_date_format`` options: as in Fluent
Bit, a JSON ``format`` makes every chunk be encoded and thrown away (to measure the cost of the
conversion); by default a flush does nothing at all.
"""

from __future__ import annotations

from typing import Any

from rillet.engine.chunk import Chunk
from rillet.engine.plugin import FlushResult, Output, Status, register
from rillet.outputs import formats


@register
class Null(Output):
    name = "null"
    description = "Throws away events"
    default_workers = 1
    options = formats.JSON_OPTIONS

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.format, self.encoder = formats.json_settings(self.opts, self.log)

    async def flush(self, chunk: Chunk) -> FlushResult:
        if self.encoder is not None:
            self.encoder.encode(chunk.times, chunk.bodies)
        return Status.OK
