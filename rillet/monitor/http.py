"""A small HTTP/1.1 server on asyncio streams, for the monitoring API.

It serves short JSON and text answers to monitoring clients and must never hurt the pipeline it
watches: every connection is its own task with deadlines on reading the request head, the body
and writing the answer; heads and bodies are size-capped; the number of connections is bounded.
A slow, stuck or malformed client costs one task until its deadline, then it is dropped.
Keep-alive (HTTP/1.1 default, ``Connection: keep-alive`` for 1.0) is supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed",
            408: "Request Timeout", 411: "Length Required", 413: "Payload Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")

JSON = "application/json"
TEXT = "text/plain"
PROMETHEUS = "text/plain; version=0.0.4"


def abort(writer: asyncio.StreamWriter) -> None:
    """Close a connection at once: a peer that stopped reading must not keep buffers alive,
    so unsent data means abort, not close."""
    transport = writer.transport
    if not transport.is_closing():
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()


async def close_server(server: asyncio.Server | None, tasks: set[asyncio.Task[None]]) -> None:
    """Stop listening, cancel the connection tasks and wait (briefly) for the server to close."""
    if server is not None:
        server.close()
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    if server is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


@dataclass
class Request:
    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class HttpServer:
    """Listen on ``host:port`` (port 0 = any free port, see :attr:`port`) and answer with
    ``handler``. Limits: ``head_timeout`` to receive a request head (also the keep-alive idle
    time), ``body_timeout`` for its body, ``write_timeout`` to hand the answer to the client."""

    def __init__(self, host: str, port: int, handler: Handler, log: logging.Logger, *,
                 head_timeout: float = 10.0, body_timeout: float = 10.0,
                 write_timeout: float = 10.0, max_head: int = 16384, max_body: int = 65536,
                 max_clients: int = 64, max_requests: int = 1000) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.log = log
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.write_timeout = write_timeout
        self.max_head = max_head
        self.max_body = max_body
        self.max_clients = max_clients
        self.max_requests = max_requests
        self.clients: set[asyncio.Task[None]] = set()
        self.served = 0
        self.rejected = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind and listen; raises OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                  limit=self.max_head, reuse_address=True)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        await close_server(self._server, self.clients)
        self._server = None

    # -- connections ------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self.clients) >= self.max_clients:
            self.rejected += 1
            await self._send(writer, Response(503, b"too many connections\n"), close=True)
            abort(writer)
            return
        self.clients.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass
        except Exception:  # a handler bug must not take the server down
            self.log.exception("monitoring API connection failed")
        finally:
            self.clients.discard(task)
            abort(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(self.max_requests):
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            except asyncio.LimitOverrunError:
                await self._send(writer, Response(431, b"request head too large\n"), True)
                return
            except ValueError:  # the stream's buffer limit was exceeded
                await self._send(writer, Response(431, b"request head too large\n"), True)
                return
            try:
                request = self._parse(head)
                request.body = await self._body(reader, request)
            except _BadRequest as exc:
                await self._send(writer, Response(exc.status, f"{exc}\n".encode()), True)
                return
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            try:
                response = await self.handler(request)
            except Exception:
                self.log.exception("monitoring API handler failed for %s", request.path)
                response = Response(500, b"internal error\n")
            keep = self._keep_alive(request)
            self.served += 1
            if not await self._send(writer, response, not keep, head_only=request.method == "HEAD"):
                return
            if not keep:
                return

    def _parse(self, head: bytes) -> Request:
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise _BadRequest(400, "malformed request line")
        method_b, target_b, version_b = parts
        if not method_b or any(c not in _TOKEN for c in method_b):
            raise _BadRequest(400, "malformed method")
        if version_b not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise _BadRequest(505 if version_b.startswith(b"HTTP/") else 400,
                              "unsupported HTTP version")
        if not target_b.startswith(b"/"):
            raise _BadRequest(400, "malformed request target")
        try:
            target = target_b.decode("ascii")
        except UnicodeDecodeError:
            raise _BadRequest(400, "malformed request target") from None
        path, _, query = target.partition("?")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or any(c not in _TOKEN for c in name):
                raise _BadRequest(400, "malformed header")
            headers[name.decode("ascii").lower()] = value.strip().decode("latin-1")
        return Request(method_b.decode("ascii"), unquote(path), query,
                       version_b.decode("ascii"), headers)

    async def _body(self, reader: asyncio.StreamReader, request: Request) -> bytes:
        if "transfer-encoding" in request.headers:
            raise _BadRequest(501, "chunked request bodies are not supported")
        raw = request.headers.get("content-length")
        if raw is None:
            return b""
        if not raw.isdigit():
            raise _BadRequest(400, "malformed Content-Length")
        size = int(raw)
        if size > self.max_body:
            raise _BadRequest(413, "request body too large")
        if not size:
            return b""
        return await asyncio.wait_for(reader.readexactly(size), self.body_timeout)

    @staticmethod
    def _keep_alive(request: Request) -> bool:
        conn = request.headers.get("connection", "").lower()
        if request.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"

    async def _send(self, writer: asyncio.StreamWriter, response: Response, close: bool,
                    head_only: bool = False) -> bool:
        reason = _REASONS.get(response.status, "Unknown")
        lines = [f"HTTP/1.1 {response.status} {reason}",
                 f"Content-Type: {response.content_type}",
                 f"Content-Length: {len(response.body)}",
                 "Connection: close" if close else "Connection: keep-alive",
                 *(f"{k}: {v}" for k, v in response.headers)]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head_only:
            data += response.body
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self.write_timeout)
        except (TimeoutError, ConnectionError, RuntimeError):
            return False
        return True
