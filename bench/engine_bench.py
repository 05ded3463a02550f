"""Engine overhead: dummy -> null through the real engine.

Prints records per CPU-second and peak RSS for pass-through chunks at two batch sizes: large
batches (what a catching-up input produces) and 1,000-record batches (a busy tailed file); then
the same with the null output encoding every record as JSON lines (Fluent Bit's null `format`),
which adds the cost of serialization; last, an input as fast as it can go under the seed's
`Mem_Buf_Limit 5MB` (Fluent Bit 5.1.1 catches up at ~4,500 records/s there): wall records/s
shows whether backpressure stalls.

    .venv/bin/python bench/engine_bench.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rillet import log as rlog
from rillet.config.model import ConfigModel, Section
from rillet.engine.engine import Engine
from rillet.engine.pipeline import build


def _section(kind: str, props: dict[str, object]) -> Section:
    sec = Section(kind, "bench", 0)
    for key, value in props.items():
        sec.set(key, str(value))
    return sec


async def _run(records: int, copies: int, rate: int, null_format: str | None,
               mem_buf_limit: str | None = None) -> tuple[float, float]:
    model = ConfigModel.empty("bench")
    model.service = _section("service", {"flush": 1, "log_level": "warn"})
    samples = records // copies
    dummy: dict[str, object] = {"name": "dummy", "rate": rate, "copies": copies,
                                "samples": samples, "flush_on_startup": "on",
                                "dummy": '{"message":"dummy","n":1}'}
    if mem_buf_limit:
        dummy["mem_buf_limit"] = mem_buf_limit
    model.inputs = [_section("input", dummy)]
    out: dict[str, object] = {"name": "null", "match": "*"}
    if null_format:
        out["format"] = null_format
    model.outputs = [_section("output", out)]
    engine = Engine(build(model))
    counters = engine.pipeline.metrics.counters("output", "null.0")
    task = asyncio.create_task(engine.run())
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while counters["proc_records"] < samples * copies:
        await asyncio.sleep(0.01)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    engine.request_stop("benchmark done")
    await task
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    rlog.setup("warn")
    print(f"dummy -> null, {args.records:,} records")
    for label, copies, rate, fmt, limit in (
            ("10k-record batches", 10_000, 1_000, None, None),
            ("1k-record batches", 1_000, 1_000, None, None),
            ("1k, null json_lines", 1_000, 1_000, "json_lines", None),
            ("Mem_Buf_Limit 5MB", 1, 10_000_000, "json_lines", "5MB")):
        cpu, wall = asyncio.run(_run(args.records, copies, rate, fmt, limit))
        print(f"  {label:<20} {args.records / cpu:>12,.0f} records per CPU-second"
              f" {args.records / wall:>12,.0f} records/s wall  ({cpu:.3f} CPU-s)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.1f} MB")


if __name__ == "__main__":
    main()
