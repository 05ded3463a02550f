"""CloudWatch Logs calls: PutLogEvents, and creating groups and streams on demand.

A destination is a (log group, log stream) pair. Its stream is created on first use (an
existing one is fine); a missing group is created when ``auto_create_group`` is on, with the
retention, class and tags asked for (retention only on groups this output created, as Fluent Bit
does). A PutLogEvents answered with ResourceNotFoundException (the stream or group was deleted,
or expired) re-creates what is missing and sends the same batch again: a recoverable 404 never
drops data (Fluent Bit drops the chunk, fluent-bit#11959).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass

import orjson

from rillet.aws.client import AwsClient, Response
from rillet.aws.policy import DeliveryPolicy, Outcome, classify
from rillet.engine.metrics import Counters

Dest = tuple[str, str]

NOT_FOUND = "ResourceNotFoundException"
ALREADY_EXISTS = "ResourceAlreadyExistsException"
# Streams not used for this long are forgotten (Fluent Bit: 4 hours).
STREAM_TTL = 4 * 3600.0
# Re-creations tried for one batch within one flush.
RECREATE_ATTEMPTS = 3


class Result(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    ERROR = "error"


@dataclass(slots=True)
class BatchResult:
    result: Result
    reason: str = ""
    # PutLogEvents accepted the request but rejected events: (start, stop, reason) offsets
    # into the batch.
    rejected: tuple[tuple[int, int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class GroupSettings:
    auto_create: bool = False
    retention_days: int = 0
    group_class: str | None = None
    tags: tuple[tuple[str, str], ...] = ()


class CloudWatchLogsApi:
    def __init__(self, client: AwsClient, policy: DeliveryPolicy, log: logging.Logger,
                 counters: Counters, groups: GroupSettings, *, auto_create_stream: bool = True,
                 log_format: str | None = None) -> None:
        self.client = client
        self.policy = policy
        self.log = log
        self.counters = counters
        self.groups = groups
        self.auto_create_stream = auto_create_stream
        self.put_headers = {"x-amzn-logs-format": log_format} if log_format else None
        self._streams: dict[Dest, float] = {}
        self._locks: dict[Dest, asyncio.Lock] = {}
        self._pruned = time.monotonic()
        for name in ("cloudwatch_groups_created", "cloudwatch_streams_created",
                     "cloudwatch_recreated", "cloudwatch_rejected_events"):
            counters.setdefault(name, 0)

    # -- calls --------------------------------------------------------------------------------
    async def _call(self, operation: str, payload: dict[str, object], what: str) -> Response:
        body = orjson.dumps(payload)
        client = self.client
        return await self.policy.send(lambda: client.call_json(operation, body), what)

    @staticmethod
    def _failure(resp: Response) -> BatchResult:
        if classify(resp) is Outcome.PERMANENT:
            return BatchResult(Result.ERROR, resp.describe())
        return BatchResult(Result.RETRY, resp.describe())

    # -- groups and streams -------------------------------------------------------------------
    async def ensure(self, dest: Dest) -> BatchResult:
        """Make sure the destination's stream exists (once; cached)."""
        now = time.monotonic()
        if dest in self._streams:
            self._streams[dest] = now
            return BatchResult(Result.OK)
        lock = self._locks.setdefault(dest, asyncio.Lock())
        async with lock:
            if dest in self._streams:
                return BatchResult(Result.OK)
            res = await self._create_stream(dest)
            if res.result is Result.OK:
                self._streams[dest] = time.monotonic()
                self._prune()
            return res

    def forget(self, dest: Dest) -> None:
        self._streams.pop(dest, None)

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned < 60:
            return
        self._pruned = now
        for dest, used in list(self._streams.items()):
            if now - used > STREAM_TTL:
                del self._streams[dest]
                self._locks.pop(dest, None)

    async def _create_stream(self, dest: Dest) -> BatchResult:
        group, stream = dest
        if not self.auto_create_stream:
            return BatchResult(Result.OK)  # assume it exists; a 404 on put says otherwise
        payload: dict[str, object] = {"logGroupName": group, "logStreamName": stream}
        what = f"CreateLogStream {group}/{stream}"
        # Twice at most: a missing group (404) is created, then the stream once more.
        for attempt in range(2):
            resp = await self._call("CreateLogStream", payload, what)
            if resp.ok:
                self.counters["cloudwatch_streams_created"] += 1
                self.log.info("Created log stream %s in group %s", stream, group)
                return BatchResult(Result.OK)
            if resp.error_code == ALREADY_EXISTS:
                return BatchResult(Result.OK)
            if resp.error_code != NOT_FOUND or attempt:
                break
            res = await self._create_group(group)
            if res.result is not Result.OK:
                return res
        self.log.error("%s failed: %s", what, resp.describe())
        return self._failure(resp)

    async def _create_group(self, group: str) -> BatchResult:
        settings = self.groups
        if not settings.auto_create:
            self.log.error("Log group %s does not exist and auto_create_group is off: the "
                           "records are kept for a retry", group)
            return BatchResult(Result.RETRY, f"log group {group} does not exist")
        self.log.info("Log group %s not found. Will attempt to create it.", group)
        payload: dict[str, object] = {"logGroupName": group}
        if settings.group_class:
            payload["logGroupClass"] = settings.group_class
        if settings.tags:
            payload["tags"] = dict(settings.tags)
        resp = await self._call("CreateLogGroup", payload, f"CreateLogGroup {group}")
        if resp.error_code == ALREADY_EXISTS:
            return BatchResult(Result.OK)
        if not resp.ok:
            self.log.error("CreateLogGroup %s failed: %s", group, resp.describe())
            return self._failure(resp)
        self.counters["cloudwatch_groups_created"] += 1
        self.log.info("Created log group %s", group)
        if settings.retention_days > 0:
            resp = await self._call("PutRetentionPolicy",
                                    {"logGroupName": group,
                                     "retentionInDays": settings.retention_days},
                                    f"PutRetentionPolicy {group}")
            if not resp.ok:
                # The group exists; data can flow. Fluent Bit also only logs this.
                self.log.error("could not set retention of %d days on log group %s: %s",
                               settings.retention_days, group, resp.describe())
        return BatchResult(Result.OK)

    # -- events -------------------------------------------------------------------------------
    async def put(self, dest: Dest, body: bytes, count: int) -> BatchResult:
        """Send one batch; re-create a deleted stream or group and resend the same batch."""
        group, stream = dest
        what = f"PutLogEvents {group}/{stream} ({count} events)"
        client, headers = self.client, self.put_headers
        for _ in range(RECREATE_ATTEMPTS):
            res = await self.ensure(dest)
            if res.result is not Result.OK:
                return res
            resp = await self.policy.send(
                lambda: client.call_json("PutLogEvents", body, headers), what)
            if resp.ok:
                return self._accepted(resp, dest, count)
            if resp.error_code == "DataAlreadyAcceptedException":
                return BatchResult(Result.OK)
            if resp.error_code != NOT_FOUND:
                self.log.error("%s failed: %s", what, resp.describe())
                return self._failure(resp)
            if not self.auto_create_stream:
                self.log.error("log stream %s in group %s does not exist and "
                               "auto_create_stream is off: the records are kept for a retry",
                               stream, group)
                return BatchResult(Result.RETRY, f"log stream {group}/{stream} does not exist")
            self.counters["cloudwatch_recreated"] += 1
            self.log.warning("log stream %s or group %s not found (%s): creating it and "
                             "sending the same batch again", stream, group, resp.message)
            self.forget(dest)
        return BatchResult(Result.RETRY, f"log stream {group}/{stream} keeps disappearing")

    def _accepted(self, resp: Response, dest: Dest, count: int) -> BatchResult:
        doc = resp.json()
        info = doc.get("rejectedLogEventsInfo") if isinstance(doc, dict) else None
        if not info or not isinstance(info, dict):
            return BatchResult(Result.OK)
        rejected: list[tuple[int, int, str]] = []
        # Field semantics from the API reference: tooNew start index is inclusive; tooOld and
        # expired end indexes are exclusive.
        too_new = info.get("tooNewLogEventStartIndex")
        too_old = info.get("tooOldLogEventEndIndex")
        expired = info.get("expiredLogEventEndIndex")
        if isinstance(too_old, int):
            rejected.append((0, min(count, too_old), "too old"))
        if isinstance(expired, int):
            rejected.append((0, min(count, expired), "older than the retention period"))
        if isinstance(too_new, int):
            rejected.append((max(0, too_new), count, "more than 2 hours in the future"))
        rejected = [r for r in rejected if r[1] > r[0]]
        total = len(set().union(*(range(a, b) for a, b, _ in rejected))) if rejected else 0
        self.counters["cloudwatch_rejected_events"] += total
        self.log.warning("PutLogEvents %s/%s: CloudWatch rejected %d of %d events: %s",
                         dest[0], dest[1], total, count,
                         orjson.dumps(info).decode())
        return BatchResult(Result.OK, rejected=tuple(rejected))
