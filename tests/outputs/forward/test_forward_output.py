"""The forward output: byte-level protocol vectors and round trips with rillet's forward input."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest

from rillet.engine.chunk import Chunk
from rillet.engine.plugin import Partial, Status
from rillet.inputs.forward import Forward
from rillet.outputs.forward import ForwardOutput
from tests.engine.harness import make_pipeline, running, wait_for
from tests.inputs.forward.helpers import Collect, serving
from tests.plugin_kit import make_plugin

NS = 1_000_000_000
T = 1_700_000_000 * NS + 5  # 1700000000 s + 5 ns


def out(**settings: str) -> ForwardOutput:
    return make_plugin(ForwardOutput, **settings)


def chunk(bodies: list[Any], tag: str = "tag", times: list[int] | None = None) -> Chunk:
    return Chunk(tag, "dummy.0", times or [T + i for i in range(len(bodies))], bodies)


# Hand-assembled msgpack, straight from the spec's type table.
TS = b"\xd7\x00" + struct.pack(">II", 1_700_000_000, 5)       # EventTime fixext8
REC = b"\x81\xa1a\x01"                                         # {"a": 1}
ENTRY = b"\x92" + TS + REC                                      # [EventTime, {"a": 1}]
TAG = b"\xa3tag"                                                # "tag"


def frame(c: Chunk, plugin: ForwardOutput) -> bytes:
    frames = plugin.encode(c)
    assert len(frames) == 1
    return frames[0][0]


# --- protocol vectors ----------------------------------------------------------------------

def test_forward_mode_default() -> None:
    assert frame(chunk([{"a": 1}]), out()) == b"\x92" + TAG + b"\x91" + ENTRY


def test_json_text_bodies_encode_like_dicts() -> None:
    assert frame(chunk([b'{"a":1}']), out()) == b"\x92" + TAG + b"\x91" + ENTRY


def test_send_options_adds_size() -> None:
    expected = b"\x93" + TAG + b"\x91" + ENTRY + b"\x81\xa4size\x01"
    assert frame(chunk([{"a": 1}]), out(send_options="on")) == expected


def test_require_ack_response_sends_a_chunk_id() -> None:
    chunk_id = hashlib.sha512(ENTRY).digest()[:16].hex().encode()
    expected = (b"\x93" + TAG + b"\x91" + ENTRY + b"\x82\xa5chunk\xd9\x20" + chunk_id
                + b"\xa4size\x01")
    frames = out(require_ack_response="on").encode(chunk([{"a": 1}]))
    assert frames == [(expected, chunk_id.decode(), 1)]


def test_time_as_integer() -> None:
    entry = b"\x92\xce" + struct.pack(">I", 1_700_000_000) + REC
    assert frame(chunk([{"a": 1}]), out(time_as_integer="on")) == (
        b"\x92" + TAG + b"\x91" + entry)


def test_retain_metadata_in_forward_mode() -> None:
    entry = b"\x92\x92" + TS + b"\x80" + REC
    assert frame(chunk([{"a": 1}]), out(retain_metadata_in_forward_mode="on")) == (
        b"\x92" + TAG + b"\x91" + entry)


def test_compress_gzip_is_compressed_packed_forward() -> None:
    data = frame(chunk([{"a": 1}, {"a": 1}], times=[T, T]), out(compress="gzip"))
    up = msgpack.Unpacker(raw=False)
    up.feed(data)
    (tag, payload, options), = list(up)
    assert data[0] == 0x93 and tag == "tag" and isinstance(payload, bytes)
    assert data[1 + len(TAG)] == 0xC4  # bin 8
    assert gzip.decompress(payload) == ENTRY + ENTRY
    assert options == {"size": 2, "compressed": "gzip"}
    assert data.endswith(b"\x82\xa4size\x02\xaacompressed\xa4gzip")


def test_many_records_use_array16_and_static_tag_override() -> None:
    data = frame(chunk([{"a": 1}] * 20, times=[T] * 20), out(tag="new.$TAG"))
    assert data == b"\x92\xa7new.tag\xdc\x00\x14" + ENTRY * 20


def test_record_keys_in_tag_switch_to_message_mode() -> None:
    plugin = out(tag="app.$svc", require_ack_response="on")
    frames = plugin.encode(chunk([{"svc": "x"}, {"other": 1}], times=[T, T]))
    rec_x = b"\x81\xa3svc\xa1x"
    id_x = hashlib.sha512(TS + rec_x).digest()[:16].hex()
    assert frames[0] == (b"\x94\xa5app.x" + TS + rec_x + b"\x81\xa5chunk\xd9\x20"
                         + id_x.encode(), id_x, 1)
    # A record without the key keeps the chunk's tag (Fluent Bit: "Tag translation failed").
    assert frames[1][0].startswith(b"\x94" + TAG + TS + b"\x81\xa5other\x01")


def test_add_option_and_option_errors() -> None:
    data = frame(chunk([{"a": 1}]), out(add_option="fluent_signal 2"))
    assert data.endswith(b"\x82\xa4size\x01\xadfluent_signal\xa12")
    with pytest.raises(ValueError, match="time_as_integer"):
        ForwardOutput("forward.0", out(compress="gzip").opts | {"time_as_integer": True},
                      out().log, out().counters)
    with pytest.raises(ValueError, match="dynamic tags"):
        ForwardOutput("forward.0", out(compress="gzip").opts | {"tag": "$k"},
                      out().log, out().counters)
    with pytest.raises(ValueError, match="compress"):
        ForwardOutput("forward.0", out().opts | {"compress": "zstd"}, out().log,
                      out().counters)
    with pytest.raises(ValueError, match="upstream"):
        ForwardOutput("forward.0", out().opts | {"upstream": "/x.ini"}, out().log,
                      out().counters)


# --- round trips with rillet's own forward input --------------------------------------------

def roundtrip(inp: Forward, settings: dict[str, str],
              chunks: list[Chunk]) -> tuple[list[Any], Collect]:
    """Flush ``chunks`` through a forward output configured with ``settings`` to ``inp``."""
    results: list[Any] = []
    holder: dict[str, Collect] = {}

    async def main() -> None:
        async with serving(inp) as ctx:
            holder["ctx"] = ctx
            plugin = out(**{"port": str(inp.port), **settings}) if not inp.listener.unix_path \
                else out(**settings)
            for c in chunks:
                results.append(await plugin.flush(c))
            await ctx.wait_records(sum(len(c) for c in chunks))
            await plugin.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
    return results, holder["ctx"]


def listening(**settings: str) -> Forward:
    return make_plugin(Forward, listen="127.0.0.1", port="0", **settings)


def test_round_trip_with_ack_and_shared_key_handshake() -> None:
    inp = listening(shared_key="k3y", self_hostname="server", **{"security.users": "u p"})
    chunks = [chunk([{"n": i, "s": "é"} for i in range(100)]),
              chunk([b'{"raw":true}'], tag="other")]
    results, ctx = roundtrip(inp, {"shared_key": "k3y", "username": "u", "password": "p",
                                           "require_ack_response": "on",
                                           "compress": "gzip"}, chunks)
    assert results == [Status.OK, Status.OK]
    recs = ctx.records()
    assert [r[2]["n"] for r in recs[:100]] == list(range(100))
    assert recs[0] == ("tag", T, {"n": 0, "s": "é"})
    assert recs[100] == ("other", T, {"raw": True})
    assert inp.counters["acks"] == 2 and inp.counters["connections"] == 1  # kept alive


def test_round_trip_message_mode_over_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "fw.sock")
    inp = make_plugin(Forward, unix_path=path)
    results, ctx = roundtrip(inp, {"unix_path": path, "tag": "to.$dest",
                                      "require_ack_response": "on"},
                                [chunk([{"dest": "a"}, {"dest": "b"}])])
    assert results == [Status.OK]
    assert [r[0] for r in ctx.records()] == ["to.a", "to.b"]


def test_wrong_shared_key_is_retried() -> None:
    inp = listening(shared_key="right")

    async def main() -> None:
        async with serving(inp) as ctx:
            plugin = out(port=str(inp.port), shared_key="wrong")
            assert await plugin.flush(chunk([{"a": 1}])) is Status.RETRY
            assert ctx.records() == []
            await plugin.stop()

    asyncio.run(asyncio.wait_for(main(), 20))
    assert inp.counters["auth_failures"] == 1


def test_round_trip_over_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    crt, key, ca_file = tmp_path / "s.crt", tmp_path / "s.key", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(crt))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    inp = listening(tls="on", **{"tls.verify": "off", "tls.crt_file": str(crt),
                                 "tls.key_file": str(key)})
    results, ctx = roundtrip(inp, {"tls": "on", "tls.ca_file": str(ca_file),
                                      "require_ack_response": "on"}, [chunk([{"tls": 1}])])
    assert results == [Status.OK]
    assert ctx.records()[0][2] == {"tls": 1}


# --- failures against a scripted server ---------------------------------------------------

async def scripted(reply: bytes | None, close_after: bool = False) -> tuple[asyncio.Server,
                                                                            list[bytes]]:
    """A server that reads one frame's bytes and answers ``reply`` (None: never answers)."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            received.append(data)
            if reply is not None:
                writer.write(reply)
                await writer.drain()
            if close_after:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, received


def test_no_ack_within_the_timeout_is_a_retry() -> None:
    async def main() -> None:
        server, received = await scripted(None)
        port = server.sockets[0].getsockname()[1]
        plugin = out(port=str(port), require_ack_response="on", **{"net.io_timeout": "0.3"})
        assert await plugin.flush(chunk([{"a": 1}])) is Status.RETRY
        assert received
        await plugin.stop()
        server.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_wrong_ack_is_a_retry_and_message_mode_keeps_acked_records() -> None:
    async def main() -> None:
        server, _ = await scripted(msgpack.packb({"ack": "not-it"}))
        port = server.sockets[0].getsockname()[1]
        plugin = out(port=str(port), require_ack_response="on")
        assert await plugin.flush(chunk([{"a": 1}])) is Status.RETRY
        await plugin.stop()
        server.close()

        # Message mode: the server acknowledges only the first of two records.
        plugin = out(port="0", require_ack_response="on", tag="t.$k")
        first = plugin.encode(chunk([{"k": "1"}, {"k": "2"}]))[0][1]
        assert first is not None
        server, _ = await scripted(msgpack.packb({"ack": first}))
        plugin = out(port=str(server.sockets[0].getsockname()[1]), require_ack_response="on",
                     tag="t.$k", **{"net.io_timeout": "0.3"})
        result = await plugin.flush(chunk([{"k": "1"}, {"k": "2"}]))
        assert isinstance(result, Partial)
        assert result.segments == [(1, 2, Status.RETRY, "no ack")]
        await plugin.stop()
        server.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_reconnects_after_the_server_closes_and_when_it_is_down() -> None:
    async def main() -> None:
        server, received = await scripted(None, close_after=True)
        port = server.sockets[0].getsockname()[1]
        plugin = out(port=str(port))
        assert await plugin.flush(chunk([{"n": 1}])) is Status.OK
        await asyncio.sleep(0.1)  # the server has closed the kept-alive connection
        assert await plugin.flush(chunk([{"n": 2}])) is Status.OK
        await wait_for(lambda: len(received) == 2)
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.1)  # the last connection's close has reached us
        assert await plugin.flush(chunk([{"n": 3}])) is Status.RETRY  # nobody listening
        await plugin.stop()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_kept_alive_connection_closed_by_the_server_is_replaced_within_the_flush() -> None:
    """The server acknowledges the first frame, then drops that connection on the next one
    without answering (an idle timeout on its side): the flush succeeds on a new connection."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        first_connection = len(connections) == 1
        up = msgpack.Unpacker(raw=False)
        frames = 0
        while data := await reader.read(65536):
            up.feed(data)
            for frame in up:
                frames += 1
                if first_connection and frames == 2:
                    writer.close()
                    return
                writer.write(msgpack.packb({"ack": frame[2]["chunk"]}))
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        plugin = out(port=str(server.sockets[0].getsockname()[1]), require_ack_response="on")
        assert await plugin.flush(chunk([{"n": 1}])) is Status.OK
        assert await plugin.flush(chunk([{"n": 2}])) is Status.OK
        assert len(connections) == 2
        await plugin.stop()
        server.close()

    asyncio.run(asyncio.wait_for(main(), 20))


# --- the engine around it ------------------------------------------------------------------

def test_engine_pipeline_dummy_to_forward_to_forward_input() -> None:
    inp = listening(shared_key="k", tag_prefix="relay.")

    async def main() -> None:
        async with serving(inp) as ctx:
            pipeline = make_pipeline(
                inputs=[{"name": "dummy", "samples": 3, "rate": 100, "tag": "app",
                         "dummy": '{"hello":"world"}'}],
                outputs=[{"name": "forward", "match": "*", "port": inp.port, "shared_key": "k",
                          "require_ack_response": "on", "retry_limit": "no_limits"}])
            async with running(pipeline) as engine:
                await ctx.wait_records(3)
                out_counters = engine.pipeline.outputs[0].counters
                await wait_for(lambda: out_counters["proc_records"] == 3)
            assert {(r[0], r[2]["hello"]) for r in ctx.records()} == {("relay.app", "world")}

    asyncio.run(asyncio.wait_for(main(), 30))
