"""``stdout`` output: prints records to the standard output (Fluent Bit's out_stdout).

``Format msgpack`` (the default) prints ``msgpack_object_print`` lines::

    [0] dummy.0: [[1700000000.123456789, {}], {"message"=>"dummy"}]

``json``, ``json_lines`` and ``json_stream`` print ``flb_pack_msgpack_to_json_format`` text with
the ``json_date_key`` / ``json_date_format`` date; ``json`` and ``json_stream`` end with one
newline per chunk, ``json_lines`` with one per record. An unknown ``format`` or
``json_date_format`` is logged and replaced by the default, as Fluent Bit does.
"""

from __future__ import annotations

import sys
from typing import Any

from rillet.engine.chunk import Chunk
from rillet.engine.plugin import FlushResult, Output, Status, register
from rillet.outputs import formats


@register
class Stdout(Output):
    name = "stdout"
    description = "Prints events to STDOUT"
    default_workers = 1
    options = formats.JSON_OPTIONS

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.format, self.encoder = formats.json_settings(self.opts, self.log)
        # json and json_stream get one newline after the chunk; json_lines ends every record.
        self.trailer = b"" if self.format in (formats.MSGPACK, formats.JSON_LINES) else b"\n"

    async def flush(self, chunk: Chunk) -> FlushResult:
        encoder = self.encoder
        if encoder is None:
            data = formats.stdout_msgpack_lines(chunk.tag, chunk.times, chunk.bodies)
        else:
            data = encoder.encode(chunk.times, chunk.bodies) + self.trailer
        if data:
            _write_stdout(data)
        return Status.OK


def _write_stdout(data: bytes) -> None:
    """One write of the chunk's bytes to the current ``sys.stdout``, flushed."""
    stream = sys.stdout
    if stream is None:  # no standard output at all (pythonw, closed by a supervisor)
        return
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()
        return
    stream.flush()  # text written earlier through sys.stdout goes first
    buffer.write(data)
    buffer.flush()
