"""``throttle`` filter: drop records above an average rate (Fluent Bit's filter_throttle).

A sliding window of ``Window`` panes, each ``Interval`` long, counts the records let through.
A record is dropped when the window's average (records let through in the window / Window) has
reached ``Rate``; otherwise it passes and counts in the current pane. Every Interval a new pane
starts and the oldest one leaves the window. ``Print_Status`` logs the limit and the current
average once per Interval.

Fluent Bit slides the window from a timer thread; rillet slides it when a batch arrives (as many
panes as Intervals have passed, at most a whole window), which gives the same decisions. One
window per filter instance, shared by every tag it matches, as in Fluent Bit. Drops are counted
in the filter's ``drop_records`` metric by the engine.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch
from rillet.engine.plugin import Filter, register


@register
class ThrottleFilter(Filter):
    name = "throttle"
    description = "Throttle messages using sliding window algorithm"
    options = (
        Option("rate", T.DOUBLE, "1", "average records per Interval allowed over the window"),
        Option("window", T.INT, "5", "number of Intervals the average is taken over"),
        Option("interval", T.TIME, "1s", "length of one pane of the window"),
        Option("print_status", T.BOOL, "false", "log the rate limit and current average every "
               "Interval"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        if o["rate"] <= 0:
            raise ValueError("rate: must be greater than 0")
        if o["window"] <= 0:
            raise ValueError("window: must be at least 1")
        if o["interval"] <= 0:
            raise ValueError("interval: must be greater than 0")
        self.rate: float = o["rate"]
        self.size: int = o["window"]
        self.interval: float = o["interval"]
        self.print_status: bool = o["print_status"]
        self.panes = [0] * self.size
        self.head = 0
        self.total = 0
        self.clock = time.monotonic
        self.pane_no = 0  # number of the current pane since start
        self.started = self.clock()
        self.dropped = 0

    def slide(self, now: float) -> None:
        """Start the panes for the Intervals that have passed up to ``now``."""
        number = int((now - self.started) / self.interval)
        steps = number - self.pane_no
        if steps <= 0:
            return
        self.pane_no = number
        panes, size = self.panes, self.size
        for _ in range(min(steps, size)):
            self.head = (self.head + 1) % size
            self.total -= panes[self.head]
            panes[self.head] = 0
        if self.print_status:
            self.log.info("%d: limit is %0.2f per %gs with window size of %d, current rate "
                          "is: %d per interval (%d dropped so far)", int(time.time()),
                          self.rate, self.interval, size, self.total // size, self.dropped)

    def filter(self, batch: Batch) -> Batch:
        self.slide(self.clock())
        n = len(batch.bodies)
        # A record passes while total / size < rate: the next k pass with total + k < rate * size.
        allowed = max(0, min(n, math.ceil(self.rate * self.size - self.total)))
        if allowed:
            self.total += allowed
            self.panes[self.head] += allowed
        if allowed < n:
            self.dropped += n - allowed
            keep = allowed
            size = batch.size
            batch.times = batch.times[:keep]
            batch.bodies = batch.bodies[:keep]
            batch.size = size * keep // n
        return batch
