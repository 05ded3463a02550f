"""The tcp input over loopback: json and none formats, bad JSON, limits, source address."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
import pytest

from rillet.inputs.tcp import Tcp, scan_json, unescape
from tests.engine import plugins
from tests.engine.harness import make_pipeline, running, wait_for
from tests.engine.plugins import Sink
from tests.inputs.forward.helpers import Collect, read_until_closed, serving
from tests.plugin_kit import make_plugin


def tcp(**settings: str) -> Tcp:
    return make_plugin(Tcp, listen="127.0.0.1", port="0", **settings)


def run(plugin: Tcp, body: Callable[[Collect, int], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving(plugin) as ctx:
            await body(ctx, plugin.port)
    asyncio.run(asyncio.wait_for(main(), 20))


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def test_json_lines_concatenated_and_split_across_writes() -> None:
    plugin = tcp(tag="app")

    async def body(ctx: Collect, port: int) -> None:
        _, w = await connect(port)
        w.write(b'{"a":1}\n{"a":2}{"a":3}\n{"a":')
        await w.drain()
        await ctx.wait_records(3)
        w.write(b'4}\n[{"a":5},{"a":6}]\n{\n  "a": 7\n}\n{"a": 8}')
        await w.drain()
        out = await ctx.wait_records(8)
        assert [r["a"] for _, _, r in out] == [1, 2, 3, 4, 5, 6, 7, 8]
        assert {tag for tag, _, _ in out} == {"app"}
        w.close()

    run(plugin, body)
    assert plugin.counters["records_invalid"] == 0


def test_bad_json_is_counted_and_the_connection_kept() -> None:
    plugin = tcp()

    async def body(ctx: Collect, port: int) -> None:
        reader, w = await connect(port)
        w.write(b'{"ok":1}\nnot json\n{"bad": }\n42\n"str"\n{"ok":2}\n')
        await w.drain()
        out = await ctx.wait_records(2)
        assert [r for _, _, r in out] == [{"ok": 1}, {"ok": 2}]
        w.write(b'{"ok":3}\n')
        await w.drain()
        await ctx.wait_records(3)
        assert not reader.at_eof()
        w.close()

    run(plugin, body)
    assert plugin.counters["records_invalid"] == 4


def test_bad_input_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    plugin = tcp()

    async def body(ctx: Collect, port: int) -> None:
        _, w = await connect(port)
        for i in range(5):
            w.write(b"oops\n" + b'{"n":%d}\n' % i)
            await w.drain()
            await ctx.wait_records(i + 1)
        w.close()

    with caplog.at_level(logging.DEBUG, logger=plugin.log.name):
        run(plugin, body)
    mine = [r for r in caplog.records if r.name == plugin.log.name and "invalid" in r.message]
    assert [r.levelno for r in mine] == [logging.WARNING] + [logging.DEBUG] * 4
    assert plugin.counters["records_invalid"] == 5


def test_format_none_with_separator_and_source_address_key() -> None:
    plugin = tcp(format="none", separator="\\r\\n", source_address_key="src")

    async def body(ctx: Collect, port: int) -> None:
        _, w = await connect(port)
        w.write(b"first line\r\nsecond\r\n\r\nthi")
        await w.drain()
        await ctx.wait_records(2)
        w.write(b"rd\r\nunterminated")
        await w.drain()
        w.close()  # EOF delivers the last unterminated piece
        out = await ctx.wait_records(4)
        assert [r["log"] for _, _, r in out] == ["first line", "second", "third",
                                                 "unterminated"]
        local = w.get_extra_info("sockname")
        assert {r["src"] for _, _, r in out} == {f"tcp://127.0.0.1:{local[1]}"}

    run(plugin, body)


def test_incomplete_record_over_buffer_size_closes_the_connection() -> None:
    plugin = tcp(chunk_size="1", buffer_size="2")

    async def body(ctx: Collect, port: int) -> None:
        reader, w = await connect(port)
        w.write(b'{"ok":1}\n{"a":"' + b"x" * 5000)
        await w.drain()
        assert await read_until_closed(reader) == b""
        out = await ctx.wait_records(1)
        assert [r for _, _, r in out] == [{"ok": 1}]
        w.close()

    run(plugin, body)
    assert plugin.counters["connections_overflow"] == 1


def test_paused_input_stops_reading() -> None:
    plugin = tcp()

    async def body(ctx: Collect, port: int) -> None:
        ctx.pause()
        _, w = await connect(port)
        w.write(b'{"a":1}\n')
        await w.drain()
        await asyncio.sleep(0.2)
        assert ctx.records() == []
        ctx.resume()
        await ctx.wait_records(1)
        w.close()

    run(plugin, body)


def test_engine_backpressure_loses_nothing() -> None:
    """Through the real engine: with Mem_Buf_Limit and a stuck output the input pauses, the
    client is held back by TCP, and once the output recovers every record arrives."""
    plugins.STATE["tcp-sink"] = sink = Sink()
    n = 3000

    async def main() -> None:
        gate = sink.gate = asyncio.Event()
        pipeline = make_pipeline(
            inputs=[{"name": "tcp", "listen": "127.0.0.1", "port": 0, "tag": "t",
                     "mem_buf_limit": "4k"}],
            outputs=[{"name": "test_sink", "match": "*", "id": "tcp-sink"}])
        async with running(pipeline) as engine:
            plugin = pipeline.inputs[0].plugin
            assert isinstance(plugin, Tcp)
            await asyncio.wait_for(plugin.ready.wait(), 5)
            _, w = await connect(plugin.port)
            w.write(b"".join(b'{"i":%d,"pad":"%s"}\n' % (i, b"x" * 50) for i in range(n)))
            await wait_for(lambda: engine.input_state()["tcp.0"]["paused"], 5)
            gate.set()
            await w.drain()
            w.close()
            await wait_for(lambda: len(sink.delivered) == n, 10)
        got = [orjson.loads(b)["i"] for b in sink.delivered]
        assert sorted(got) == list(range(n))

    asyncio.run(asyncio.wait_for(main(), 30))


def test_scanner_and_options() -> None:
    assert scan_json(b'{"a":"}{"} [1] x {"b"') == ([b'{"a":"}{"}', b"[1]"], 1, b'{"b"')
    assert scan_json(b'} {"a":1}') == ([b'{"a":1}'], 1, b"")
    assert unescape("\\t|\\n") == b"\t|\n"
    with pytest.raises(ValueError, match="KB"):
        Tcp("tcp.0", tcp().opts | {"chunk_size": "lots"}, tcp().log, tcp().counters)
