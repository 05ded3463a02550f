"""Listening sockets shared by the push inputs (``forward``, ``http``, ``tcp``).

:class:`Listener` binds a TCP address or a Unix socket, runs one task per connection and closes
them all on :meth:`Listener.close`. Connection handlers own their stream; a handler that raises is
logged and its connection closed, never the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rillet.engine.plugin import Input, InputContext
from rillet.monitor.http import abort, close_server

# Seconds between two warnings about bad client input (see PushInput.warn).
WARN_PERIOD = 10.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def parse_perm(value: str | None) -> int | None:
    """``Unix_Perm`` (octal, e.g. ``0644``) as a mode, or None; raises ValueError."""
    if value is None or not value.strip():
        return None
    try:
        mode = int(value.strip(), 8)
    except ValueError:
        raise ValueError(f"unix_perm: '{value}' is not an octal mode such as 0644") from None
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"unix_perm: '{value}' is not a file mode")
    return mode


def server_tls(opts: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The server-side context of ``tls.*`` options (:data:`rillet.net.tls.TLS_OPTIONS`), or
    None when ``tls`` is off. ``tls.crt_file`` and ``tls.key_file`` are required; clients must
    present a certificate only when ``tls.verify`` is on and ``tls.ca_file``/``tls.ca_path``
    names the CAs to check it against. Raises ValueError naming the option at fault."""
    if not opts.get("tls"):
        return None
    crt, key = opts.get("tls.crt_file"), opts.get("tls.key_file")
    if not crt or not key:
        raise ValueError("tls: a server needs tls.crt_file and tls.key_file")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(crt, keyfile=key, password=opts.get("tls.key_passwd") or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"tls.crt_file: cannot load the server certificate: {exc}") from exc
    ca_file, ca_path = opts.get("tls.ca_file"), opts.get("tls.ca_path")
    if opts.get("tls.verify", True) and (ca_file or ca_path):
        try:
            ctx.load_verify_locations(cafile=ca_file or None, capath=ca_path or None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"tls.ca_file: cannot load CA certificates: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_address(writer: asyncio.StreamWriter) -> str:
    """The client's address as Fluent Bit prints it: ``tcp://1.2.3.4:5678`` (``unix://`` for
    Unix sockets)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family == socket.AF_UNIX:
        path = writer.get_extra_info("sockname") or ""
        return f"unix://{path}"
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = peer[0]
        if ":" in host:
            return f"tcp://[{host}]:{peer[1]}"
        return f"tcp://{host}:{peer[1]}"
    return "tcp://unknown"


class Listener:
    """One listening socket and its connection tasks."""

    def __init__(self, handler: Handler, log: logging.Logger, *, limit: int = 65536) -> None:
        self.handler = handler
        self.log = log
        self.limit = limit
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.host = ""
        self.port = 0
        self.unix_path: str | None = None
        self.accepted = 0

    async def start(self, listen: str, port: int, *, unix_path: str | None = None,
                    unix_perm: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        """Bind; OSError when the address cannot be bound."""
        if unix_path:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(unix_path).st_mode):
                    os.unlink(unix_path)  # a stale socket from an earlier run
            self.server = await asyncio.start_unix_server(self._accept, unix_path,
                                                          limit=self.limit, ssl=tls)
            if unix_perm is not None:
                os.chmod(unix_path, unix_perm)
            self.unix_path = unix_path
        else:
            self.server = await asyncio.start_server(self._accept, listen or "0.0.0.0", port,
                                                     limit=self.limit, ssl=tls,
                                                     reuse_address=True)
            self.host, self.port = self.server.sockets[0].getsockname()[:2]

    @property
    def address(self) -> str:
        return f"unix://{self.unix_path}" if self.unix_path else f"{self.host}:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.accepted += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.CancelledError, ConnectionError, TimeoutError, ssl.SSLError):
            pass
        except Exception:  # a bug in one connection must not stop the input
            self.log.exception("connection handler failed")
        finally:
            self.tasks.discard(task)
            abort(writer)

    async def close(self) -> None:
        await close_server(self.server, self.tasks)
        self.server = None
        if self.unix_path:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)
            self.unix_path = None


class PushInput(Input):
    """An input that listens: ``run`` binds (:meth:`bind`), sets :attr:`ready`, serves until
    cancelled, then unbinds (:meth:`unbind`, also called by ``stop``)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ready = asyncio.Event()  # set once the socket is bound
        self._ctx: InputContext | None = None
        self._next_warning = 0.0

    def warn(self, msg: str, *args: Any) -> None:
        """A warning about a client's bad input, at most one per ``WARN_PERIOD`` seconds (the
        rest at debug level; the counters have the totals): a flood of bad input must not
        flood the log."""
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + WARN_PERIOD
            self.log.warning(msg, *args)
        else:
            self.log.debug(msg, *args)

    @property
    def ctx(self) -> InputContext:
        assert self._ctx is not None, "the input is not running"
        return self._ctx

    async def bind(self) -> str:
        """Start listening; returns the address for the log."""
        raise NotImplementedError

    async def unbind(self) -> None:
        raise NotImplementedError

    async def run(self, ctx: InputContext) -> None:
        self._ctx = ctx
        address = await self.bind()
        self.ready.set()
        self.log.info("listening on %s", address)
        try:
            await asyncio.Event().wait()
        finally:
            await self.unbind()

    async def stop(self) -> None:
        await self.unbind()


class StreamInput(PushInput):
    """A :class:`PushInput` on a :class:`Listener` (``Listen``/``Port``, or :attr:`unix_path`):
    :meth:`serve` runs once per connection. Subclasses set ``listener.limit`` (their read
    size), :attr:`tls`, and for Unix sockets :attr:`unix_path` / :attr:`unix_perm`."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.listener = Listener(self._connection, self.log)
        self.tls: ssl.SSLContext | None = None
        self.unix_path: str | None = None
        self.unix_perm: int | None = None
        self.counters.setdefault("connections", 0)

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``Port 0``)."""
        return self.listener.port

    async def bind(self) -> str:
        await self.listener.start(self.opts["listen"], self.opts["port"],
                                  unix_path=self.unix_path, unix_perm=self.unix_perm,
                                  tls=self.tls)
        return self.listener.address

    async def unbind(self) -> None:
        await self.listener.close()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self.counters["connections"] += 1
        await self.serve(reader, writer)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
