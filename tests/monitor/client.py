"""A minimal HTTP client for the tests (raw sockets: we test our server, not a client library)."""

from __future__ import annotations

import asyncio

import orjson


async def request(port: int, path: str, method: str = "GET", body: bytes = b"",
                  timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    writer.write(head + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    return parse(data)


def parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


async def get_json(port: int, path: str) -> tuple[int, object]:
    status, _, body = await request(port, path)
    return status, orjson.loads(body)
