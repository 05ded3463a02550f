"""A loopback S3 sink for benchmarks, and the s3 output run through it.

The sink (``serve``, run as a subprocess so its CPU is not counted as rillet's) speaks the part of
S3 the s3 output uses: PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
AbortMultipartUpload and ListMultipartUploads. It keeps nothing but counters: objects, parts,
bytes received, and the records (lines) they hold, decompressing gzip/zstd bodies to count them.
``GET /__stats`` answers the counters as JSON.

:func:`run_s3` runs the s3 output alone (no engine): chunks of ``batch`` records are flushed
(encode + stage in store_dir with fsync; a full ``store_dir_limit_size`` is waited out as the
engine would retry), then ``stop()`` uploads everything; it returns rillet's CPU-seconds and
the output's counters, so the caller can report records per CPU-second.

    .venv/bin/python bench/_s3_sink.py [--records 1000000] [--compression none,gzip,zstd]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

_UPLOAD_ID = re.compile(r"(?:^|&)uploadId=([^&]+)")


def _count_lines(body: bytes, encoding: str) -> int:
    if encoding == "gzip":
        from isal import igzip
        body = igzip.decompress(body)
    elif encoding == "zstd":
        import zstandard
        body = zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True).read()
    return body.count(b"\n")


def serve(port: int) -> None:
    """Run the sink on 127.0.0.1:``port`` until killed. Objects are counted by key and parts
    by (upload, part number), as S3 keeps them: a request sent again replaces, never adds."""
    from aiohttp import web

    objects: dict[str, tuple[int, int]] = {}  # key -> (bytes, records)
    uploads: dict[str, tuple[str, str, dict[int, tuple[int, int]]]] = {}
    counts = {"requests": 0, "parts": 0, "errors": 0}
    next_id = [0]

    def stats() -> dict[str, int]:
        return {"objects": len(objects), "bytes": sum(b for b, _ in objects.values()),
                "records": sum(r for _, r in objects.values()), **counts}

    def error(status: int, code: str) -> web.Response:
        counts["errors"] += 1
        return web.Response(status=status, text=f"<Error><Code>{code}</Code></Error>",
                            content_type="application/xml")

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/__stats":
            return web.Response(body=orjson.dumps(stats()), content_type="application/json")
        counts["requests"] += 1
        query = request.query_string
        key = request.path
        body = await request.read()
        method = request.method
        m = _UPLOAD_ID.search(query)
        if method == "POST" and query == "uploads":
            next_id[0] += 1
            upload_id = f"u{next_id[0]}"
            uploads[upload_id] = (key, request.headers.get("Content-Encoding", ""), {})
            return web.Response(text=f"<InitiateMultipartUploadResult><UploadId>{upload_id}"
                                "</UploadId></InitiateMultipartUploadResult>",
                                content_type="application/xml")
        if m is not None:
            upload = uploads.get(m.group(1))
            if upload is None:
                return error(404, "NoSuchUpload")
            if method == "PUT":
                number = int(request.query.get("partNumber", "0"))
                upload[2][number] = (len(body), _count_lines(body, upload[1]))
                counts["parts"] += 1
                return web.Response(headers={"ETag": f'"p{number}"'})
            del uploads[m.group(1)]
            if method == "POST":
                parts = upload[2].values()
                objects[upload[0]] = (sum(b for b, _ in parts), sum(r for _, r in parts))
                return web.Response(text="<CompleteMultipartUploadResult/>",
                                    content_type="application/xml")
            return web.Response(status=204)
        if method == "GET":
            return web.Response(text="<ListMultipartUploadsResult/>",
                                content_type="application/xml")
        if method == "PUT":
            objects[key] = (len(body),
                            _count_lines(body, request.headers.get("Content-Encoding", "")))
            return web.Response(headers={"ETag": '"o"'})
        return error(400, "BadRequest")

    async def main() -> None:
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", handle)
        # Bodies as sent: aiohttp would otherwise undo their Content-Encoding itself.
        runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


class Sink:
    """The sink as a subprocess on a free loopback port."""

    def __init__(self) -> None:
        from tests.peers.moto_server import free_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(self.port)],
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("the S3 sink did not start") from None
                time.sleep(0.05)

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/__stats", timeout=2) as r:
            data: dict[str, int] = orjson.loads(r.read())
            return data

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_s3(bodies: list[bytes], total: int, sink_url: str, compression: str | None = None,
           batch: int = 1000, store_dir: str | None = None,
           **settings: str) -> dict[str, Any]:
    """Flush ``total`` records (cycled from ``bodies``) through the s3 output into the sink,
    then stop it (which uploads everything). Returns rillet's CPU and wall seconds."""
    from rillet.engine.plugin import Status
    from rillet.outputs.s3 import S3
    from tests.plugin_kit import make_chunk, make_plugin

    for key, value in {"AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(dir=store_dir) as store:
        opts = {"bucket": "bench-bucket", "endpoint": sink_url, "store_dir": store,
                "total_file_size": "50M", "upload_chunk_size": "5M",
                "store_dir_limit_size": "200M",
                "s3_key_format": "/bench/$TAG/%Y/%m/%d/$UUID", **settings}
        if compression:
            opts["compression"] = compression
        plugin = make_plugin(S3, **opts)
        n = len(bodies)
        tag = "kube.var.log.containers.bench_default_app-0123.log"

        async def go() -> None:
            await plugin.start()
            sent = 0
            while sent < total:
                k = min(batch, total - sent)
                now = time.time_ns()
                chunk = make_chunk([bodies[(sent + j) % n] for j in range(k)],
                                   [now + j for j in range(k)], tag=tag)
                # A full store_dir answers RETRY: wait for the uploads, as the engine would.
                while await plugin.flush(chunk) is Status.RETRY:
                    await asyncio.sleep(0.02)
                sent += k
            await plugin.stop()

        cpu0, wall0 = time.process_time(), time.perf_counter()
        asyncio.run(go())
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"records": total, "cpu": cpu, "wall": wall, "counters": dict(plugin.counters)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--compression", default="none,gzip")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cloudwatch_bench import load_samples
    bodies = load_samples(1_000_000)
    print(f"{'s3 output':<12} {'records':>9} {'cpu s':>7} {'wall s':>7} {'rec/cpu-s':>10} "
          f"{'objects':>7} {'parts':>5} {'MB stored':>9} {'arrived':>9} {'errors':>6}")
    for name in args.compression.split(","):
        compression = None if name == "none" else name
        with Sink() as sink:
            res = run_s3(bodies, args.records, sink.url, compression)
            st = sink.stats()
        print(f"{name:<12} {res['records']:>9} {res['cpu']:>7.2f} {res['wall']:>7.2f} "
              f"{res['records'] / res['cpu']:>10,.0f} {st['objects']:>7} {st['parts']:>5} "
              f"{st['bytes'] / 1e6:>9.1f} {st['records']:>9} {st['errors']:>6}")


if __name__ == "__main__":
    main()
