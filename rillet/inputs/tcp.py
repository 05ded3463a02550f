"""``tcp`` input: records written to a TCP socket (Fluent Bit's in_tcp).

``Format json`` (default): JSON objects back to back, usually one per line; an array of objects
gives one record per element. Newline-separated objects are decoded line by line (one orjson call
each, the object's text passed on unchanged); anything else (objects spanning lines, several on a
line) goes through a bracket scanner. A value that is not valid JSON, or not an object, is
skipped and counted (``records_invalid``); the connection stays open.

``Format none``: every piece of text ended by ``Separator`` (``\\n`` by default; escapes ``\\n``,
``\\r``, ``\\t``, ``\\\\`` are understood) becomes ``{"log": "<text>"}``; empty pieces are
skipped.

``Chunk_Size`` (KB, default 32) is the read size; ``Buffer_Size`` (KB, default ``Chunk_Size``)
bounds an incomplete record: a connection that exceeds it is closed and counted
(``connections_overflow``), as Fluent Bit does. ``Source_Address_Key`` adds the client's
``tcp://ip:port``. Times are the moment the data was read. Reading stops while the input is
paused, so clients see TCP backpressure instead of loss.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch
from rillet.engine.plugin import InputContext, register
from rillet.inputs.listen import StreamInput, abort, peer_address, server_tls
from rillet.net.tls import TLS_OPTIONS

_loads = orjson.loads
_dumps = orjson.dumps
_JSONError = orjson.JSONDecodeError
# Strings (with escapes) and brackets: enough to find where a top-level JSON value ends.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]', re.DOTALL)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "0": "\0"}


def kilobytes(text: str | None, default: int) -> int:
    """in_tcp's sizes: the leading number of the value, in KB (``atoi(value) * 1024``)."""
    if text is None:
        return default
    m = re.match(r"\s*(\d+)", text)
    if m is None or int(m.group(1)) <= 0:
        raise ValueError(f"expected a size in KB, got '{text}'")
    return int(m.group(1)) * 1024


def unescape(sep: str) -> bytes:
    out: list[str] = []
    i = 0
    while i < len(sep):
        ch = sep[i]
        if ch == "\\" and i + 1 < len(sep) and sep[i + 1] in _ESCAPES:
            out.append(_ESCAPES[sep[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out).encode("utf-8")


def scan_json(buf: bytes) -> tuple[list[bytes], int, bytes]:
    """Split ``buf`` into top-level JSON object/array texts: ``(texts, garbage pieces, rest)``,
    where ``rest`` is an incomplete value at the end (kept for the next read)."""
    texts: list[bytes] = []
    garbage = 0
    depth = 0
    start = 0  # where the current value (or the gap before it) starts
    pos = 0  # end of the last complete value
    for m in _TOKEN.finditer(buf):
        tok = m.group()
        c = tok[0]
        if depth == 0:
            if buf[pos:m.start()].strip():  # text between values
                garbage += 1
            if c == 0x7B or c == 0x5B:  # { [
                start = m.start()
                depth = 1
            else:  # a string or a closer outside any value
                garbage += 1
                pos = m.end()
            continue
        if c == 0x7B or c == 0x5B:
            depth += 1
        elif c == 0x7D or c == 0x5D:
            depth -= 1
            if depth == 0:
                texts.append(buf[start:m.end()])
                pos = m.end()
    if depth > 0:
        return texts, garbage, buf[start:]
    if buf[pos:].strip():
        tail = buf[pos:]
        if b'"' in tail:  # an unterminated string may still be completed
            return texts, garbage, tail
        garbage += 1
    return texts, garbage, b""


@register
class Tcp(StreamInput):
    name = "tcp"
    description = "TCP"
    options = (
        Option("listen", T.STR, "0.0.0.0", "address to listen on"),
        Option("port", T.INT, "5170", "TCP port to listen on"),
        Option("format", T.STR, "json", "json (JSON objects) or none (text split on "
               "separator)", choices=("json", "none")),
        Option("separator", T.STR, "\\n", "end of a record with format none"),
        Option("chunk_size", T.STR, "32", "bytes read at a time, in KB"),
        Option("buffer_size", T.STR, None, "largest incomplete record, in KB (default: "
               "chunk_size)"),
        Option("source_address_key", T.STR, None, "add the client's address under this key"),
        *TLS_OPTIONS,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        try:
            self.chunk_size = kilobytes(o["chunk_size"], 32 * 1024)
            self.buffer_size = kilobytes(o["buffer_size"], self.chunk_size)
        except ValueError as exc:
            raise ValueError(f"chunk_size/buffer_size: {exc}") from None
        self.separator = unescape(o["separator"] or "\\n")
        if not self.separator:
            raise ValueError("separator: must not be empty")
        self.json = o["format"] == "json"
        self.source_key: str | None = o["source_address_key"] or None
        self.tls = server_tls(o)
        self.listener.limit = self.chunk_size
        for name in ("records_invalid", "connections_overflow"):
            self.counters.setdefault(name, 0)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx = self.ctx
        tag = self.opts["tag"] or self.instance
        source = peer_address(writer) if self.source_key else None
        split = self._split_json if self.json else self._split_text
        pending = b""
        read, size, limit = reader.read, self.chunk_size, self.buffer_size
        while True:
            if ctx.paused:
                await ctx.wait_resumed()
            data = await read(size)
            if not data:
                if pending.strip():
                    bodies, bad, _ = split(pending + (b"\n" if self.json else self.separator))
                    await self._emit(ctx, tag, bodies, bad, source)
                return
            bodies, bad, pending = split(pending + data if pending else data)
            await self._emit(ctx, tag, bodies, bad, source)
            if len(pending) > limit:
                self.counters["connections_overflow"] += 1
                self.warn("%s: incoming data exceed limit (%d KB), connection closed",
                          peer_address(writer), limit // 1024)
                abort(writer)
                return

    async def _emit(self, ctx: InputContext, tag: str, bodies: list[Any], bad: int,
                    source: str | None) -> None:
        if bad:
            self.counters["records_invalid"] += bad
            self.warn("%d invalid JSON values skipped", bad)
        if not bodies:
            return
        key = self.source_key
        if key is not None:
            bodies = [dict(_loads(b) if type(b) is bytes else b, **{key: source})
                      for b in bodies]
        size = sum(len(b) if type(b) is bytes else 64 for b in bodies)
        await ctx.emit(Batch(tag, [time.time_ns()] * len(bodies), bodies, size))

    def _split_text(self, buf: bytes) -> tuple[list[Any], int, bytes]:
        pieces = buf.split(self.separator)
        rest = pieces.pop()
        dumps = _dumps
        return [dumps({"log": p.decode("utf-8", "replace")}) for p in pieces if p], 0, rest

    def _split_json(self, buf: bytes) -> tuple[list[Any], int, bytes]:
        """Records of ``buf`` (JSON texts or dicts), invalid values, incomplete rest."""
        head, nl, rest = buf.rpartition(b"\n")
        if not nl:
            head, rest = buf, b""
        loads = _loads
        bodies: list[Any] = []
        append = bodies.append
        try:
            for line in head.split(b"\n"):
                line = line.strip()
                if not line:
                    continue
                value = loads(line)
                if type(value) is dict:
                    append(line)
                else:
                    raise _JSONError("not an object", "", 0)
            if rest.strip():
                try:
                    value = loads(rest)
                except _JSONError:
                    return bodies, 0, rest  # incomplete (or bad: decided when it completes)
                if type(value) is not dict:
                    raise _JSONError("not an object", "", 0)
                append(rest.strip())
            return bodies, 0, b""
        except _JSONError:
            return self._scan(buf)

    @staticmethod
    def _scan(buf: bytes) -> tuple[list[Any], int, bytes]:
        texts, bad, rest = scan_json(buf)
        bodies: list[Any] = []
        for text in texts:
            try:
                value = _loads(text)
            except _JSONError:
                bad += 1
                continue
            if type(value) is dict:
                bodies.append(_dumps(value) if b"\n" in text else text)
            elif type(value) is list and value and all(type(v) is dict for v in value):
                bodies.extend(value)
            else:
                bad += 1
        return bodies, bad, rest
