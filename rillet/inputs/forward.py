"""``forward`` input: receives Fluentd's Forward protocol (Fluent Bit's in_forward).

Fluentd, Fluent Bit, FireLens and the fluent-logger libraries connect over TCP (``Listen`` /
``Port``, optionally TLS) or a Unix socket (``Unix_Path``, ``Unix_Perm``) and send frames in any
of the four modes (Message, Forward, PackedForward, CompressedPackedForward; see
:mod:`rillet.forward_protocol`). Each read of a connection (``Buffer_Chunk_Size`` bytes) is
decoded in one loop; its records become one batch per tag. The tag is the frame's tag, prefixed
with ``Tag_Prefix``, or ``Tag`` when that is set.

- ``chunk`` option: the ``{"ack": chunk}`` answer is sent once the engine has accepted the batch
  (``emit`` returned), as Fluent Bit answers after appending to its chunk; with ``ack_on
  commit`` only once the engine acknowledges every batch of the read (delivered by every output,
  or on disk with filesystem storage), so a crash never loses an answered frame.
- ``Shared_Key`` (or ``Empty_Shared_Key``) turns on the HELO/PING/PONG handshake;
  ``Security.Users`` (``user password``, repeatable) adds user authentication. A client that
  fails it gets a PONG with the reason and is disconnected.
- Limits: a frame may not exceed ``Buffer_Max_Size`` (its decompressed entries 16 times that).
  An invalid frame (not msgpack, not a frame, over a limit) is counted (``frames_invalid``),
  logged with the peer's address, and its connection is closed; records decoded before it in
  the same read are kept. Entries with an invalid time or a record that is not a map are
  skipped and counted (``records_invalid``).
- Backpressure: while the input is paused (``Mem_Buf_Limit``), connections are not read, so
  senders block in TCP instead of losing data (Fluent Bit closes every connection instead).

Records are handed on as JSON text (orjson; binary strings as UTF-8 text, invalid bytes
replaced) so that outputs splice them in without another encoding pass.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
from typing import Any

import msgpack
import orjson

from rillet import forward_protocol as fp
from rillet.config.options import Option, T
from rillet.engine.chunk import Batch
from rillet.engine.plugin import InputContext, register
from rillet.inputs.listen import StreamInput, abort, parse_perm, peer_address, server_tls
from rillet.net.tls import TLS_OPTIONS

# Seconds a client has to authenticate (send its PING) when Shared_Key is set.
HANDSHAKE_TIMEOUT = 30.0
# Decompressed CompressedPackedForward entries may be this many times Buffer_Max_Size.
UNPACKED_FACTOR = 16

_OPT = orjson.OPT_NON_STR_KEYS
_dumps = orjson.dumps


def _json_default(value: Any) -> Any:
    """orjson fallback for msgpack values JSON has no form for."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if type(value) is tuple and len(value) == 2:  # an EventTime inside a record
        return value[0] + value[1] / 1e9
    if isinstance(value, msgpack.ExtType):
        return value.data.decode("latin-1")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _clean(value: Any) -> Any:
    """A copy of a record whose strings are valid UTF-8 (invalid bytes replaced)."""
    t = type(value)
    if t is str:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if t is dict:
        return {(_clean(k) if type(k) is str else k): _clean(v) for k, v in value.items()}
    if t is list:
        return [_clean(v) for v in value]
    return value


def record_json(rec: dict[str, Any]) -> bytes | None:
    """A decoded record as JSON text, or None when it has no JSON form."""
    try:
        return _dumps(rec, default=_json_default, option=_OPT)
    except TypeError:
        pass
    try:
        return _dumps(_clean(rec), default=_json_default, option=_OPT)
    except TypeError:
        return None


def parse_users(entries: list[str]) -> dict[str, str]:
    users: dict[str, str] = {}
    for entry in entries:
        parts = entry.split()
        if len(parts) != 2:
            raise ValueError(f"security.users: expected 'username password', got '{entry}'")
        users[parts[0]] = parts[1]
    return users


def _decode(up: msgpack.Unpacker, authed: bool,
            max_unpacked: int) -> tuple[list[Any], list[fp.Frame], str]:
    """Decode every complete frame buffered in ``up``: ``(handshake objects, frames, reason
    decoding stopped early)``. Before authentication only the first object is taken (it must
    be the PING); the rest stays buffered.

    The cyclic garbage collector is off meanwhile: decoding allocates thousands of maps and
    lists that cannot form cycles, and the collections they trigger cost about as much as the
    decoding itself."""
    pending: list[Any] = []
    frames: list[fp.Frame] = []
    add = frames.append
    decode = fp.decode_frame
    bad = ""
    enabled = gc.isenabled()
    gc.disable()
    try:
        if authed:
            for obj in up:
                add(decode(obj, max_unpacked))
        else:
            for obj in up:
                pending.append(obj)
                break
    except fp.ProtocolError as exc:
        bad = str(exc)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        bad = f"invalid msgpack: {exc}"
    finally:
        if enabled:
            gc.enable()
    return pending, frames, bad


class _PendingAcks:
    """The ``chunk`` ids of one read, answered once its ``left`` batches are final."""

    __slots__ = ("chunks", "left", "writer")

    def __init__(self, writer: asyncio.StreamWriter, chunks: list[str], left: int) -> None:
        self.writer = writer
        self.chunks = chunks
        self.left = left


@register
class Forward(StreamInput):
    name = "forward"
    description = "Fluentd in-forward"
    options = (
        Option("listen", T.STR, "0.0.0.0", "address to listen on"),
        Option("port", T.INT, "24224", "TCP port to listen on"),
        Option("unix_path", T.STR, None, "listen on this Unix socket instead of TCP"),
        Option("unix_perm", T.STR, None, "permissions of the Unix socket (octal, e.g. 0644)"),
        Option("buffer_chunk_size", T.SIZE, "1024000", "bytes read from a connection at a "
               "time"),
        Option("buffer_max_size", T.SIZE, "6144000", "largest frame accepted; a larger one "
               "closes the connection"),
        Option("tag_prefix", T.STR, None, "prefix added to the tag of incoming records"),
        Option("shared_key", T.STR, None, "shared key of the secure forward handshake"),
        Option("self_hostname", T.STR, "localhost", "host name sent in the handshake"),
        Option("security.users", T.STR, None, "'username password' allowed to connect "
               "(repeatable; needs shared_key or empty_shared_key)", multiple=True),
        Option("empty_shared_key", T.BOOL, "false", "handshake with an empty shared key"),
        Option("threaded", T.BOOL, "false", "accepted for compatibility (rillet runs every "
               "input on its event loop)"),
        Option("ack_on", T.STR, "accept", "when a sender's 'chunk' is acknowledged: accept (the "
               "engine took the records, as Fluent Bit) or commit (rillet: every output "
               "delivered them, or they are on disk with storage.type filesystem/overflow)",
               choices=("accept", "commit")),
        *TLS_OPTIONS,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        self.unix_path = o["unix_path"] or None
        self.unix_perm = parse_perm(o["unix_perm"])
        self.chunk_size = max(1, int(o["buffer_chunk_size"]))
        self.max_size = max(self.chunk_size, int(o["buffer_max_size"]))
        self.max_unpacked = self.max_size * UNPACKED_FACTOR
        self.users = parse_users(o["security.users"])
        self.shared_key: str | None = "" if o["empty_shared_key"] else o["shared_key"]
        if self.users and self.shared_key is None:
            raise ValueError("security.users is set but no shared_key or empty_shared_key")
        self.hostname: str = o["self_hostname"] or "localhost"
        self.tag_override: str | None = o["tag"] or None
        self.tag_prefix: str = o["tag_prefix"] or ""
        self.tls = server_tls(o)
        self.listener.limit = self.chunk_size
        self.ack_on_commit = o["ack_on"] == "commit"
        for name in ("frames", "frames_invalid", "frames_unsupported", "records_invalid",
                     "auth_failures", "acks", "acks_undeliverable"):
            self.counters.setdefault(name, 0)

    # -- one connection -------------------------------------------------------------------
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx = self.ctx
        up = fp.unpacker(self.max_size)
        authed = self.shared_key is None
        nonce = auth_salt = b""
        if not authed:
            nonce = secrets.token_bytes(16)
            auth_salt = secrets.token_bytes(16) if self.users else b""
            writer.write(fp.helo(nonce, auth_salt))
            await writer.drain()
        read = reader.read
        size = self.chunk_size
        max_unpacked = self.max_unpacked
        while True:
            if ctx.paused:
                await ctx.wait_resumed()
            if authed:
                data = await read(size)
            else:
                try:
                    data = await asyncio.wait_for(read(size), HANDSHAKE_TIMEOUT)
                except TimeoutError:
                    self.counters["auth_failures"] += 1
                    self.warn("%s: no PING within %d s, connection closed",
                              peer_address(writer), HANDSHAKE_TIMEOUT)
                    return
            if not data:
                return
            try:
                up.feed(data)
            except msgpack.BufferFull:
                self._invalid(writer, f"frame larger than buffer_max_size ({self.max_size} "
                                      "bytes)")
                return
            handshake, frames, bad = _decode(up, authed, max_unpacked)
            if handshake:
                if not await self._handshake(handshake[0], writer, nonce, auth_salt):
                    return
                authed = True
                if not bad:  # frames sent right behind the PING
                    _, frames, bad = _decode(up, authed, max_unpacked)
            if frames:
                await self._deliver(ctx, frames, writer)
            if bad:
                self._invalid(writer, bad)
                return

    async def _handshake(self, obj: Any, writer: asyncio.StreamWriter, nonce: bytes,
                         auth_salt: bytes) -> bool:
        key = self.shared_key
        assert key is not None
        ok, reason, salt = fp.check_ping(obj, nonce, key, auth_salt, self.users)
        if ok:
            writer.write(fp.pong(True, "", self.hostname,
                                 fp.digest(salt, self.hostname, nonce, key)))
            await writer.drain()
            return True
        self.counters["auth_failures"] += 1
        self.warn("%s: authentication failed: %s", peer_address(writer), reason)
        writer.write(fp.pong(False, reason, "", ""))
        await asyncio.wait_for(writer.drain(), 5)
        return False

    def _invalid(self, writer: asyncio.StreamWriter, reason: str) -> None:
        self.counters["frames_invalid"] += 1
        self.warn("%s: invalid frame, connection closed: %s", peer_address(writer), reason)
        abort(writer)

    async def _deliver(self, ctx: InputContext, frames: list[fp.Frame],
                       writer: asyncio.StreamWriter) -> None:
        """Emit the records of one read (one batch per tag), then acknowledge its chunks."""
        groups: dict[str, tuple[list[int], list[Any], list[int]]] = {}
        override, prefix = self.tag_override, self.tag_prefix
        dumps, opt, default = _dumps, _OPT, _json_default
        invalid = 0
        chunks: list[str] = []
        unsupported = 0
        for frame in frames:
            if frame.chunk is not None:
                chunks.append(frame.chunk)
            if frame.mode in ("metrics", "traces"):
                unsupported += 1
                continue
            tag = prefix + frame.tag if prefix else (override or frame.tag)
            group = groups.get(tag)
            if group is None:
                group = groups[tag] = ([], [], [0])
            times, bodies, total = group
            add_time, add_body = times.append, bodies.append
            n = 0
            invalid += frame.invalid
            for ns, rec in frame.entries:
                try:
                    body = dumps(rec, default=default, option=opt)
                except TypeError:
                    cleaned = record_json(rec)
                    if cleaned is None:
                        invalid += 1
                        continue
                    body = cleaned
                add_time(ns)
                add_body(body)
                n += len(body)
            total[0] += n
        self.counters["frames"] += len(frames)
        if unsupported:
            self.counters["frames_unsupported"] += unsupported
            self.warn("%s: %d metrics/traces frames dropped (rillet forwards logs only)",
                      peer_address(writer), unsupported)
        if invalid:
            self.counters["records_invalid"] += invalid
            self.warn("%s: %d entries skipped (invalid time or record)",
                      peer_address(writer), invalid)
        batches = [Batch(tag, times, bodies, total[0])
                   for tag, (times, bodies, total) in groups.items() if bodies]
        pending: _PendingAcks | None = None
        if chunks and self.ack_on_commit and batches:
            pending = _PendingAcks(writer, chunks, len(batches))
        for batch in batches:
            batch.ack = pending
            await ctx.emit(batch)
        if chunks and pending is None:
            self._send_acks(writer, chunks)
            await writer.drain()

    def on_ack(self, token: Any, complete: bool) -> None:
        """``ack_on commit``: every batch of a read is final; answer its chunks now."""
        if type(token) is _PendingAcks:
            token.left -= 1
            if token.left == 0:
                self._send_acks(token.writer, token.chunks)

    def _send_acks(self, writer: asyncio.StreamWriter, chunks: list[str]) -> None:
        if writer.is_closing():
            # The sender has gone (or rillet is stopping): it will send these records again.
            self.counters["acks_undeliverable"] += len(chunks)
            return
        write = writer.write
        for chunk in chunks:
            write(fp.ack(chunk))
        self.counters["acks"] += len(chunks)

