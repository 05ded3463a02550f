"""Shared pieces of the s3 output tests: building the plugin against moto (through the fault
proxy), running it, simulating a crash, and reading objects back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import orjson

from rillet.engine.plugin import FlushResult
from rillet.outputs.compress import decompress
from rillet.outputs.s3 import S3
from tests.peers.moto_server import MotoServer
from tests.plugin_kit import make_chunk, make_plugin

T0 = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z


def new_bucket(moto: MotoServer) -> str:
    name = f"rillet-{uuid.uuid4().hex[:12]}"
    moto.client("s3").create_bucket(Bucket=name)
    return name


def make(url: str, store: Path, bucket: str, **settings: str) -> S3:
    plugin = make_plugin(S3, bucket=bucket, endpoint=url, store_dir=str(store), **settings)
    plugin.retry_base = 0.02
    return plugin


async def crash(plugin: S3) -> None:
    """Stop the plugin the way SIGKILL would: no final uploads, nothing cleaned up."""
    task = plugin._task
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await plugin.client.close()
    plugin.store.close()  # the kernel releases a dead process's lock


def records(n: int, width: int = 100, start: int = 0) -> list[bytes]:
    pad = "x" * width
    return [b'{"log":"%s","n":%d}' % (pad.encode(), start + i) for i in range(n)]


def run(plugin: S3, chunks: list[tuple[str, list[Any]]], *, stop: bool = True,
        settle: float = 0.0) -> list[FlushResult]:
    """start, flush every (tag, bodies) chunk, optionally wait, then stop (or crash)."""
    async def go() -> list[FlushResult]:
        await plugin.start()
        out = [await plugin.flush(make_chunk(bodies, [T0 + i for i in range(len(bodies))],
                                             tag=tag)) for tag, bodies in chunks]
        if settle:
            await asyncio.sleep(settle)
        await (plugin.stop() if stop else crash(plugin))
        return out
    return asyncio.run(go())


def stream(plugin: S3, chunks: list[tuple[str, list[Any]]], parts: int,
           stop: bool = True) -> int:
    """start, flush every chunk, wait (10 s at most) until ``parts`` parts went out while the
    object is still open, then stop (or crash); returns the parts counted before that."""
    async def go() -> int:
        await plugin.start()
        for tag, bodies in chunks:
            assert await plugin.flush(make_chunk(bodies, tag=tag)) == 0  # Status.OK
        for _ in range(200):
            if plugin.counters["s3_parts_uploaded"] >= parts:
                break
            await asyncio.sleep(0.05)
        seen = plugin.counters["s3_parts_uploaded"]
        await (plugin.stop() if stop else crash(plugin))
        return seen
    return asyncio.run(go())


def objects(moto: MotoServer, bucket: str) -> dict[str, dict[str, Any]]:
    s3 = moto.client("s3")
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    out: dict[str, dict[str, Any]] = {}
    for item in listing:
        got = s3.get_object(Bucket=bucket, Key=item["Key"])
        out[item["Key"]] = {"body": got["Body"].read(), "etag": got["ETag"],
                            "encoding": got.get("ContentEncoding"),
                            "type": got.get("ContentType"),
                            "class": got.get("StorageClass")}
    return out


def only(moto: MotoServer, bucket: str) -> dict[str, Any]:
    """The bucket's one object (the test fails if there are more or none)."""
    (obj,) = objects(moto, bucket).values()
    return obj


def lines(data: bytes, compression: str | None = None) -> list[dict[str, Any]]:
    if compression:
        data = decompress(compression, data) if compression != "zstd" else zstd_all(data)
    assert data.endswith(b"\n")
    return [orjson.loads(line) for line in data.split(b"\n")[:-1]]


def zstd_all(data: bytes) -> bytes:
    """Every frame of a zstd stream (one frame per part), as ``zstd -d`` reads it."""
    import zstandard
    return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
