"""``http`` input: records POSTed over HTTP (Fluent Bit's in_http).

``POST /<tag>`` with a JSON object or an array of objects (``Content-Type: application/json``),
a form (``application/x-www-form-urlencoded``: one record of its fields) or, as a rillet
extension, msgpack (``application/msgpack`` / ``application/x-msgpack``: maps, or arrays of maps,
back to back). ``Content-Encoding`` gzip, deflate/zlib and zstd bodies are decompressed (at most
``buffer_max_size`` bytes either way).

- Tag: the URL path without its leading ``/``, every character other than letters, digits,
  ``_`` and ``.`` replaced by ``_`` (``/app.log`` -> ``app.log``); ``/`` uses the instance tag.
  ``tag_key`` takes the tag from a string field of each record instead, when present.
- Time: the moment the request is read (one timestamp per request, as Fluent Bit).
- Answers: ``successful_response_code`` (201 by default; 200 or 204) with the
  ``success_header`` headers once the engine has accepted the records (``ack_on commit``: once
  they are delivered, or on disk with filesystem storage); 400 with the reason for
  a bad request (counted in ``requests_invalid``; nothing of it is kept); 413 for a body over
  ``buffer_max_size``; ``GET /health`` answers 200. A request waits while the input is paused
  (``Mem_Buf_Limit``), so clients see backpressure as latency, not as lost records.
- Connections: HTTP/1.1 keep-alive and chunked request bodies; TLS with ``tls.*``.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import parse_qsl

import msgpack
import orjson

from rillet import forward_protocol as fp
from rillet.config.options import Option, T
from rillet.engine.chunk import Batch
from rillet.engine.plugin import register
from rillet.inputs.forward import record_json
from rillet.inputs.listen import PushInput, server_tls
from rillet.monitor.http import JSON, HttpServer, Request, Response, _BadRequest
from rillet.net.tls import TLS_OPTIONS

_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.]")
_CODES = ("200", "201", "204")


class BadPayload(ValueError):
    """A request body that yields no records (answered with 400 and this reason)."""


def sanitize_tag(path: str) -> str:
    """The tag of a request path (``/app.log`` -> ``app.log``), as in_http builds it."""
    return _TAG_CHARS.sub("_", path[1:])


def _json_records(body: bytes) -> list[dict[str, Any]]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadPayload(f"invalid JSON: {exc}") from None
    if type(value) is dict:
        return [value]
    if type(value) is list:
        for i, item in enumerate(value):
            if type(item) is not dict:
                raise BadPayload(f"array element {i} is not an object")
        return value
    raise BadPayload("the JSON payload must be an object or an array of objects")


def _msgpack_records(body: bytes) -> list[dict[str, Any]]:
    up = fp.unpacker(len(body) or 1)
    up.feed(body)
    out: list[dict[str, Any]] = []
    try:
        for value in up:
            if type(value) is dict:
                out.append(value)
            elif type(value) is list and all(type(v) is dict for v in value):
                out.extend(value)
            else:
                raise BadPayload("msgpack values must be maps or arrays of maps")
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        if isinstance(exc, BadPayload):
            raise
        raise BadPayload(f"invalid msgpack: {exc}") from None
    if up.tell() != len(body):
        raise BadPayload("truncated msgpack payload")
    return out


def _form_records(body: bytes) -> list[dict[str, Any]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("the form is not UTF-8") from None
    fields = {k.strip(): v.strip() for k, v in parse_qsl(text, keep_blank_values=True)
              if k.strip()}
    if not fields:
        raise BadPayload("the form has no fields")
    return [fields]


def decode_body(content_type: str, body: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The records of a body and whether they may hold binary values (msgpack)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        return _json_records(body), False
    if media in ("application/msgpack", "application/x-msgpack"):
        return _msgpack_records(body), True
    if media == "application/x-www-form-urlencoded":
        return _form_records(body), False
    raise BadPayload("invalid 'Content-Type'")


def decompress(encoding: str, body: bytes, limit: int) -> bytes:
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "deflate", "zlib", "zstd"):
        raise BadPayload(f"unsupported Content-Encoding '{encoding}'")
    try:
        return fp.decompress(enc, body, limit)
    except fp.ProtocolError as exc:
        raise BadPayload(str(exc)) from None


class _Commit:
    """A request answered once its ``left`` batches are final (``ack_on commit``)."""

    __slots__ = ("future", "left")

    def __init__(self, left: int, future: asyncio.Future[bool]) -> None:
        self.left = left
        self.future = future


class _Server(HttpServer):
    """The monitoring API's HTTP/1.1 server with TLS, chunked request bodies and
    ``Expect: 100-continue``."""

    def __init__(self, *args: Any, tls: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tls = tls
        self._writers: dict[asyncio.StreamReader, asyncio.StreamWriter] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                  limit=self.max_head, reuse_address=True,
                                                  ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers[reader] = writer  # for "100 Continue" answers
        try:
            await super()._accept(reader, writer)
        finally:
            self._writers.pop(reader, None)

    async def _body(self, reader: asyncio.StreamReader, request: Request) -> bytes:
        if request.headers.get("expect", "").lower() == "100-continue":
            # curl waits a second for this before sending a body over 1 MB.
            length = request.headers.get("content-length", "")
            writer = self._writers.get(reader)
            if writer is not None and not (length.isdigit() and int(length) > self.max_body):
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        encoding = request.headers.get("transfer-encoding")
        if encoding is None:
            return await super()._body(reader, request)
        if encoding.strip().lower() != "chunked":
            raise _BadRequest(501, f"unsupported Transfer-Encoding '{encoding}'")
        return await asyncio.wait_for(self._chunked(reader), self.body_timeout)

    async def _chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "invalid chunked data") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > self.max_body:
                raise _BadRequest(413, "request body too large")
            data = await reader.readexactly(size + 2)
            if data[-2:] != b"\r\n":
                raise _BadRequest(400, "invalid chunked data")
            parts.append(data[:-2])


@register
class Http(PushInput):
    name = "http"
    description = "HTTP"
    options = (
        Option("listen", T.STR, "0.0.0.0", "address to listen on"),
        Option("port", T.INT, "9880", "TCP port to listen on"),
        Option("tag_key", T.STR, None, "take the tag from this record field when it is a "
               "string"),
        Option("buffer_max_size", T.SIZE, "4M", "largest request body accepted (also after "
               "decompression)"),
        Option("buffer_chunk_size", T.SIZE, "512K", "accepted for compatibility (bodies are "
               "read whole)"),
        Option("successful_response_code", T.STR, "201", "status of a successful request: "
               "200, 201 or 204", choices=_CODES),
        Option("success_header", T.STR, None, "'Name Value' header added to successful "
               "answers (repeatable)", multiple=True),
        Option("http2", T.BOOL, "on", "accepted for compatibility (HTTP/1.1 is served)"),
        Option("ack_on", T.STR, "accept", "when a request is answered: accept (the engine took "
               "the records, as Fluent Bit) or commit (rillet: every output delivered them, or "
               "they are on disk with storage.type filesystem/overflow)",
               choices=("accept", "commit")),
        *TLS_OPTIONS,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        self.max_body = max(1, int(o["buffer_max_size"]))
        self.code = int(o["successful_response_code"])
        self.ack_on_commit = o["ack_on"] == "commit"
        self.headers: list[tuple[str, str]] = []
        for entry in o["success_header"]:
            name, _, value = entry.strip().partition(" ")
            if not name or not value.strip():
                raise ValueError(f"success_header: expected 'Name Value', got '{entry}'")
            self.headers.append((name, value.strip()))
        self.tag_key: str | None = o["tag_key"] or None
        self.server = _Server(o["listen"] or "0.0.0.0", o["port"], self._handle, self.log,
                              tls=server_tls(o), max_body=self.max_body,
                              max_head=65536, max_clients=1024, max_requests=1_000_000)
        for name in ("requests", "requests_invalid"):
            self.counters.setdefault(name, 0)

    @property
    def port(self) -> int:
        return self.server.port

    async def bind(self) -> str:
        await self.server.start()
        return f"{self.server.host}:{self.server.port}"

    async def unbind(self) -> None:
        await self.server.close()

    def _bad(self, request: Request, reason: str) -> Response:
        self.counters["requests_invalid"] += 1
        self.warn("%s %s: %s", request.method, request.path, reason)
        return Response(400, f"error: {reason}\n".encode())

    async def _handle(self, request: Request) -> Response:
        ctx = self.ctx
        self.counters["requests"] += 1
        if request.method == "GET" and request.path == "/health":
            return Response(200, b'{"status":"ok"}\n', JSON)
        if request.method != "POST":
            return self._bad(request, "invalid HTTP method")
        content_type = request.headers.get("content-type")
        if content_type is None:
            return self._bad(request, "header 'Content-Type' is not set")
        if not request.body:
            return self._bad(request, "no payload found")
        now = time.time_ns()
        try:
            body = decompress(request.headers.get("content-encoding", ""), request.body,
                              self.max_body)
            records, binary = decode_body(content_type, body)
        except BadPayload as exc:
            return self._bad(request, str(exc))
        default = (self.opts["tag"] or self.instance) if request.path == "/" \
            else sanitize_tag(request.path)
        groups = self._group(records, default, binary)
        if groups is None:
            return self._bad(request, "a record has no JSON form")
        done: _Commit | None = None
        if self.ack_on_commit:
            done = _Commit(len(groups), asyncio.get_running_loop().create_future())
        for tag, bodies in groups.items():
            size = sum(len(b) for b in bodies) if binary else len(body) * len(bodies) // len(
                records)
            await ctx.emit(Batch(tag, [now] * len(bodies), bodies, size, done))
        if done is not None:
            await done.future
        return Response(self.code, b"", headers=self.headers)

    def on_ack(self, token: Any, complete: bool) -> None:
        """``ack_on commit``: answer the request once all its batches are final."""
        if type(token) is _Commit:
            token.left -= 1
            if token.left == 0 and not token.future.done():
                token.future.set_result(complete)

    def _group(self, records: list[dict[str, Any]], default: str,
               binary: bool) -> dict[str, list[Any]] | None:
        key = self.tag_key
        groups: dict[str, list[Any]] = {}
        for rec in records:
            tag = default
            if key is not None:
                value = rec.get(key)
                if type(value) is str and value:
                    tag = value
                elif isinstance(value, bytes) and value:
                    tag = value.decode("utf-8", "replace")
            body: Any = rec
            if binary:
                body = record_json(rec)
                if body is None:
                    return None
            bucket = groups.get(tag)
            if bucket is None:
                groups[tag] = [body]
            else:
                bucket.append(body)
        return groups
