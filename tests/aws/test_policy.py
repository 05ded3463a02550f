"""The shared delivery policy: classification, adaptive concurrency, in-place retries."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rillet.aws.client import Response
from rillet.aws.policy import AdaptiveConcurrency, DeliveryPolicy, Outcome, classify
from rillet.engine.metrics import Counters

LOG = logging.getLogger("rillet.test.aws")


@pytest.mark.parametrize("resp, outcome", [
    (Response(200), Outcome.OK),
    (Response(400, error_code="ThrottlingException"), Outcome.THROTTLED),
    (Response(400, error_code="ProvisionedThroughputExceededException"), Outcome.THROTTLED),
    (Response(429), Outcome.THROTTLED),
    (Response(503, error_code="ServiceUnavailableException"), Outcome.TRANSIENT),
    (Response(500), Outcome.TRANSIENT),
    (Response(0, error_code="NetworkError"), Outcome.TRANSIENT),
    (Response(400, error_code="ExpiredTokenException"), Outcome.TRANSIENT),
    (Response(400, error_code="InvalidParameterException"), Outcome.PERMANENT),
    (Response(400, error_code="AccessDeniedException"), Outcome.PERMANENT),
    (Response(400, error_code="ValidationException"), Outcome.PERMANENT),
])
def test_classify(resp: Response, outcome: Outcome) -> None:
    assert classify(resp) is outcome


def test_aimd_limit() -> None:
    lim = AdaptiveConcurrency(maximum=8, initial=4)

    async def go() -> None:
        t = await lim.acquire()
        lim.release(t, Outcome.OK)
        assert lim.limit == pytest.approx(4.25)
        t1 = await lim.acquire()
        t2 = await lim.acquire()
        lim.release(t1, Outcome.THROTTLED)
        assert lim.limit == pytest.approx(2.125)
        lim.release(t2, Outcome.THROTTLED)  # same round trip: no second decrease
        assert lim.limit == pytest.approx(2.125)
        for _ in range(200):
            lim.release(await lim.acquire(), Outcome.OK)
        assert lim.limit == 8.0
    asyncio.run(go())


def test_in_flight_never_exceeds_limit_and_pause_is_shared() -> None:
    lim = AdaptiveConcurrency(maximum=3, initial=3)
    peak = 0
    active = 0

    async def worker() -> None:
        nonlocal peak, active
        t = await lim.acquire()
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.005)
        active -= 1
        lim.release(t, Outcome.OK)

    async def go() -> float:
        await asyncio.gather(*[worker() for _ in range(30)])
        t = await lim.acquire()
        lim.release(t, Outcome.THROTTLED, pause=0.2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        lim.release(await lim.acquire(), Outcome.OK)
        return loop.time() - start

    waited = asyncio.run(go())
    assert peak == 3
    assert waited >= 0.15  # the next request waited for the pause


def test_policy_retries_throttling_then_succeeds() -> None:
    answers = [Response(400, error_code="ThrottlingException"), Response(503), Response(200)]
    counters = Counters()
    policy = DeliveryPolicy(LOG, counters, base_delay=0.001, max_delay=0.002)

    async def call() -> Response:
        return answers.pop(0)

    resp = asyncio.run(policy.send(call, "test"))
    assert resp.ok
    assert counters["aws_requests"] == 3
    assert counters["aws_throttled"] == 1 and counters["aws_transient_errors"] == 1


def test_policy_gives_up_after_attempts_and_stops_on_permanent() -> None:
    counters = Counters()
    policy = DeliveryPolicy(LOG, counters, attempts=3, base_delay=0.001, max_delay=0.002)
    calls = 0

    async def throttled() -> Response:
        nonlocal calls
        calls += 1
        return Response(400, error_code="ThrottlingException")

    assert asyncio.run(policy.send(throttled, "t")).error_code == "ThrottlingException"
    assert calls == 3

    async def denied() -> Response:
        nonlocal calls
        calls += 1
        return Response(400, error_code="AccessDeniedException")

    calls = 0
    assert asyncio.run(policy.send(denied, "d")).error_code == "AccessDeniedException"
    assert calls == 1 and counters["aws_permanent_errors"] == 1
