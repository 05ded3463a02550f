"""Health and readiness.

Fluent Bit's rule (``Health_Check On``): unhealthy when, within the last ``HC_Period`` seconds,
the outputs' ``errors`` grew by more than ``HC_Errors_Count`` or their ``retries_failed`` by more
than ``HC_Retry_Failure_Count`` (sums over every output). Counters are sampled once a second and
the growth is the newest value minus the oldest sample inside the period, as Fluent Bit does.

rillet adds stall detection (``HC_Stall_Timeout``): an output that has had records pending and no
successful delivery for that long makes health fail too -- the silent stall that Fluent Bit's
error counters never see (a hung connection produces no error). It turns healthy again on the
next successful delivery, or when nothing is pending any more.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rillet.engine.engine import Engine


@dataclass
class HealthState:
    healthy: bool
    errors: int
    retries_failed: int
    stalled: list[str] = field(default_factory=list)


def output_totals(engine: Engine | None) -> tuple[int, int]:
    """Sum of ``errors`` and of ``retries_failed`` over every output."""
    if engine is None:
        return 0, 0
    errors = failed = 0
    for counters in engine.pipeline.metrics.groups["output"].values():
        errors += counters.get("errors", 0)
        failed += counters.get("retries_failed", 0)
    return errors, failed


def stalled_outputs(engine: Engine | None, timeout: float, now: float | None = None) -> list[str]:
    """Outputs with records pending and no successful delivery for more than ``timeout`` s."""
    if engine is None or timeout <= 0:
        return []
    now = time.time() if now is None else now
    out: list[str] = []
    for name, state in engine.output_states.items():
        if state.pending > 0 and now - max(state.last_success, state.pending_since) > timeout:
            out.append(name)
    return out


class HealthChecker:
    def __init__(self, errors_limit: int, retry_failure_limit: int, period: int,
                 stall_timeout: float) -> None:
        self.errors_limit = errors_limit
        self.retry_failure_limit = retry_failure_limit
        self.period = period
        self.stall_timeout = stall_timeout
        self.samples: deque[tuple[float, int, int]] = deque()

    def reset(self) -> None:
        """Forget the samples (a hot reload starts every counter from zero)."""
        self.samples.clear()

    def sample(self, engine: Engine | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        errors, failed = output_totals(engine)
        self.samples.append((now, errors, failed))
        while self.samples and now - self.samples[0][0] > self.period:
            self.samples.popleft()

    def state(self, engine: Engine | None) -> HealthState:
        errors, failed = output_totals(engine)
        if self.samples:
            _, first_errors, first_failed = self.samples[0]
            errors, failed = errors - first_errors, failed - first_failed
        errors, failed = max(0, errors), max(0, failed)
        stalled = stalled_outputs(engine, self.stall_timeout)
        healthy = (errors <= self.errors_limit and failed <= self.retry_failure_limit
                   and not stalled)
        return HealthState(healthy, errors, failed, stalled)
