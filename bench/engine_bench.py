"""Engine overhead: dummy -> null through the real engine.

Prints records per CPU-second and peak RSS for pass-through chunks at two batch sizes: large
batches (what a catching-up input produces) and 1,000-record batches (a busy tailed file); then
the same with the null output encoding every record as JSON lines (Fluent Bit's null `format`),
which adds the cost of serialization.

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


async def _run(records: int, copies: int, rate: int,
               null_format: str | None) -> tuple[float, float]:
    model = ConfigModel.empty("bench")
    model.service = _section("service", {"flush": 1, "log_level": "warn"})
    samples = records // copies
    model.inputs = [_section("input", {"name": "dummy", "rate": rate, "copies": copies,
                                       "samples": samples, "flush_on_startup": "on",
                                       "dummy": '{"message":"dummy","n":1}'})]
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
    for label, copies, rate, fmt in (
            ("100k-record batches", 100_000, 1_000, None),
            ("1k-record batches", 1_000, 1_000, None),
            ("1k, null json_lines", 1_000, 1_000, "json_lines")):
        cpu, wall = asyncio.run(_run(args.records, copies, rate, fmt))
        print(f"  {label:<20} {args.records / cpu:>14,.0f} records per CPU-second"
              f"  ({cpu:.3f} CPU-s, {wall:.2f} s wall)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.1f} MB")


if __name__ == "__main__":
    main()
