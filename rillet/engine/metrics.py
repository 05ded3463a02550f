"""Per-instance counters with Fluent Bit's metric names.

Inputs: records, bytes (+ plugin-specific, e.g. tail's files_opened).
Filters: records, bytes, add_records, drop_records, drop_bytes.
Outputs: proc_records, proc_bytes, errors, retries, retries_failed, dropped_records,
retried_records.
"""

from __future__ import annotations

from collections.abc import Iterable

INPUT_METRICS = ("records", "bytes")
FILTER_METRICS = ("records", "bytes", "add_records", "drop_records", "drop_bytes")
OUTPUT_METRICS = ("proc_records", "proc_bytes", "errors", "retries", "retries_failed",
                  "dropped_records", "retried_records")
BY_KIND = {"input": INPUT_METRICS, "filter": FILTER_METRICS, "output": OUTPUT_METRICS}


class Counters(dict[str, int]):
    """Monotonic counters of one instance; plugins may add their own names."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        super().__init__((n, 0) for n in names)

    def add(self, name: str, value: int = 1) -> None:
        self[name] = self.get(name, 0) + value


class Registry:
    """Every instance's counters, grouped as Fluent Bit's /api/v1/metrics groups them."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Counters]] = {"input": {}, "filter": {}, "output": {}}

    def counters(self, kind: str, instance: str) -> Counters:
        group = self.groups[kind]
        if instance not in group:
            group[instance] = Counters(BY_KIND[kind])
        return group[instance]

    def snapshot(self) -> dict[str, dict[str, dict[str, int]]]:
        return {kind: {name: dict(c) for name, c in group.items()}
                for kind, group in self.groups.items()}


# Fluent Bit's fluentbit_output_latency_seconds buckets (flb_output.c), in seconds.
LATENCY_BUCKETS = (0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0)


class Histogram:
    """Cumulative-bucket histogram (Prometheus semantics: ``le`` upper bounds, then +Inf)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket (not cumulative); last is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        i = 0
        for bound in self.bounds:
            if value <= bound:
                break
            i += 1
        self.counts[i] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[int]:
        out: list[int] = []
        total = 0
        for c in self.counts:
            total += c
            out.append(total)
        return out


class OutputState:
    """Delivery progress of one output: what the monitoring API's stall detection reads.

    ``pending`` counts records dispatched to the output and not yet final for it (delivered,
    dropped or given up); ``pending_since`` is when it last went from 0 to more than 0;
    ``last_success`` is the wall-clock time of the last flush that delivered records (0 = never).
    Times are ``time.time()`` seconds. ``latency`` holds, per input name, the seconds from a
    chunk's creation to its successful delivery by this output.
    """

    __slots__ = ("last_success", "latency", "pending", "pending_since")

    def __init__(self) -> None:
        self.pending = 0
        self.pending_since = 0.0
        self.last_success = 0.0
        self.latency: dict[str, Histogram] = {}

    def add_pending(self, n: int, now: float) -> None:
        if self.pending <= 0:
            self.pending_since = now
        self.pending += n

    def settle(self, n: int) -> None:
        self.pending = max(0, self.pending - n)

    def delivered(self, input_name: str, now: float, latency: float) -> None:
        self.last_success = now
        hist = self.latency.get(input_name)
        if hist is None:
            hist = self.latency[input_name] = Histogram()
        hist.observe(latency)
