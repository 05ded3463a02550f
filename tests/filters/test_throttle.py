"""The ``throttle`` filter: Rate over a sliding Window of Interval panes, drops, Print_Status."""

from __future__ import annotations

import logging

import pytest

from rillet.filters.throttle import ThrottleFilter
from tests.filters.filter_kit import batch, config_error, configure


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def throttle(**settings: str) -> tuple[ThrottleFilter, Clock]:
    f = configure(ThrottleFilter, **settings)
    clock = Clock()
    f.clock = clock
    f.started = clock.now
    return f, clock


def passed(f: ThrottleFilter, n: int) -> int:
    return len(f.filter(batch([{"i": i} for i in range(n)])).bodies)


def test_average_over_the_window_limits_records() -> None:
    f, clock = throttle(rate="2", window="3", interval="1s")
    # Up to rate * window records pass while the window is young.
    assert passed(f, 10) == 6
    assert passed(f, 5) == 0
    clock.now += 1  # a new pane: nothing left the window yet (3 panes)
    assert passed(f, 5) == 0
    clock.now += 2  # the first pane (6 records) leaves the window
    assert passed(f, 10) == 6
    clock.now += 10  # the whole window has slid out
    assert passed(f, 1) == 1


def test_fractional_rate_and_kept_records_are_the_first() -> None:
    f, _ = throttle(rate="1.5", window="2")
    b = batch([{"i": i} for i in range(5)])
    out = f.filter(b)
    assert [r["i"] for r in out.bodies] == [0, 1, 2]  # type: ignore[index,call-overload]
    assert len(out.times) == 3 and out.size == 300


def test_interval_in_minutes_and_defaults() -> None:
    f, clock = throttle(interval="1m")
    assert (f.rate, f.size, f.interval) == (1.0, 5, 60.0)
    assert passed(f, 7) == 5
    clock.now += 59
    assert passed(f, 1) == 0
    clock.now += 5 * 60
    assert passed(f, 1) == 1


def test_print_status(caplog: pytest.LogCaptureFixture) -> None:
    f, clock = throttle(print_status="on", rate="1", window="2")
    passed(f, 5)
    with caplog.at_level(logging.INFO):
        clock.now += 1
        passed(f, 1)
    assert "limit is 1.00 per 1s with window size of 2" in caplog.text
    assert "3 dropped so far" in caplog.text


def test_config_errors() -> None:
    assert "rate" in config_error(ThrottleFilter, rate="0")
    assert "window" in config_error(ThrottleFilter, window="0")
    assert "interval" in config_error(ThrottleFilter, interval="0s")
