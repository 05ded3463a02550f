"""The HTTP server against slow, stuck and malformed clients, and its cost to the pipeline."""

from __future__ import annotations

import asyncio
import logging

from rillet.engine.chunk import Batch
from rillet.monitor.http import HttpServer, Request, Response
from tests.engine.harness import wait_for
from tests.engine.plugins import STATE, Feed, Sink
from tests.monitor.client import parse, request
from tests.monitor.helpers import agent_running, make, port


async def _hello(request: Request) -> Response:
    return Response(200, b"hello " + request.path.encode() + b"\n")


async def _raw(p: int, data: bytes, timeout: float = 3.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", p)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def test_malformed_requests_get_an_error_and_the_server_keeps_serving() -> None:
    async def main() -> None:
        server = HttpServer("127.0.0.1", 0, _hello, logging.getLogger("t"), max_head=1024,
                            max_body=16)
        await server.start()
        p = server.port
        cases = {
            b"garbage\r\n\r\n": 400,
            b"GET / HTTP/9.9\r\n\r\n": 505,
            b"GET noslash HTTP/1.1\r\n\r\n": 400,
            b"G\x00T / HTTP/1.1\r\n\r\n": 400,
            b"GET / HTTP/1.1\r\nbad header line\r\n\r\n": 400,
            b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n": 431,
            b"POST / HTTP/1.1\r\nContent-Length: 99\r\n\r\n": 413,
            b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n": 400,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n": 501,
            b"\xff\xfe\r\n\r\n": 400,
        }
        for data, expected in cases.items():
            status, _, _ = parse(await _raw(p, data))
            assert status == expected, (data[:40], status)
        # Binary garbage without a head terminator: dropped at the size cap, no crash.
        answer = await _raw(p, bytes(range(256)) * 8)
        assert answer == b"" or parse(answer)[0] == 431
        assert (await request(p, "/ok"))[2] == b"hello /ok\n"
        await server.close()

    asyncio.run(main())


def test_slow_and_stuck_clients_are_dropped_at_their_deadline() -> None:
    async def main() -> None:
        server = HttpServer("127.0.0.1", 0, _hello, logging.getLogger("t"), head_timeout=1.0,
                            body_timeout=1.0, max_clients=8)
        await server.start()
        p = server.port
        # Clients that send half a request and then nothing.
        stuck = []
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", p)
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
            stuck.append((reader, writer))
        # One that promises a body and sends half of it.
        reader, writer = await asyncio.open_connection("127.0.0.1", p)
        writer.write(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        stuck.append((reader, writer))
        # Meanwhile a normal client is served at once.
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert (await request(p, "/fast"))[0] == 200
        assert loop.time() - t0 < 0.8  # well before the stuck ones' deadline
        # After their deadline the stuck ones are closed by the server.
        for reader, _ in stuck:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        await wait_for(lambda: not server.clients, 2)
        # Too many connections at once: the extra ones get 503, nothing piles up.
        many = [await asyncio.open_connection("127.0.0.1", p) for _ in range(8)]
        await asyncio.sleep(0.05)
        status, _, _ = parse(await _raw(p, b"GET / HTTP/1.1\r\n\r\n"))
        assert status == 503
        for _, w in many:
            w.close()
        await wait_for(lambda: not server.clients, 2)
        assert (await request(p, "/again"))[0] == 200
        await server.close()

    asyncio.run(main())


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def main() -> None:
        server = HttpServer("127.0.0.1", 0, _hello, logging.getLogger("t"))
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for path in ("/a", "/b", "/c"):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert await reader.readexactly(length) == f"hello {path}\n".encode()
        writer.close()
        await server.close()

    asyncio.run(main())


def test_a_client_that_does_not_read_never_blocks_the_pipeline() -> None:
    async def main() -> None:
        STATE["nb"] = Feed()
        STATE["nb-out"] = Sink()
        load = make({"flush": 0.02},
                    inputs=[{"name": "test_feed", "id": "nb", "tag": "t"}],
                    outputs=[{"name": "test_sink", "id": "nb-out", "match": "*"}])
        async with agent_running(load) as agent:
            p = port(agent)
            assert agent.server is not None
            agent.server.write_timeout = 0.5
            # Pipelined requests that are never read: the answers fill the socket buffers.
            _reader, writer = await asyncio.open_connection("127.0.0.1", p)
            writer.transport.set_write_buffer_limits(high=1 << 30)
            burst = b"GET /api/v2/metrics/prometheus HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
            writer.write(burst)
            feed: Feed = STATE["nb"]
            sink: Sink = STATE["nb-out"]
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i in range(50):
                feed.put(Batch("t", [i], [{"i": i}], 5))
            await wait_for(lambda: len(sink.delivered) == 50, 5)
            assert loop.time() - t0 < 2.0
            # The stuck reader is dropped once its write deadline passes.
            await wait_for(lambda: not agent.server.clients if agent.server else True, 5)
            assert (await request(p, "/api/v1/uptime"))[0] == 200
            writer.close()

    asyncio.run(main())
