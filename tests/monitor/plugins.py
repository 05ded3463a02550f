"""Test plugins for the monitoring tests: a TCP output that waits for the server's answer (so a
proxy that stops answering stalls it), and an input that reports bytes behind per file."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch, Chunk, bodies_json
from rillet.engine.plugin import FlushResult, Input, InputContext, Output, Status, register


@register
class TcpAckOutput(Output):
    """Sends a chunk as JSON lines, then one ``END\\n`` line; the server answers ``OK\\n``.

    No timeout on purpose: a peer that stops answering hangs the flush (a silent stall)."""

    name = "test_tcp_ack"
    description = "test output: JSON lines over TCP, one answer per chunk"
    options = (Option("host", T.STR, "127.0.0.1", "server address"),
               Option("port", T.INT, "0", "server port"))

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def flush(self, chunk: Chunk) -> FlushResult:
        if self.conn is None:
            try:
                self.conn = await asyncio.open_connection(self.opts["host"], self.opts["port"])
            except OSError:
                return Status.RETRY
        reader, writer = self.conn
        try:
            writer.write(b"\n".join(bodies_json(chunk.bodies)) + b"\nEND\n")
            await writer.drain()
            answer = await reader.readline()
        except OSError:
            answer = b""
        if answer != b"OK\n":
            writer.close()
            self.conn = None
            return Status.RETRY
        return Status.OK

    async def stop(self) -> None:
        if self.conn is not None:
            self.conn[1].close()


LAG: dict[str, dict[str, int]] = {}


@register
class LaggingInput(Input):
    """Emits one record per `interval` and reports LAG[id] as its bytes behind per file."""

    name = "test_lagging"
    description = "test input: reports bytes behind"
    options = (Option("id", T.STR, "x", "state key"),
               Option("interval", T.DOUBLE, "0.05", "seconds between records"))

    async def run(self, ctx: InputContext) -> None:
        tag = self.opts["tag"] or self.instance
        body = orjson.dumps({"n": 1})
        while True:
            await ctx.emit(Batch(tag, [0], [body], len(body)))
            await asyncio.sleep(self.opts["interval"])

    def lag(self) -> dict[str, int]:
        return LAG.get(self.opts["id"], {})
