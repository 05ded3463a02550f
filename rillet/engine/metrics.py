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
