"""``forward`` output: sends records with Fluentd's Forward protocol (Fluent Bit's out_forward).

One chunk is one frame, laid out byte for byte as Fluent Bit lays it out:

- default (Forward mode): ``[tag, [[EventTime, record], ...]]``, plus the option map
  ``{"chunk": id, "size": n}`` when ``Send_options`` or ``Require_ack_response`` is on;
- ``Compress gzip`` (CompressedPackedForward): ``[tag, bin(gzip(entries)), {..., "compressed":
  "gzip"}]``;
- ``Time_as_Integer`` (Fluentd v0.12): Forward mode with integer seconds;
- ``Tag`` with record keys (``$kubernetes['namespace_name']``): Message mode, one
  ``[tag, EventTime, record]`` frame per record (each with its own ``chunk`` when acks are on).
  A tag that uses only ``$TAG`` parts is rendered once per chunk and keeps Forward mode.
- ``Retain_metadata_in_forward_mode``: entries as ``[[EventTime, {}], record]`` (Fluent Bit 2+'s
  form, which Fluentd rejects).

``Require_ack_response``: the output waits (``net.io_timeout``) for ``{"ack": chunk}``, where
the chunk id is the first 16 bytes of the SHA-512 of the entries, in hex, as Fluent Bit computes
it; no or a wrong answer -> the connection is dropped and the chunk retried. In Message mode the
records already acknowledged are done and only the rest is retried.

``Shared_Key`` / ``Empty_Shared_Key`` (with ``Username``/``Password`` when the server asks):
the HELO/PING/PONG handshake runs once per new connection; the server's PONG digest is checked
too, so a server that does not know the key is refused. Connections are kept alive and reused
(``net.keepalive``); a connection the server closed is noticed before reuse and replaced.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from rillet import forward_protocol as fp
from rillet.config.options import Option, T
from rillet.engine.chunk import Chunk
from rillet.engine.plugin import FlushResult, Output, Partial, Status, register
from rillet.engine.record_accessor import Template, TemplateError
from rillet.net.tls import TLS_OPTIONS, client_tls
from rillet.outputs.compress import compressor

_NONE: Any = object()
_loads = orjson.loads


class SendError(Exception):
    """The frame could not be delivered on this connection (the connection is dropped)."""


@dataclass(eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    unpacker: msgpack.Unpacker = field(default_factory=lambda: fp.unpacker(1 << 20))
    last_used: float = 0.0

    def usable(self, idle_limit: float) -> bool:
        return (not self.reader.at_eof() and not self.writer.is_closing()
                and time.monotonic() - self.last_used < idle_limit)

    def close(self) -> None:
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()


def _extra_options(entries: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for entry in entries:
        key, _, value = entry.strip().partition(" ")
        if not key or not value.strip():
            raise ValueError(f"add_option: expected 'key value', got '{entry}'")
        out.append((key, value.strip()))
    return out


@register
class ForwardOutput(Output):
    name = "forward"
    description = "Forward (Fluentd protocol)"
    default_workers = 2
    options = (
        Option("host", T.STR, "127.0.0.1", "host of the Fluentd / Fluent Bit server"),
        Option("port", T.INT, "24224", "TCP port of the server"),
        Option("unix_path", T.STR, None, "send to this Unix socket instead of host:port"),
        Option("tag", T.STR, None, "tag to send instead of the record tag (record accessor "
               "templates allowed; record keys switch to Message mode)"),
        Option("time_as_integer", T.BOOL, "false", "send times as integer seconds (Fluentd "
               "v0.12)"),
        Option("send_options", T.BOOL, "false", "always send the option map (with 'size')"),
        Option("require_ack_response", T.BOOL, "false", "send a 'chunk' option and wait for "
               "the server's ack"),
        Option("compress", T.STR, None, "text (default) or gzip (CompressedPackedForward)"),
        Option("shared_key", T.STR, None, "shared key of the secure forward handshake"),
        Option("self_hostname", T.STR, "localhost", "host name sent in the handshake"),
        Option("empty_shared_key", T.BOOL, "false", "handshake with an empty shared key"),
        Option("username", T.STR, "", "user name for the handshake"),
        Option("password", T.STR, "", "password for the handshake"),
        Option("fluentd_compat", T.BOOL, "false", "Fluentd-compatible metrics and traces "
               "(accepted; rillet forwards logs only)"),
        Option("retain_metadata_in_forward_mode", T.BOOL, "false", "send entries as "
               "[[time, metadata], record]"),
        Option("add_option", T.STR, None, "extra 'key value' for the option map (repeatable; "
               "turns send_options on)", multiple=True),
        Option("upstream", T.STR, None, "upstream (HA) servers file: not supported"),
        Option("net.connect_timeout", T.TIME, "10", "seconds to wait for a connection and "
               "its handshake"),
        Option("net.io_timeout", T.TIME, "60", "seconds to wait for a write or an ack"),
        Option("net.keepalive", T.BOOL, "on", "reuse connections between flushes"),
        Option("net.keepalive_idle_timeout", T.TIME, "30", "close connections idle this "
               "long"),
        *TLS_OPTIONS,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        if o["upstream"]:
            raise ValueError("upstream: HA upstream files are not supported in this version; "
                             "use host/port")
        self.time_as_integer: bool = o["time_as_integer"]
        self.metadata: bool = o["retain_metadata_in_forward_mode"]
        self.require_ack: bool = o["require_ack_response"]
        self.extra = _extra_options(o["add_option"])
        raw = (o["compress"] or "text").strip().lower()
        if raw not in ("text", "gzip"):
            raise ValueError(f"invalid compress mode: {o['compress']}")
        self.gzip = compressor(raw, ("gzip",)) if raw == "gzip" else None
        self.send_options: bool = (o["send_options"] or self.require_ack
                                   or self.gzip is not None or bool(self.extra))
        if self.gzip is not None and self.time_as_integer:
            raise ValueError("compress mode gzip is incompatible with time_as_integer")
        self.tag: Template | None = None
        if o["tag"]:
            try:
                self.tag = Template.compile(o["tag"])
            except TemplateError as exc:
                raise ValueError(f"tag: {exc}") from exc
            if self.tag.uses_record and self.gzip is not None:
                raise ValueError("compress mode gzip is incompatible with dynamic tags")
        self.shared_key: str | None = "" if o["empty_shared_key"] else o["shared_key"]
        self.hostname: str = o["self_hostname"] or "localhost"
        self.tls = client_tls(o)
        self.unix_path: str | None = o["unix_path"] or None
        self.connect_timeout = float(o["net.connect_timeout"]) or 10.0
        self.io_timeout = float(o["net.io_timeout"]) or 60.0
        self.keepalive: bool = o["net.keepalive"]
        self.idle_limit = float(o["net.keepalive_idle_timeout"]) or 30.0
        self._idle: list[_Conn] = []
        self._open: set[_Conn] = set()

    # -- encoding -------------------------------------------------------------------------
    def encode(self, chunk: Chunk) -> list[tuple[bytes, str | None, int]]:
        """The frames of a chunk: ``(bytes, chunk id to wait for, records in the frame)``."""
        records: list[dict[str, Any]] = [_loads(b) if type(b) is bytes else b  # type: ignore[misc]
                                         for b in chunk.bodies]
        template = self.tag
        if template is not None and template.uses_record:
            return self._message_frames(chunk.tag, template, chunk.times, records)
        tag = chunk.tag
        if template is not None:
            tag = template.render(chunk.tag) or chunk.tag
        return [self._forward_frame(tag, chunk.times, records)]

    def _forward_frame(self, tag: str, times: list[int],
                       records: list[dict[str, Any]]) -> tuple[bytes, str | None, int]:
        n = len(records)
        entries = fp.encode_entries(times, records, time_as_integer=self.time_as_integer,
                                    metadata=self.metadata)
        cid = fp.chunk_id(entries) if self.require_ack else None
        head = fp.array_header(3 if self.send_options else 2) + fp.packb(tag)
        if self.gzip is not None:
            body = self.gzip(entries)
            head += fp.bin_header(len(body))
        else:
            body = entries
            head += fp.array_header(n)
        tail = b""
        if self.send_options:
            tail = fp.options_map(chunk=cid, size=n,
                                  compressed="gzip" if self.gzip is not None else None,
                                  extra=self.extra)
        return head + body + tail, cid, n

    def _message_frames(self, chunk_tag: str, template: Template, times: list[int],
                        records: list[dict[str, Any]]) -> list[tuple[bytes, str | None, int]]:
        pack = fp.packb
        render = template.render
        ack = self.require_ack
        as_int = self.time_as_integer
        frames: list[tuple[bytes, str | None, int]] = []
        failed = 0
        for t, rec in zip(times, records, strict=True):
            tag = render(chunk_tag, rec)
            if tag is None:
                failed += 1
                tag = chunk_tag
            record = pack(rec)
            stamp = pack(t // fp.NS) if as_int else fp.event_time(t)
            head = (b"\x94" if ack else b"\x93") + pack(tag) + stamp + record
            if ack:
                cid = fp.chunk_id(stamp + record)
                frames.append((head + fp.options_map(chunk=cid), cid, 1))
            else:
                frames.append((head, None, 1))
        if failed:
            self.log.warning("Tag translation failed for %d records, using the default Tag",
                             failed)
        return frames

    # -- delivery -------------------------------------------------------------------------
    async def flush(self, chunk: Chunk) -> FlushResult:
        if not chunk.bodies:
            return Status.OK
        frames = self.encode(chunk)
        total = len(chunk.bodies)
        reused = bool(self._idle)
        while True:
            try:
                conn = await self._acquire()
            except (OSError, TimeoutError, SendError, fp.ProtocolError, ValueError) as exc:
                self.log.error("no connection to %s: %s", self._target(), _describe(exc))
                return Status.RETRY
            try:
                await self._send(conn, frames)
            except (_Partial, OSError, TimeoutError, SendError, fp.ProtocolError,
                    ValueError) as exc:
                self._drop(conn)
                done = exc.done if isinstance(exc, _Partial) else 0
                cause = exc.__cause__ if isinstance(exc, _Partial) else exc
                if reused and done == 0 and isinstance(cause, SendError | ConnectionError):
                    # A kept-alive connection the server closed meanwhile: once more, fresh.
                    self.log.debug("%s closed a kept-alive connection; reconnecting",
                                   self._target())
                    reused = bool(self._idle)
                    continue
                self.log.error("could not send to %s: %s", self._target(), _describe(exc))
                if done == 0:
                    return Status.RETRY
                return Partial().add(done, total, Status.RETRY, "no ack")
            self._release(conn)
            return Status.OK

    async def _send(self, conn: _Conn, frames: list[tuple[bytes, str | None, int]]) -> None:
        writer = conn.writer
        writer.writelines([f[0] for f in frames])
        await asyncio.wait_for(writer.drain(), self.io_timeout)
        if not self.require_ack:
            return
        deadline = time.monotonic() + self.io_timeout
        done = 0
        for _, cid, n in frames:
            try:
                reply = await self._read(conn, deadline - time.monotonic())
            except (OSError, TimeoutError, SendError, ValueError) as exc:
                raise _Partial(done, f"no ack for chunk {cid}: {_describe(exc)}") from exc
            got = reply.get("ack") if type(reply) is dict else None
            if got != cid:
                raise _Partial(done, f"ack mismatch: expected {cid}, received {reply!r}")
            done += n

    async def _read(self, conn: _Conn, timeout: float) -> Any:
        """The next msgpack object from the server."""
        up = conn.unpacker
        while True:
            obj = next(up, _NONE)
            if obj is not _NONE:
                return obj
            if timeout <= 0:
                raise TimeoutError("timed out")
            data = await asyncio.wait_for(conn.reader.read(65536), timeout)
            if not data:
                raise SendError("connection closed by the server")
            up.feed(data)

    # -- connections ----------------------------------------------------------------------
    def _target(self) -> str:
        if self.unix_path:
            return f"unix://{self.unix_path}"
        return f"{self.opts['host']}:{self.opts['port']}"

    async def _acquire(self) -> _Conn:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(self.idle_limit):
                return conn
            self._drop(conn)
        return await asyncio.wait_for(self._connect(), self.connect_timeout)

    async def _connect(self) -> _Conn:
        if self.unix_path:
            reader, writer = await asyncio.open_unix_connection(self.unix_path)
        else:
            kwargs: dict[str, Any] = {}
            if self.tls.context is not None:
                kwargs["ssl"] = self.tls.context
                kwargs["server_hostname"] = self.tls.server_hostname or self.opts["host"]
            reader, writer = await asyncio.open_connection(self.opts["host"], self.opts["port"],
                                                           **kwargs)
        conn = _Conn(reader, writer)
        self._open.add(conn)
        if self.shared_key is not None:
            try:
                await self._handshake(conn, self.shared_key)
            except BaseException:
                self._drop(conn)
                raise
        return conn

    async def _handshake(self, conn: _Conn, key: str) -> None:
        nonce, auth_salt = fp.parse_helo(await self._read(conn, self.connect_timeout))
        salt = secrets.token_hex(8)
        conn.writer.write(fp.ping(self.hostname, salt, nonce, key, auth_salt,
                                  self.opts["username"], self.opts["password"]))
        await conn.writer.drain()
        problem = fp.check_pong(await self._read(conn, self.connect_timeout), salt, nonce, key)
        if problem is not None:
            raise SendError(f"handshake refused: {problem}")

    def _release(self, conn: _Conn) -> None:
        if self.keepalive:
            conn.last_used = time.monotonic()
            self._idle.append(conn)
        else:
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        self._open.discard(conn)
        conn.close()

    async def stop(self) -> None:
        self._idle.clear()
        for conn in list(self._open):
            self._drop(conn)


class _Partial(Exception):
    """Acks stopped after ``done`` records."""

    def __init__(self, done: int, reason: str) -> None:
        super().__init__(reason)
        self.done = done
        self.reason = reason


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
