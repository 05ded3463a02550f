"""One delivery policy for every AWS output.

- :func:`classify` sorts a response: delivered, throttled, transient (5xx, network errors,
  expired credentials), or permanent (validation, access denied: retrying cannot help).
- :class:`AdaptiveConcurrency` is shared by all the flushes of one output instance: an AIMD
  limit on requests in flight (additive increase on success, halved on throttling or a server
  error, at most once per round trip) plus a shared pause after throttling, so AWS pushing back
  slows the whole output instead of one chunk while the others keep hammering (Fluent Bit's
  behaviour, fluent-bit#4293).
- :class:`DeliveryPolicy` runs one request under that limit and retries throttled and transient
  failures a few times in place with full-jitter backoff; what is still failing goes back to the
  caller, which answers RETRY for those records only (the engine then retries them later).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable

from rillet.aws.client import Response
from rillet.engine.metrics import Counters

__all__ = ["AdaptiveConcurrency", "DeliveryPolicy", "Outcome", "classify"]


class Outcome(enum.Enum):
    OK = "ok"
    THROTTLED = "throttled"  # slow down, then retry
    TRANSIENT = "transient"  # retry (server error, network, expired credentials)
    PERMANENT = "permanent"  # can never succeed: drop with a reason


THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException",
})
TRANSIENT_CODES = frozenset({
    "RequestTimeout", "RequestTimeoutException", "InternalFailure", "InternalError",
    "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
    "ServiceFailure", "ExpiredToken", "ExpiredTokenException", "RequestExpired",
    "IDPCommunicationError", "OperationAbortedException", "NetworkError", "CredentialsError",
    "InvalidSignatureException", "SignatureDoesNotMatch", "KMSThrottlingException",
})


# Codes that callers expect and handle themselves (create-on-404 and the like): not counted as
# permanent errors.
EXPECTED_CODES = frozenset({"ResourceNotFoundException", "ResourceAlreadyExistsException",
                            "DataAlreadyAcceptedException"})


def classify(resp: Response) -> Outcome:
    if resp.ok:
        return Outcome.OK
    code = resp.error_code
    if code in THROTTLING_CODES or resp.status == 429:
        return Outcome.THROTTLED
    if code in TRANSIENT_CODES or resp.status == 0 or resp.status >= 500:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


class AdaptiveConcurrency:
    """AIMD concurrency limit with a shared pause (one per output instance)."""

    def __init__(self, maximum: int = 16, initial: int = 2, minimum: int = 1) -> None:
        self.maximum = max(1, maximum)
        self.minimum = max(1, min(minimum, self.maximum))
        self.limit = float(max(self.minimum, min(initial, self.maximum)))
        self.in_flight = 0
        self.pause_until = 0.0
        self._last_decrease = 0.0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self) -> float:
        """Wait for a slot; returns the start time to hand back to :meth:`release`."""
        loop = asyncio.get_running_loop()
        while True:
            now = time.monotonic()
            if now < self.pause_until:
                await asyncio.sleep(self.pause_until - now)
                continue
            if self.in_flight < int(self.limit):
                self.in_flight += 1
                return now
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)

    def release(self, started: float, outcome: Outcome, pause: float = 0.0) -> None:
        self.in_flight -= 1
        if outcome is Outcome.OK:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
        elif outcome in (Outcome.THROTTLED, Outcome.TRANSIENT):
            self.penalize(started, pause)
        self._wake()

    def penalize(self, started: float, pause: float = 0.0) -> None:
        """Halve the limit (and pause) for a request that started at ``started``; also used
        for answers that succeed but report throttled items (Kinesis PutRecords)."""
        # One decrease per round trip: requests that started before the last decrease
        # saw the old limit and must not shrink it again.
        if started >= self._last_decrease:
            self.limit = max(float(self.minimum), self.limit / 2)
            self._last_decrease = time.monotonic()
        if pause > 0:
            self.pause_until = max(self.pause_until, time.monotonic() + pause)

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            fut = self._waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                free -= 1


class DeliveryPolicy:
    """Runs requests for one output under its :class:`AdaptiveConcurrency` and retries
    throttled/transient failures in place (``attempts`` tries in all)."""

    def __init__(self, log: logging.Logger, counters: Counters, *, max_concurrency: int = 16,
                 initial_concurrency: int = 2, attempts: int = 4, base_delay: float = 0.05,
                 max_delay: float = 2.0) -> None:
        self.log = log
        self.counters = counters
        self.limiter = AdaptiveConcurrency(max_concurrency, initial_concurrency)
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        for name in ("aws_requests", "aws_throttled", "aws_transient_errors",
                     "aws_permanent_errors"):
            counters.setdefault(name, 0)

    def backoff(self, attempt: int) -> float:
        top = min(self.max_delay, self.base_delay * (2 ** attempt))
        return random.uniform(self.base_delay, max(self.base_delay, top))

    async def send(self, call: Callable[[], Awaitable[Response]], what: str) -> Response:
        """``call`` once, and again after throttling or a transient failure (up to
        ``attempts``); returns the last response."""
        counters = self.counters
        limiter = self.limiter
        resp = Response(0)
        for attempt in range(self.attempts):
            started = await limiter.acquire()
            outcome = Outcome.TRANSIENT
            pause = 0.0
            try:
                resp = await call()
                outcome = classify(resp)
                if outcome is Outcome.THROTTLED:
                    pause = self.backoff(attempt)
            finally:
                limiter.release(started, outcome, pause)
            counters["aws_requests"] += 1
            if outcome is Outcome.OK or outcome is Outcome.PERMANENT:
                if outcome is Outcome.PERMANENT and resp.error_code not in EXPECTED_CODES:
                    counters["aws_permanent_errors"] += 1
                return resp
            if outcome is Outcome.THROTTLED:
                counters["aws_throttled"] += 1
                self.log.debug("%s throttled (%s); concurrency limit now %d", what,
                               resp.describe(), int(limiter.limit))
            else:
                counters["aws_transient_errors"] += 1
                self.log.warning("%s failed (%s), will retry", what, resp.describe())
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.backoff(attempt))
        return resp
