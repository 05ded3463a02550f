"""A fault-injecting HTTP/1.1 proxy for AWS APIs, on loopback, in its own thread.

Requests are matched by operation (the ``X-Amz-Target`` suffix for JSON APIs such as
``PutLogEvents``, or the ``Action=`` of query APIs such as STS) against :class:`Rule` objects,
first match wins; unmatched requests are forwarded. Actions:

- ``throttle``: 400 ``ThrottlingException`` (``error_code`` changes the code, e.g.
  ``ProvisionedThroughputExceededException``), nothing forwarded;
- ``error``: ``status`` (default 503) with ``error_code`` (default ServiceUnavailableException);
- ``drop``: close the connection without an answer, nothing forwarded;
- ``drop_after``: forward, then close without passing the answer on (the call did happen);
- ``respond``: answer ``status``/``body`` without forwarding (partial failures, odd replies);
- ``forward``: forward (useful with ``before``);
- ``fail_records``: a partial failure of PutRecords (Kinesis) or PutRecordBatch (Firehose): the
  records for which ``fail_record(position, entry)`` is true are taken out of the request, the
  rest is forwarded, and the answer reports the taken ones as failed with ``error_code``
  (default ProvisionedThroughputExceededException / ServiceUnavailableException), as AWS does.

``before`` runs (in the proxy thread) before the action, e.g. to delete a log stream between
two calls. ``ratio`` applies a rule to that fraction of matching calls (seeded, reproducible);
``limit`` stops it after that many applications; ``until`` (a ``time.monotonic()`` value) ends it.
Every request is recorded in :attr:`FaultProxy.requests`.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

_ACTION = re.compile(rb"(?:^|&)Action=([A-Za-z0-9]+)")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)")


@dataclass
class Rule:
    action: str
    operation: str | None = None
    ratio: float = 1.0
    limit: int | None = None
    until: float | None = None
    status: int = 0
    error_code: str = ""
    body: bytes = b""
    before: Callable[[bytes], None] | None = None
    fail_record: Callable[[int, dict[str, Any]], bool] | None = None
    applied: int = 0


@dataclass
class Seen:
    operation: str
    action: str
    key_id: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


class FaultProxy:
    def __init__(self, upstream: str, seed: int = 7) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- rules --------------------------------------------------------------------------------
    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    def count(self, operation: str, action: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.requests if s.operation == operation
                       and (action is None or s.action == action))

    def _decide(self, operation: str) -> Rule | None:
        now = time.monotonic()
        with self._lock:
            for rule in self.rules:
                if rule.operation is not None and rule.operation != operation:
                    continue
                if rule.limit is not None and rule.applied >= rule.limit:
                    continue
                if rule.until is not None and now > rule.until:
                    continue
                if rule.ratio < 1.0 and self._random.random() >= rule.ratio:
                    continue
                rule.applied += 1
                return rule
        return None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP ---------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                request_line = lines[0]
                headers: list[tuple[str, str]] = []
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers.append((k.strip(), v.strip()))
                hmap = {k.lower(): v for k, v in headers}
                body = await reader.readexactly(int(hmap.get("content-length", "0")))
                keep = await self._serve(request_line, headers, hmap, body, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _operation(hmap: dict[str, str], body: bytes) -> str:
        target = hmap.get("x-amz-target")
        if target:
            return target.rsplit(".", 1)[-1]
        m = _ACTION.search(body)
        return m.group(1).decode() if m else ""

    async def _serve(self, request_line: str, headers: list[tuple[str, str]],
                     hmap: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> bool:
        operation = self._operation(hmap, body)
        m = _CREDENTIAL.search(hmap.get("authorization", ""))
        seen = Seen(operation, "forward", m.group(1) if m else "", body, hmap)
        with self._lock:
            self.requests.append(seen)
        rule = self._decide(operation)
        if rule is not None and rule.before is not None:
            await asyncio.to_thread(rule.before, body)
        action = rule.action if rule is not None else "forward"
        seen.action = action
        if action == "drop":
            writer.transport.abort()
            return False
        if action == "throttle":
            reply = _error(400, rule.error_code if rule and rule.error_code
                           else "ThrottlingException", "Rate exceeded")
        elif action == "error":
            assert rule is not None
            reply = _error(rule.status or 503, rule.error_code or "ServiceUnavailableException",
                           "injected server error")
        elif action == "respond":
            assert rule is not None
            reply = _Reply(rule.status or 200,
                           [("Content-Type", "application/x-amz-json-1.1"),
                            ("x-amzn-RequestId", "proxy-canned")], rule.body)
        elif action == "fail_records":
            assert rule is not None
            reply = await self._fail_records(rule, operation, request_line, headers, body)
        else:
            reply = await self._forward(request_line, headers, body)
            if action == "drop_after":
                seen.status = reply.status
                writer.transport.abort()
                return False
        seen.status = reply.status
        out = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
        for k, v in reply.headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                out.append(f"{k}: {v}")
        out.append(f"Content-Length: {len(reply.body)}")
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + reply.body)
        await writer.drain()
        return hmap.get("connection", "").lower() != "close"

    async def _fail_records(self, rule: Rule, operation: str, request_line: str,
                            headers: list[tuple[str, str]], body: bytes) -> _Reply:
        doc = orjson.loads(body)
        entries = doc["Records"]
        pick = rule.fail_record or (lambda pos, entry: True)
        failing = [pos for pos, entry in enumerate(entries) if pick(pos, entry)]
        firehose = operation == "PutRecordBatch"
        results_key = "RequestResponses" if firehose else "Records"
        count_key = "FailedPutCount" if firehose else "FailedRecordCount"
        code = rule.error_code or ("ServiceUnavailableException" if firehose
                                   else "ProvisionedThroughputExceededException")
        kept = [e for pos, e in enumerate(entries) if pos not in set(failing)]
        answers: list[dict[str, Any]] = []
        reply = _Reply(200, [("Content-Type", "application/x-amz-json-1.1"),
                             ("x-amzn-RequestId", "proxy-partial")])
        if kept:
            sub = orjson.dumps({**doc, "Records": kept})
            hdrs = [(k, str(len(sub)) if k.lower() == "content-length" else v)
                    for k, v in headers]
            reply = await self._forward(request_line, hdrs, sub)
            if reply.status != 200:
                return reply
            answers = list(orjson.loads(reply.body)[results_key])
        out: list[dict[str, Any]] = []
        it = iter(answers)
        for pos in range(len(entries)):
            if pos in failing:
                out.append({"ErrorCode": code, "ErrorMessage": "injected partial failure"})
            else:
                out.append(next(it))
        reply.body = orjson.dumps({count_key: len(failing), results_key: out})
        return reply

    async def _forward(self, request_line: str, headers: list[tuple[str, str]],
                       body: bytes) -> _Reply:
        r, w = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            lines = [request_line]
            for k, v in headers:
                if k.lower() != "connection":
                    lines.append(f"{k}: {v}")
            lines.append("Connection: close")
            w.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await w.drain()
            raw = await r.read()
        finally:
            w.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        hlines = head.decode("latin-1").split("\r\n")
        status = int(hlines[0].split()[1])
        rh: list[tuple[str, str]] = []
        chunked = False
        for line in hlines[1:]:
            k, _, v = line.partition(":")
            rh.append((k.strip(), v.strip()))
            if k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        if chunked:
            payload = _dechunk(payload)
        return _Reply(status, rh, payload)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2


def _error(status: int, code: str, message: str) -> _Reply:
    body = orjson.dumps({"__type": code, "message": message})
    return _Reply(status, [("Content-Type", "application/x-amz-json-1.1"),
                           ("x-amzn-ErrorType", f"{code}:"),
                           ("x-amzn-RequestId", "proxy-injected")], body)
