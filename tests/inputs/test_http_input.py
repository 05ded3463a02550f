"""The http input over loopback: payload kinds, tags, answers, limits, TLS."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest
import zstandard

from rillet.inputs.http import Http, sanitize_tag
from tests.inputs.forward.helpers import Collect, serving
from tests.plugin_kit import make_plugin


def http(**settings: str) -> Http:
    return make_plugin(Http, listen="127.0.0.1", port="0", **settings)


def run(plugin: Http, body: Callable[[Collect, aiohttp.ClientSession, str], Awaitable[None]],
        scheme: str = "http", ssl_ctx: Any = None) -> None:
    async def main() -> None:
        async with serving(plugin) as ctx:
            connector = aiohttp.TCPConnector(ssl=ssl_ctx) if ssl_ctx else None
            async with aiohttp.ClientSession(connector=connector) as session:
                await body(ctx, session, f"{scheme}://127.0.0.1:{plugin.port}")
    asyncio.run(asyncio.wait_for(main(), 20))


JSON = {"Content-Type": "application/json"}


def test_json_object_and_array_with_tags_from_the_path() -> None:
    plugin = http(tag="default.tag")

    async def body(ctx: Collect, s: aiohttp.ClientSession, url: str) -> None:
        before = time.time_ns()
        async with s.post(url + "/app.log", data=b'{"a":1}', headers=JSON) as r:
            assert r.status == 201 and await r.read() == b""
        async with s.post(url + "/", data=b'[{"b":1},{"b":2}]', headers=JSON) as r:
            assert r.status == 201
        async with s.post(url + "/we%20ird/pa-th", data=b'{"c":1}',
                          headers={"Content-Type": "application/json; charset=utf-8"}) as r:
            assert r.status == 201
        out = ctx.records()
        assert [(tag, rec) for tag, _, rec in out] == [
            ("app.log", {"a": 1}), ("default.tag", {"b": 1}), ("default.tag", {"b": 2}),
            ("we_ird_pa_th", {"c": 1})]
        assert all(before <= t <= time.time_ns() for _, t, _ in out)

    run(plugin, body)
    assert plugin.counters["requests"] == 3


def test_instance_name_is_the_default_tag_and_tag_key() -> None:
    plugin = http(tag_key="dest")

    async def body(ctx: Collect, s: aiohttp.ClientSession, url: str) -> None:
        data = orjson.dumps([{"dest": "x.y", "v": 1}, {"v": 2}, {"dest": 5, "v": 3}])
        async with s.post(url + "/", data=data, headers=JSON) as r:
            assert r.status == 201
        assert [(tag, rec["v"]) for tag, _, rec in ctx.records()] == [
            ("x.y", 1), ("http.0", 2), ("http.0", 3)]

    run(plugin, body)


def test_msgpack_form_and_compressed_bodies() -> None:
    plugin = http()

    async def body(ctx: Collect, s: aiohttp.ClientSession, url: str) -> None:
        mp = msgpack.packb({"m": 1, "bin": b"\xffraw"}) + msgpack.packb([{"m": 2}])
        async with s.post(url + "/mp", data=mp,
                          headers={"Content-Type": "application/msgpack"}) as r:
            assert r.status == 201
        async with s.post(url + "/form", data=b"k=v+1&empty=&x=%41",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 201
        for enc, pack in (("gzip", gzip.compress), ("deflate", zlib.compress),
                          ("zstd", zstandard.ZstdCompressor().compress)):
            async with s.post(url + "/z", data=pack(orjson.dumps({"enc": enc})),
                              headers={**JSON, "Content-Encoding": enc}) as r:
                assert r.status == 201, enc
        assert [(tag, rec) for tag, _, rec in ctx.records()] == [
            ("mp", {"m": 1, "bin": "\ufffdraw"}), ("mp", {"m": 2}),
            ("form", {"k": "v 1", "empty": "", "x": "A"}),
            ("z", {"enc": "gzip"}), ("z", {"enc": "deflate"}), ("z", {"enc": "zstd"})]

    run(plugin, body)


@pytest.mark.parametrize(("data", "headers", "reason"), [
    (b'{"a":', JSON, b"invalid JSON"),
    (b"[1, 2]", JSON, b"array element 0 is not an object"),
    (b'"text"', JSON, b"object or an array"),
    (b'{"a":1}', {"Content-Type": "text/plain"}, b"invalid 'Content-Type'"),
    (b'{"a":1}', {}, b"Content-Type"),
    (b"", JSON, b"no payload"),
    (b"\x00garbage", {**JSON, "Content-Encoding": "gzip"}, b"compressed data"),
    (b'{"a":1}', {**JSON, "Content-Encoding": "br"}, b"unsupported Content-Encoding"),
    (b"\xc1", {"Content-Type": "application/msgpack"}, b"invalid msgpack"),
])
def test_bad_payloads_get_400_with_a_reason(data: bytes, headers: dict[str, str],
                                            reason: bytes) -> None:
    plugin = http()

    async def body(ctx: Collect, s: aiohttp.ClientSession, url: str) -> None:
        async with s.post(url + "/bad", data=data, headers=headers,
                          skip_auto_headers=("Content-Type",)) as r:
            assert r.status == 400
            assert reason in await r.read()
        # The connection and the server keep working.
        async with s.post(url + "/good", data=b'{"ok":1}', headers=JSON) as r:
            assert r.status == 201
        assert [tag for tag, _, _ in ctx.records()] == ["good"]

    run(plugin, body)
    assert plugin.counters["requests_invalid"] == 1


def test_method_health_size_limit_and_gzip_bomb() -> None:
    plugin = http(buffer_max_size="1k")

    async def body(ctx: Collect, s: aiohttp.ClientSession, url: str) -> None:
        async with s.get(url + "/app") as r:
            assert r.status == 400 and b"invalid HTTP method" in await r.read()
        async with s.get(url + "/health") as r:
            assert r.status == 200 and orjson.loads(await r.read())["status"] == "ok"
        async with s.post(url + "/big", data=b'{"a":"' + b"x" * 2000 + b'"}',
                          headers=JSON) as r:
            assert r.status == 413
        bomb = gzip.compress(b'{"a":"' + b"x" * 100_000 + b'"}')
        async with s.post(url + "/bomb", data=bomb,
                          headers={**JSON, "Content-Encoding": "gzip"}) as r:
            assert r.status == 400 and b"exceed" in await r.read()
        assert ctx.records() == []

    run(plugin, body)


def test_success_code_and_headers() -> None:
    plugin = make_plugin(Http, listen="127.0.0.1", port="0", successful_response_code="200",
                         success_header="X-Ok yes please")

    async def body(ctx: Collect, s: aiohttp.ClientSession, url: str) -> None:
        async with s.post(url + "/t", data=b'{"a":1}', headers=JSON) as r:
            assert r.status == 200 and r.headers["X-Ok"] == "yes please"

    run(plugin, body)


RawBody = Callable[[Collect, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run_raw(plugin: Http, body: RawBody) -> None:
    """Run ``body`` with a plain TCP connection to the input (for bytes clients never send)."""
    async def main() -> None:
        async with serving(plugin) as ctx:
            reader, writer = await asyncio.open_connection("127.0.0.1", plugin.port)
            await body(ctx, reader, writer)
            writer.close()
    asyncio.run(asyncio.wait_for(main(), 20))


def test_chunked_body_and_keep_alive_on_a_raw_connection() -> None:
    async def body(ctx: Collect, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        writer.write(b"POST /ch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"
                     b"4\r\n{\"a\"\r\n4;ext=1\r\n:12}\r\n0\r\n\r\n"
                     b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 7\r\n\r\n{\"b\":2}")
        await writer.drain()
        seen = b""
        while seen.count(b"201 Created") < 2:
            chunk = await asyncio.wait_for(reader.read(4096), 5)
            assert chunk
            seen += chunk
        assert [(t, r) for t, _, r in ctx.records()] == [("ch", {"a": 12}), ("cl", {"b": 2})]

    run_raw(http(), body)


def test_expect_100_continue() -> None:
    async def body(ctx: Collect, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        writer.write(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 7\r\nExpect: 100-continue\r\n\r\n")
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b'{"e":1}')
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert final.startswith(b"HTTP/1.1 201 Created")
        assert ctx.records()[0][2] == {"e": 1}

    run_raw(http(), body)


def test_paused_input_holds_the_answer() -> None:
    plugin = http()

    async def body(ctx: Collect, s: aiohttp.ClientSession, url: str) -> None:
        ctx.pause()
        task = asyncio.create_task(s.post(url + "/p", data=b'{"a":1}', headers=JSON))
        await asyncio.sleep(0.3)
        assert not task.done() and ctx.records() == []
        ctx.resume()
        r = await asyncio.wait_for(task, 5)
        assert r.status == 201
        r.release()
        assert len(ctx.records()) == 1

    run(plugin, body)


def test_ack_on_commit_answers_after_the_records_are_final() -> None:
    plugin = http(ack_on="commit", tag_key="t")

    async def body(ctx: Collect, s: aiohttp.ClientSession, url: str) -> None:
        data = orjson.dumps([{"t": "a"}, {"t": "b"}])
        task = asyncio.create_task(s.post(url + "/", data=data, headers=JSON))
        await ctx.wait_records(2)
        await asyncio.sleep(0.2)
        assert not task.done()
        plugin.on_ack(ctx.batches[0].ack, True)
        await asyncio.sleep(0.2)
        assert not task.done()  # the second batch is not final yet
        plugin.on_ack(ctx.batches[1].ack, True)
        r = await asyncio.wait_for(task, 5)
        assert r.status == 201
        r.release()

    run(plugin, body)


def test_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    crt, key = tmp_path / "s.crt", tmp_path / "s.key"
    cert.cert_chain_pems[0].write_to_path(str(crt))
    cert.private_key_pem.write_to_path(str(key))
    plugin = http(tls="on", **{"tls.crt_file": str(crt), "tls.key_file": str(key)})
    client = ssl.create_default_context()
    ca.configure_trust(client)

    async def body(ctx: Collect, s: aiohttp.ClientSession, url: str) -> None:
        async with s.post(url + "/secure", data=b'{"tls":true}', headers=JSON) as r:
            assert r.status == 201
        assert ctx.records()[0][:1] == ("secure",)

    run(plugin, body, "https", client)


def test_sanitize_tag() -> None:
    assert sanitize_tag("/app.log") == "app.log"
    assert sanitize_tag("/a/b-c d") == "a_b_c_d"
