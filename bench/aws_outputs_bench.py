"""The AWS outputs end to end: records like the seed's target record, through the real engine,
into each output, against a counting loopback sink that speaks the output's API.

moto would be the bottleneck for Kinesis and Firehose, so the sink is a small aiohttp server (in
its own process: its CPU is not rillet's) that answers PutRecords / PutRecordBatch / S3 PUT and
multipart uploads with success and counts what it received. Prints, per output and compression:

- records per CPU-second of rillet (engine + input + output, this process);
- records per CPU-second of the output alone: rillet's CPU minus the same run into ``null``;
- what the sink counted (records, requests), which must match what was sent.

    .venv/bin/python bench/aws_outputs_bench.py [--records 1000000] [--outputs a,b]
        [--compression none,gzip] [--workers 1]

Records are cycled from shared/bench/fluentbit_sample_output.jsonl (as bench/cloudwatch_bench.py
does, which this script reuses for the input, the engine run and the samples).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cloudwatch_bench as cwb
import orjson

from rillet import log as rlog
from tests.peers.moto_server import TEST_ENV, free_port

# One row per output: its [OUTPUT] settings (endpoint, compression and workers are added) and
# what the sink counts as one record for it.
OUTPUTS: dict[str, dict[str, Any]] = {
    "kinesis_streams": {"name": "kinesis_streams", "region": "us-east-1", "stream": "bench"},
    "kinesis_streams+partition_key": {"name": "kinesis_streams", "region": "us-east-1",
                                      "stream": "bench",
                                      "partition_key": "kubernetes->pod_name"},
    "kinesis_streams+aggregation": {"name": "kinesis_streams", "region": "us-east-1",
                                    "stream": "bench", "aggregation": "on"},
    "kinesis_firehose": {"name": "kinesis_firehose", "region": "us-east-1",
                         "delivery_stream": "bench"},
    "kinesis_firehose+simple_aggregation": {"name": "kinesis_firehose", "region": "us-east-1",
                                            "delivery_stream": "bench",
                                            "simple_aggregation": "on"},
    # The s3 output (rillet/outputs/s3/): objects staged in a temporary store_dir, uploaded in
    # 5 MB multipart parts; the sink counts the newline-delimited records it receives.
    "s3": {"name": "s3", "region": "us-east-1", "bucket": "bench",
           "total_file_size": "50M", "upload_chunk_size": "5M", "upload_timeout": "2s",
           "store_dir": "@tmp"},
}
DEFAULT_OUTPUTS = ("kinesis_streams,kinesis_streams+partition_key,kinesis_firehose,"
                   "kinesis_firehose+simple_aggregation,s3")


# --- the sink (runs in its own process: ``--serve PORT``) ------------------------------------

def serve(port: int) -> None:
    from aiohttp import web

    stats = {"records": 0, "requests": 0, "bytes": 0}
    kinesis_answers: dict[int, bytes] = {}
    firehose_answers: dict[int, bytes] = {}

    def kinesis_answer(n: int) -> bytes:
        body = kinesis_answers.get(n)
        if body is None:
            body = kinesis_answers[n] = orjson.dumps(
                {"FailedRecordCount": 0,
                 "Records": [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"}] * n})
        return body

    def firehose_answer(n: int) -> bytes:
        body = firehose_answers.get(n)
        if body is None:
            body = firehose_answers[n] = orjson.dumps(
                {"FailedPutCount": 0, "Encrypted": False,
                 "RequestResponses": [{"RecordId": "r"}] * n})
        return body

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        stats["requests"] += 1
        stats["bytes"] += len(body)
        target = request.headers.get("X-Amz-Target", "")
        if target.endswith(".PutRecords"):
            n = body.count(b'"Data"')
            records = n
            if b'"Data":"84ma' in body:  # base64 of the KPL magic: open the aggregates
                records = sum(_kpl_count(base64.b64decode(entry["Data"]))
                              for entry in orjson.loads(body)["Records"])
            stats["records"] += records
            return web.Response(body=kinesis_answer(n),
                                content_type="application/x-amz-json-1.1")
        if target.endswith(".PutRecordBatch"):
            n = body.count(b'"Data"')
            stats["records"] += sum(_lines(base64.b64decode(entry["Data"]))
                                    for entry in orjson.loads(body)["Records"])
            return web.Response(body=firehose_answer(n),
                                content_type="application/x-amz-json-1.1")
        if request.path == "/stats":
            return web.json_response(stats)
        return _s3(request, body, stats)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _lines(data: bytes) -> int:
    """Records in a Firehose record: newline-terminated, maybe joined and compressed."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    elif data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return max(1, data.count(b"\n"))


def _kpl_count(data: bytes) -> int:
    if data[:4] == b"\xf3\x89\x9a\xc2":
        from rillet.outputs import kpl
        return len(kpl.deaggregate(data))
    return 1


_UPLOADS: dict[str, dict[int, bytes]] = {}  # upload id -> parts (gzip parts split a stream)


def _s3(request: Any, body: bytes, stats: dict[str, int]) -> Any:
    from aiohttp import web

    q = request.query

    def count(data: bytes) -> None:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        stats["records"] += data.count(b"\n")

    if request.method == "POST" and "uploads" in q:
        upload_id = f"u{len(_UPLOADS) + 1}"
        _UPLOADS[upload_id] = {}
        return web.Response(text="<InitiateMultipartUploadResult><UploadId>" + upload_id
                                 + "</UploadId></InitiateMultipartUploadResult>",
                            content_type="application/xml")
    if request.method == "POST" and "uploadId" in q:
        parts = _UPLOADS.pop(q["uploadId"], {})
        count(b"".join(parts[k] for k in sorted(parts)))
        return web.Response(text='<CompleteMultipartUploadResult><ETag>"e"</ETag>'
                                 "</CompleteMultipartUploadResult>",
                            content_type="application/xml")
    if request.method == "GET":
        return web.Response(text="<ListMultipartUploadsResult></ListMultipartUploadsResult>",
                            content_type="application/xml")
    if request.method == "PUT" and "uploadId" in q:
        _UPLOADS.setdefault(q["uploadId"], {})[int(q["partNumber"])] = body
        return web.Response(headers={"ETag": '"e"'})
    if request.method == "PUT":
        count(body)
        return web.Response(headers={"ETag": '"e"'})
    if request.method == "DELETE":
        return web.Response(status=204)
    return web.Response(status=400, text="unexpected request")


# --- the runs -----------------------------------------------------------------------------------

def sink_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/stats", timeout=10) as resp:
        data: dict[str, int] = orjson.loads(resp.read())
    return data


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            sink_stats(url)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the sink did not start")


def run_output(label: str, compression: str, workers: int, n: int, base_cpu: float) -> None:
    settings = dict(OUTPUTS[label])
    proc, url = start_sink()
    tmp = tempfile.TemporaryDirectory(prefix="rillet-bench-")
    try:
        if settings.get("store_dir") == "@tmp":
            settings["store_dir"] = tmp.name
        settings.update(endpoint=url, workers=workers)
        if compression != "none":
            settings["compression"] = compression
        name = f"{settings['name']}.0"
        cpu, wall, sink_cpu, counters = asyncio.run(cwb._run(n, settings, name, False,
                                                             proc.pid))
        # Outputs that stage records (s3) deliver after the flush said OK: wait for the sink.
        deadline = time.monotonic() + 60
        stats = sink_stats(url)
        while stats["records"] < n and time.monotonic() < deadline:
            time.sleep(0.2)
            stats = sink_stats(url)
        out_cpu = max(cpu - base_cpu, 1e-9)
        print(f"| {label:<30} | {compression:<5} | {n / cpu:>10,.0f} | {n / out_cpu:>10,.0f} | "
              f"{n / wall:>9,.0f} | {sink_cpu:6.1f} | {stats['records']:>9,} | "
              f"{stats['requests']:>7,} | {counters['dropped_records']:>7} |", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--outputs", default=DEFAULT_OUTPUTS,
                        help=f"comma list of: {', '.join(OUTPUTS)}")
    parser.add_argument("--compression", default="none,gzip")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-record", type=int, default=16384)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    os.environ.update(TEST_ENV)
    rlog.setup("warn")
    cwb._RECORDS[:] = cwb.load_samples(args.max_record)
    avg = sum(map(len, cwb._RECORDS)) / len(cwb._RECORDS)
    n = args.records
    print(f"{n:,} records of {len(cwb._RECORDS)} sample shapes (avg {avg:,.0f} bytes), "
          f"workers {args.workers}, counting loopback sink in its own process")
    base_cpu, _, _, _ = asyncio.run(cwb._run(n, {"name": "null"}, "null.0", False, None))
    print(f"engine alone (null output): {base_cpu:.2f} CPU-s ({n / base_cpu:,.0f} records per "
          "CPU-second)")
    print("| output | compr | rillet rec/CPU-s | output alone rec/CPU-s | rec/s wall | "
          "sink CPU-s | sink records | requests | dropped |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label in args.outputs.split(","):
        for compression in args.compression.split(","):
            try:
                run_output(label, compression, args.workers, n, base_cpu)
            except Exception as exc:  # one output failing must not hide the others
                print(f"| {label} | {compression} | failed: {type(exc).__name__}: {exc} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.1f} MB (rillet process)")


if __name__ == "__main__":
    main()
