"""The forward input against real clients (fluent-logger) and hand-built frames on loopback."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from fluent import asyncsender, sender

from rillet.inputs import forward as forward_module
from rillet.inputs.forward import Forward
from tests.engine import plugins
from tests.engine.harness import make_pipeline, running, wait_for
from tests.engine.plugins import Sink
from tests.inputs.forward.helpers import Collect, read_until_closed, serving
from tests.plugin_kit import make_plugin

NS = 1_000_000_000


def event_time(sec: int, nsec: int) -> msgpack.ExtType:
    """EventTime built from the spec: ext type 0, big-endian uint32 seconds + nanoseconds."""
    return msgpack.ExtType(0, struct.pack(">II", sec, nsec))


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def run(plugin: Forward, body: Callable[[Collect, int], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving(plugin) as ctx:
            await body(ctx, plugin.port)
    asyncio.run(asyncio.wait_for(main(), 20))


def forward(**settings: str) -> Forward:
    return make_plugin(Forward, listen="127.0.0.1", port="0", **settings)


async def send(port: int, data: bytes, read_reply: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    reply = b""
    if read_reply:
        reply = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    return reply


# --- real clients --------------------------------------------------------------------------

def test_fluent_logger_sender_records_arrive_with_tags_and_times() -> None:
    plugin = forward(tag_prefix="in.", tag="ignored")  # Tag_Prefix wins, as in Fluent Bit

    async def body(ctx: Collect, port: int) -> None:
        def client() -> None:
            s = sender.FluentSender("app", host="127.0.0.1", port=port,
                                    nanosecond_precision=True)
            assert s.emit_with_time("web", 1_700_000_000.25, {"msg": "hello", "n": 1})
            assert s.emit("web", {"msg": "now", "raw": b"bytes"})
            s.close()
            legacy = sender.FluentSender("old", host="127.0.0.1", port=port)
            assert legacy.emit_with_time("x", 1_700_000_123, {"k": [1, 2, {"a": None}]})
            legacy.close()
        before = time.time_ns()
        await asyncio.to_thread(client)
        out = await ctx.wait_records(3)
        assert out[0] == ("in.app.web", 1_700_000_000_250_000_000, {"msg": "hello", "n": 1})
        assert out[1][0] == "in.app.web" and out[1][2] == {"msg": "now", "raw": "bytes"}
        assert before <= out[1][1] <= time.time_ns()
        assert out[2] == ("in.old.x", 1_700_000_123 * NS, {"k": [1, 2, {"a": None}]})

    run(plugin, body)
    assert plugin.counters["frames"] == 3


def test_fluent_logger_asyncsender() -> None:
    plugin = forward()

    async def body(ctx: Collect, port: int) -> None:
        def client() -> None:
            s = asyncsender.FluentSender("async", host="127.0.0.1", port=port,
                                         nanosecond_precision=True)
            for i in range(50):
                s.emit("ev", {"i": i})
            s.close()
        await asyncio.to_thread(client)
        out = await ctx.wait_records(50)
        assert [r[2]["i"] for r in out] == list(range(50))
        assert {r[0] for r in out} == {"async.ev"}

    run(plugin, body)


def test_unix_socket_with_fluent_logger_and_permissions(tmp_path: Path) -> None:
    path = str(tmp_path / "fw.sock")
    plugin = make_plugin(Forward, unix_path=path, unix_perm="0600")

    async def main() -> None:
        async with serving(plugin) as ctx:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

            def client() -> None:
                s = sender.FluentSender("unix", host=f"unix://{path}")
                assert s.emit("sock", {"via": "unix"})
                s.close()
            await asyncio.to_thread(client)
            out = await ctx.wait_records(1)
            assert out[0][0] == "unix.sock" and out[0][2] == {"via": "unix"}
        assert not os.path.exists(path)

    asyncio.run(asyncio.wait_for(main(), 20))


# --- every mode, hand-built ----------------------------------------------------------------

def test_message_mode_with_chunk_is_acknowledged_after_emit() -> None:
    plugin = forward()

    async def body(ctx: Collect, port: int) -> None:
        frame = packb(["tag.a", event_time(1_700_000_000, 5), {"m": 1}, {"chunk": "c1"}])
        reply = await send(port, frame, read_reply=True)
        assert msgpack.unpackb(reply) == {"ack": "c1"}
        assert ctx.records() == [("tag.a", 1_700_000_000 * NS + 5, {"m": 1})]

    run(plugin, body)
    assert plugin.counters["acks"] == 1


def test_forward_mode_times_of_every_kind_and_metadata_entries() -> None:
    plugin = forward()

    async def body(ctx: Collect, port: int) -> None:
        entries = [[1_700_000_000, {"a": 1}], [1_700_000_000.5, {"a": 2}],
                   [event_time(1_700_000_001, 7), {"a": 3}],
                   [[event_time(1_700_000_002, 0), {"meta": 1}], {"a": 4}]]
        reply = await send(port, packb(["fw", entries, {"size": 4, "chunk": "k"}]), True)
        assert msgpack.unpackb(reply) == {"ack": "k"}
        out = await ctx.wait_records(4)
        assert [(t, r["a"]) for _, t, r in out] == [
            (1_700_000_000 * NS, 1), (1_700_000_000_500_000_000, 2),
            (1_700_000_001 * NS + 7, 3), (1_700_000_002 * NS, 4)]

    run(plugin, body)


def test_packed_forward_bin_and_str_and_compressed() -> None:
    plugin = forward()
    stream = b"".join(packb([event_time(1_700_000_000, i), {"i": i}]) for i in range(3))

    async def body(ctx: Collect, port: int) -> None:
        await send(port, packb(["p.bin", stream]))
        # Old Fluentd versions sent the stream as a str (raw 32) object.
        header = msgpack.packb("p.str") + b"\xdb" + struct.pack(">I", len(stream))
        await send(port, b"\x92" + header + stream)
        # Two gzip members, as Fluentd writes a compressed chunk.
        cut = stream.index(packb([event_time(1_700_000_000, 2), {"i": 2}]))
        gz = gzip.compress(stream[:cut]) + gzip.compress(stream[cut:])
        reply = await send(port, packb(["p.gz", gz, {"compressed": "gzip", "chunk": "z"}]),
                           True)
        assert msgpack.unpackb(reply) == {"ack": "z"}
        out = await ctx.wait_records(9)
        by_tag: dict[str, list[int]] = {}
        for tag, t, rec in out:
            by_tag.setdefault(tag, []).append(rec["i"])
            assert t == 1_700_000_000 * NS + rec["i"]
        assert by_tag == {"p.bin": [0, 1, 2], "p.str": [0, 1, 2], "p.gz": [0, 1, 2]}

    run(plugin, body)


def test_zstd_and_magic_bytes_and_metrics_frames() -> None:
    zstandard = pytest.importorskip("zstandard")
    plugin = forward()
    stream = b"".join(packb([event_time(1_700_000_000, i), {"i": i}]) for i in range(2))

    async def body(ctx: Collect, port: int) -> None:
        zst = zstandard.ZstdCompressor().compress(stream)
        await send(port, packb(["z", zst, {"compressed": "zstd"}]))
        # No "compressed" option: the gzip magic bytes are enough (Fluent Bit sniffs too).
        await send(port, packb(["g", gzip.compress(stream)]))
        # Fluent Bit's metrics frames (fluent_signal 1) are acknowledged, counted, dropped.
        reply = await send(port, packb(["m", b"cmetrics", {"fluent_signal": 1, "chunk": "m1"}]),
                           True)
        assert msgpack.unpackb(reply) == {"ack": "m1"}
        out = await ctx.wait_records(4)
        assert [(tag, r["i"]) for tag, _, r in out] == [("z", 0), ("z", 1), ("g", 0), ("g", 1)]

    run(plugin, body)
    assert plugin.counters["frames_unsupported"] == 1
    assert plugin.counters["frames_invalid"] == 0


def test_tag_override_and_invalid_entries_are_skipped_and_counted() -> None:
    plugin = forward(tag="fixed")

    async def body(ctx: Collect, port: int) -> None:
        entries = [[1, {"ok": 1}], [1, "not a map"], ["bad time", {"x": 1}], [2, {"ok": 2}], 7]
        await send(port, packb(["anything", entries]) + packb(["t", 3, {"ok": 3}]))
        out = await ctx.wait_records(3)
        assert [(tag, r) for tag, _, r in out] == [("fixed", {"ok": 1}), ("fixed", {"ok": 2}),
                                                   ("fixed", {"ok": 3})]
        assert len(ctx.batches) == 1  # one read, one tag: one batch

    run(plugin, body)
    assert plugin.counters["records_invalid"] == 3
    assert plugin.counters["frames_invalid"] == 0


def test_ack_on_commit_answers_when_every_batch_of_the_read_is_final() -> None:
    plugin = forward(ack_on="commit")

    async def body(ctx: Collect, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(packb(["a", 1, {"n": 1}, {"chunk": "c1"}]) + packb(["b", 2, {"n": 2}]))
        await writer.drain()
        await ctx.wait_records(2)
        assert len(ctx.batches) == 2 and ctx.batches[0].ack is ctx.batches[1].ack
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), 0.2)
        plugin.on_ack(ctx.batches[0].ack, True)
        with pytest.raises(TimeoutError):  # one batch of the read is still in flight
            await asyncio.wait_for(reader.read(100), 0.2)
        plugin.on_ack(ctx.batches[1].ack, False)  # given up on: still final, answered
        assert msgpack.unpackb(await asyncio.wait_for(reader.read(100), 5)) == {"ack": "c1"}
        writer.close()

    run(plugin, body)
    assert plugin.counters["acks"] == 1


def test_ack_on_commit_through_the_engine_waits_for_delivery() -> None:
    plugins.STATE["fw-sink"] = sink = Sink()

    async def main() -> None:
        gate = sink.gate = asyncio.Event()
        pipeline = make_pipeline(
            inputs=[{"name": "forward", "listen": "127.0.0.1", "port": 0, "ack_on": "commit"}],
            outputs=[{"name": "test_sink", "match": "*", "id": "fw-sink"}])
        async with running(pipeline):
            plugin = pipeline.inputs[0].plugin
            assert isinstance(plugin, Forward)
            await asyncio.wait_for(plugin.ready.wait(), 5)
            reader, writer = await asyncio.open_connection("127.0.0.1", plugin.port)
            writer.write(packb(["e2e", 1, {"n": 1}, {"chunk": "x"}]))
            await writer.drain()
            await wait_for(lambda: len(sink.calls) == 1)  # the output has it, not finished
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(100), 0.2)
            gate.set()
            reply = await asyncio.wait_for(reader.read(100), 5)
            assert msgpack.unpackb(reply) == {"ack": "x"}
            assert sink.delivered == [b'{"n":1}']
            writer.close()

    asyncio.run(asyncio.wait_for(main(), 20))


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [
    b"\xc1\xc1\xc1",                                   # never-used msgpack byte
    msgpack.packb({"not": "a frame"}),
    msgpack.packb(["", 1, {}]),                         # empty tag
    msgpack.packb(["t", b"\x00\x01", {"compressed": "gzip"}]),  # not gzip
    msgpack.packb(["t", 1, {"a": 1}, "options not a map"]),
    msgpack.packb(["t", [[1, {"a": 1}]], {"fluent_signal": 7}]),
    msgpack.packb(["t", b"\x92\x01", {"compressed": "zstd"}]),  # says zstd, is not
])
def test_invalid_frames_close_the_connection_and_keep_serving(garbage: bytes) -> None:
    plugin = forward()

    async def body(ctx: Collect, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(packb(["good", 1, {"before": True}]) + garbage)
        await writer.drain()
        assert await read_until_closed(reader) == b""
        writer.close()
        await send(port, packb(["after", 2, {"still": "serving"}]))
        out = await ctx.wait_records(2)
        assert [r[0] for r in out] == ["good", "after"]

    run(plugin, body)
    assert plugin.counters["frames_invalid"] == 1


def test_frame_over_buffer_max_size_is_refused() -> None:
    plugin = forward(buffer_chunk_size="1k", buffer_max_size="4k")

    async def body(ctx: Collect, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(packb(["big", 1, {"x": "y" * 10_000}]))
        try:  # the server aborts the connection, maybe while we still write
            await writer.drain()
            assert await read_until_closed(reader) == b""
        except ConnectionError:
            pass
        writer.close()
        await send(port, packb(["small", 1, {"x": "y"}]))
        out = await ctx.wait_records(1)
        assert [r[0] for r in out] == ["small"]

    run(plugin, body)
    assert plugin.counters["frames_invalid"] == 1


def test_gzip_bomb_is_refused() -> None:
    plugin = forward(buffer_chunk_size="1k", buffer_max_size="2k")
    inner = packb([1, {"x": "a" * 64_000}])
    bomb = gzip.compress(inner)
    assert len(bomb) < 1000

    async def body(ctx: Collect, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(packb(["bomb", bomb, {"compressed": "gzip"}]))
        await writer.drain()
        assert await read_until_closed(reader) == b""
        writer.close()

    run(plugin, body)
    assert plugin.counters["frames_invalid"] == 1


def test_paused_input_stops_reading() -> None:
    plugin = forward()

    async def body(ctx: Collect, port: int) -> None:
        await send(port, packb(["first", 1, {"n": 1}]))
        await ctx.wait_records(1)
        ctx.pause()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(packb(["second", 2, {"n": 2}, {"chunk": "p"}]))
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), 0.3)
        assert len(ctx.records()) == 1
        ctx.resume()
        reply = await asyncio.wait_for(reader.read(100), 5)
        assert msgpack.unpackb(reply) == {"ack": "p"}
        assert len(ctx.records()) == 2
        writer.close()

    run(plugin, body)


# --- handshake -----------------------------------------------------------------------------

def sha512_hex(*parts: bytes) -> str:
    return hashlib.sha512(b"".join(parts)).hexdigest()


async def handshake(port: int, key: str, user: str = "", password: str = "",
                    hostname: str = "client") -> tuple[list[Any], asyncio.StreamReader,
                                                       asyncio.StreamWriter]:
    """Do the client side of the handshake by hand; returns the PONG."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    up = msgpack.Unpacker(raw=False)
    helo: Any = None
    while helo is None:
        up.feed(await asyncio.wait_for(reader.read(4096), 5))
        helo = next(up, None)
    assert helo[0] == "HELO"
    nonce, auth = helo[1]["nonce"], helo[1]["auth"]
    assert len(nonce) == 16 and helo[1]["keepalive"] is True
    salt = b"0123456789abcdef"
    pwd = sha512_hex(auth, user.encode(), password.encode()) if auth else ""
    writer.write(packb(["PING", hostname, salt.decode(),
                        sha512_hex(salt, hostname.encode(), nonce, key.encode()),
                        user if auth else "", pwd]))
    await writer.drain()
    pong: Any = None
    while pong is None:
        data = await asyncio.wait_for(reader.read(4096), 5)
        assert data, "closed before PONG"
        up.feed(data)
        pong = next(up, None)
    if pong[1]:
        assert pong[4] == sha512_hex(salt, pong[3].encode(), nonce, key.encode())
    return pong, reader, writer


def test_shared_key_handshake_accepts_the_right_key_and_refuses_a_wrong_one() -> None:
    plugin = forward(shared_key="s3cret", self_hostname="server")

    async def body(ctx: Collect, port: int) -> None:
        pong, reader, writer = await handshake(port, "s3cret")
        assert pong[:4] == ["PONG", True, "", "server"]
        writer.write(packb(["secure", 1, {"ok": True}, {"chunk": "a"}]))
        await writer.drain()
        assert msgpack.unpackb(await asyncio.wait_for(reader.read(100), 5)) == {"ack": "a"}
        writer.close()

        pong, reader, writer = await handshake(port, "wrong")
        assert pong[1] is False and "shared_key" in pong[2]
        assert await read_until_closed(reader) == b""
        writer.close()

        # Sending events without a handshake is refused too.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(reader.read(4096), 5)  # HELO
        writer.write(packb(["sneaky", 1, {"x": 1}]))
        await writer.drain()
        reply = await read_until_closed(reader)
        assert msgpack.unpackb(reply)[:2] == ["PONG", False]
        writer.close()

    run(plugin, body)
    assert plugin.counters["auth_failures"] == 2


def test_events_pipelined_behind_the_ping() -> None:
    plugin = forward(shared_key="k")

    async def body(ctx: Collect, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        nonce = msgpack.unpackb(await asyncio.wait_for(reader.read(4096), 5))[1]["nonce"]
        salt = b"salt"
        ping = packb(["PING", "c", "salt", sha512_hex(salt, b"c", nonce, b"k"), "", ""])
        writer.write(ping + packb(["after.ping", 1, {"x": 1}, {"chunk": "c9"}]))
        await writer.drain()
        up = msgpack.Unpacker(raw=False)
        replies: list[Any] = []
        while len(replies) < 2:
            up.feed(await asyncio.wait_for(reader.read(4096), 5))
            replies.extend(up)
        assert replies[0][:2] == ["PONG", True] and replies[1] == {"ack": "c9"}
        assert ctx.records()[0][0] == "after.ping"
        writer.close()

    run(plugin, body)


def test_a_client_that_never_authenticates_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forward_module, "HANDSHAKE_TIMEOUT", 0.2)
    plugin = forward(shared_key="k")

    async def body(ctx: Collect, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        helo = msgpack.unpackb(await asyncio.wait_for(reader.read(4096), 5))
        assert helo[0] == "HELO"
        assert await read_until_closed(reader) == b""
        writer.close()

    run(plugin, body)
    assert plugin.counters["auth_failures"] == 1


def test_security_users() -> None:
    plugin = forward(shared_key="k", **{"security.users": "alice pw1"})

    async def body(ctx: Collect, port: int) -> None:
        pong, _, writer = await handshake(port, "k", "alice", "pw1")
        assert pong[1] is True
        writer.close()
        pong, _, writer = await handshake(port, "k", "alice", "nope")
        assert pong[1] is False and "password" in pong[2]
        writer.close()

    run(plugin, body)


def test_option_errors() -> None:
    from rillet.config.model import Section
    from rillet.config.options import resolve
    from rillet.engine.metrics import BY_KIND, Counters
    from rillet.engine.plugin import full_table

    def build(**settings: str) -> None:
        section = Section("input", "t.conf", 1)
        for k, v in settings.items():
            section.set(k, v)
        errors: list[str] = []
        opts = resolve(section, full_table(Forward), errors)
        assert errors == []
        import logging
        Forward("forward.0", opts, logging.getLogger("t"), Counters(BY_KIND["input"]))

    with pytest.raises(ValueError, match=r"security\.users"):
        build(**{"security.users": "bob pw"})
    with pytest.raises(ValueError, match="username password"):
        build(shared_key="k", **{"security.users": "bob"})
    with pytest.raises(ValueError, match="unix_perm"):
        build(unix_path="/tmp/x.sock", unix_perm="rw-")
    with pytest.raises(ValueError, match="tls"):
        build(tls="on")
