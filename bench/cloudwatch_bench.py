"""cloudwatch_logs end to end: records like the seed's target record, through the real engine,
into CloudWatch Logs on moto's server (a subprocess on loopback).

Prints, for N records (default 1,000,000, cycled from /work/shared/bench/
fluentbit_sample_output.jsonl, or ../shared/bench/ beside the checkout):

- events/s end to end (first record emitted -> every record acknowledged by the output);
- rillet's own CPU-seconds (this process) and moto's CPU-seconds (its process), apart;
- records per CPU-second of the cloudwatch_logs output alone: rillet's CPU minus the CPU of the
  same run into the ``null`` output;
- records per CPU-second of encoding alone (encode + batch + request bodies, no network).

    .venv/bin/python bench/cloudwatch_bench.py [--records 1000000] [--workers 1,2] [--verify]
        [--dicts] [--stock-moto]

moto runs through tests/peers/moto_fast.py unless ``--stock-moto``: stock moto decodes each
1 MB request three times with the standard json module and caps at ~30k events per CPU-second
on these records, which would measure moto, not rillet.

``--verify`` reads every event back with GetLogEvents and checks the count (slow on moto).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from rillet import log as rlog
from rillet.config.model import ConfigModel, Section
from rillet.config.options import Option, T
from rillet.engine.chunk import Batch
from rillet.engine.engine import Engine
from rillet.engine.pipeline import build
from rillet.engine.plugin import Input, InputContext, register
from rillet.outputs.cloudwatch_logs import encode as enc
from tests.peers.moto_server import TEST_ENV, MotoServer

SAMPLE_PLACES = (Path("/work/shared/bench/fluentbit_sample_output.jsonl"),
                 Path(__file__).resolve().parent.parent.parent / "shared/bench"
                 / "fluentbit_sample_output.jsonl")
BATCH = 1000  # records per input batch (a busy tailed file's read)
_RECORDS: list[bytes] = []
_TOTAL = [0]


def load_samples(max_bytes: int) -> list[bytes]:
    for place in SAMPLE_PLACES:
        if place.exists():
            lines = [ln for ln in place.read_bytes().splitlines() if ln.strip()]
            return [ln for ln in lines if len(ln) <= max_bytes]
    raise SystemExit("fluentbit_sample_output.jsonl not found (see SAMPLE_PLACES)")


@register
class BenchRecords(Input):
    """Emits the benchmark's records as fast as backpressure allows, timestamped now."""

    name = "bench_records"
    description = "benchmark input"
    options = (Option("dicts", T.BOOL, "false", "emit dict bodies instead of JSON bytes"),)

    async def run(self, ctx: InputContext) -> None:
        records = _RECORDS
        dicts = self.opts["dicts"]
        bodies: list[Any] = [orjson.loads(r) for r in records] if dicts else list(records)
        sizes = [len(r) for r in records]
        n = len(records)
        total = _TOTAL[0]
        sent = 0
        while sent < total:
            k = min(BATCH, total - sent)
            now = time.time_ns()
            idx = [(sent + j) % n for j in range(k)]
            await ctx.emit(Batch("kube.var.log.containers.bench_default_app-0123.log",
                                 [now + j for j in range(k)], [bodies[i] for i in idx],
                                 sum(sizes[i] for i in idx)))
            sent += k


def _section(kind: str, props: dict[str, object]) -> Section:
    sec = Section(kind, "bench", 0)
    for key, value in props.items():
        sec.set(key, str(value))
    return sec


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(records: int, output: dict[str, object], name: str, dicts: bool,
               moto_pid: int | None) -> tuple[float, float, float, dict[str, int]]:
    _TOTAL[0] = records
    model = ConfigModel.empty("bench")
    model.service = _section("service", {"flush": 0.2, "log_level": "warn", "grace": 30})
    model.inputs = [_section("input", {"name": "bench_records", "dicts": dicts,
                                       "mem_buf_limit": "20MB"})]
    model.outputs = [_section("output", {"match": "*", **output})]
    engine = Engine(build(model))
    counters = engine.pipeline.metrics.counters("output", name)
    moto0 = _cpu_of(moto_pid) if moto_pid else 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(engine.run())
    while counters["proc_records"] + counters["dropped_records"] < records:
        await asyncio.sleep(0.01)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    moto_cpu = (_cpu_of(moto_pid) - moto0) if moto_pid else 0.0
    engine.request_stop("benchmark done")
    await task
    return cpu, wall, moto_cpu, dict(counters)


def _count_events(moto: MotoServer, group: str) -> int:
    logs = moto.client("logs")
    total = 0
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        token = None
        while True:
            kw: dict[str, Any] = {"logGroupName": group, "logStreamName": stream["logStreamName"],
                                  "startFromHead": True, "limit": 10000}
            if token:
                kw["nextToken"] = token
            page = logs.get_log_events(**kw)
            total += len(page["events"])
            if not page["events"] or page["nextForwardToken"] == token:
                break
            token = page["nextForwardToken"]
    return total


def _encode_only(records: int, dicts: bool) -> float:
    bodies: list[Any] = [orjson.loads(r) for r in _RECORDS] if dicts else list(_RECORDS)
    n = len(bodies)
    chunk_records = 1500  # ~2 MB chunks of these records
    times = [time.time_ns()] * chunk_records
    cpu0 = time.process_time()
    done = 0
    while done < records:
        k = min(chunk_records, records - done)
        chunk = [bodies[(done + j) % n] for j in range(k)]
        ev = enc.encode(times[:k], chunk, None, None)
        for a, b in enc.split(ev):
            enc.request_body("g", "s", ev, a, b)
        done += k
    return time.process_time() - cpu0


def _run_cloudwatch(n: int, workers: int, args: argparse.Namespace, base_cpu: float) -> None:
    with MotoServer(fast=not args.stock_moto) as moto:
        group = "bench-cloudwatch"
        output = {"name": "cloudwatch_logs", "region": "us-east-1", "endpoint": moto.url,
                  "log_group_name": group, "log_stream_prefix": "fluentbit-",
                  "auto_create_group": "true", "workers": workers}
        cpu, wall, moto_cpu, counters = asyncio.run(
            _run(n, output, "cloudwatch_logs.0", args.dicts, moto.pid))
        print(f"  end to end                   {n / wall:>10,.0f} events/s  ({wall:.1f} s wall)")
        print(f"  rillet CPU                   {cpu:8.2f} CPU-s  ({n / cpu:,.0f} records per "
              f"CPU-second, engine + input + output)")
        print(f"  moto CPU                     {moto_cpu:8.2f} CPU-s  ({n / moto_cpu:,.0f} events "
              f"per moto CPU-second)")
        out_cpu = max(cpu - base_cpu, 1e-9)
        print(f"  cloudwatch_logs output alone {out_cpu:8.2f} CPU-s  ({n / out_cpu:,.0f} records "
              f"per CPU-second)")
        print(f"  requests {counters.get('aws_requests', 0):,}, throttled "
              f"{counters.get('aws_throttled', 0)}, dropped {counters['dropped_records']}, "
              f"delivered {counters['proc_records']:,}")
        if args.verify:
            got = _count_events(moto, group)
            print(f"  verify: {got:,} events in moto ({'OK' if got == n else 'MISMATCH'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1, 2], help="comma list: one run per value (default 1,2)")
    parser.add_argument("--dicts", action="store_true", help="dict bodies instead of JSON bytes")
    parser.add_argument("--max-record", type=int, default=16384,
                        help="skip sample records longer than this (the sample holds one "
                             "41 KB stack trace)")
    parser.add_argument("--verify", action="store_true")
    parser.add_argument("--stock-moto", action="store_true",
                        help="moto's server as shipped (default: tests/peers/moto_fast.py, "
                        "which parses each request body once)")
    args = parser.parse_args()
    os.environ.update(TEST_ENV)
    rlog.setup("warn")
    _RECORDS[:] = load_samples(args.max_record)
    avg = sum(map(len, _RECORDS)) / len(_RECORDS)
    n = args.records
    print(f"cloudwatch_logs -> moto, {n:,} records of {len(_RECORDS)} sample shapes "
          f"(avg {avg:,.0f} bytes), "
          f"{'dict' if args.dicts else 'JSON bytes'} bodies, "
          f"{'stock' if args.stock_moto else 'fast-parsing'} moto")

    base_cpu, base_wall, _, _ = asyncio.run(_run(n, {"name": "null"}, "null.0", args.dicts,
                                                 None))
    print(f"  engine alone (null output)   {base_cpu:8.2f} CPU-s  {n / base_wall:>10,.0f} rec/s")
    for workers in args.workers:
        print(f"  -- workers {workers}")
        _run_cloudwatch(n, workers, args, base_cpu)
    enc_cpu = _encode_only(n, args.dicts)
    print(f"  encode only (no network)     {enc_cpu:8.2f} CPU-s  ({n / enc_cpu:,.0f} records "
          f"per CPU-second)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.1f} MB (rillet process)")


if __name__ == "__main__":
    main()
