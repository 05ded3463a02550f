"""``aws`` filter: the EC2 instance's metadata on every record (Fluent Bit's filter_aws).

The metadata comes from the EC2 Instance Metadata Service (IMDS) at 169.254.169.254, or at the
URL in ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (the AWS SDKs' variable; rillet's addition, for
tests and setups off EC2). IMDSv2 (the default) asks ``PUT /latest/api/token`` for a session
token and sends it with every GET; v1 sends plain GETs.

The values are fetched in groups, in Fluent Bit's order (instance id, account id, instance
type, private IP, VPC id, AMI id, hostname, availability zone, tags), when the filter starts
(waiting ~2 s at most) and then, for the groups still missing, every ``retry_interval_s`` by a
background task, never on the record path. Meanwhile records pass with the groups already known
(none while IMDS is unreachable), counted in ``aws_unenriched_records``; one warning says why.

The added fields never change once known, so they are serialized once: a serialized body gets
them spliced in before its closing brace (its own keys are not decoded); a dict body gets them
appended (an existing key of the same name is replaced by the appended one; Fluent Bit appends
a second copy, and JSON readers keep the last). Keys, in order: ``az``, ``ec2_instance_id``,
``ec2_instance_type``, ``private_ip``, ``vpc_id``, ``ami_id``, ``account_id``, ``hostname``,
the instance tags, then ``aws_entity_ec2_instance_id`` and ``aws_entity_account_id``
(``enable_entity``). See docs/aws-filter.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch, Body
from rillet.engine.plugin import Filter, register
from rillet.net.http import HttpClient, HttpResponse
from rillet.net.tls import ClientTls

ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
DEFAULT_ENDPOINT = "http://169.254.169.254/"
TOKEN_PATH = "/latest/api/token"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_TTL = 21600  # seconds, as Fluent Bit asks
META = "/latest/meta-data/"
DOCUMENT_PATH = "/latest/dynamic/instance-identity/document"
REQUEST_TIMEOUT = 1.0  # seconds per IMDS request (Fluent Bit: 1 s connect and I/O timeouts)
START_WAIT = 2.0  # how long start() waits for the first round
MIN_RETRY = 1.0  # retry_interval_s 0 (Fluent Bit: every flush) retries every second

_dumps = orjson.dumps
_loads = orjson.loads


def _not_negative(value: int) -> str | None:
    return "retry_interval_s must not be negative" if value < 0 else None


def _tag_list(text: str | None) -> list[str] | None:
    """A comma list of tag keys (blanks around each name dropped); None when unset."""
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


class ImdsError(Exception):
    """An IMDS request that did not give a value; ``network`` when nothing answered."""

    def __init__(self, reason: str, network: bool = False, status: int = 0) -> None:
        super().__init__(reason)
        self.network = network
        self.status = status


class ImdsClient:
    """GETs from IMDS, v1 or v2 (a session token, fetched again when refused or old)."""

    def __init__(self, endpoint: str, version: str, timeout: float = REQUEST_TIMEOUT) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        if parts.scheme not in ("http", "") or not parts.hostname:
            raise ValueError(f"{ENDPOINT_VARIABLE}: '{endpoint}' is not an http://HOST[:PORT] "
                             "URL")
        self.endpoint = f"http://{parts.netloc}/"
        self.version = version
        self.http = HttpClient(parts.hostname, parts.port or 80, ClientTls(None),
                               timeout=timeout, max_connections=2)
        self.requests = 0
        self._token: str | None = None
        self._token_time = 0.0

    async def close(self) -> None:
        await self.http.close()

    async def _send(self, method: str, path: str, headers: list[tuple[str, str]]) -> HttpResponse:
        self.requests += 1
        resp = await self.http.request(method, path, b"", headers)
        if resp.status == 0:
            raise ImdsError(f"IMDS at {self.endpoint} did not answer: {resp.error}",
                            network=True)
        return resp

    async def _session_token(self) -> str:
        if self._token is not None and time.monotonic() - self._token_time < TOKEN_TTL - 60:
            return self._token
        resp = await self._send("PUT", TOKEN_PATH, [(TTL_HEADER, str(TOKEN_TTL))])
        if resp.status != 200 or not resp.body:
            raise ImdsError(f"IMDSv2 token request: {resp.describe()}", status=resp.status)
        self._token = resp.body.decode("utf-8", "replace").strip()
        self._token_time = time.monotonic()
        return self._token

    async def get(self, path: str) -> str:
        """The text at ``path``; raises :class:`ImdsError` (``status`` 404: not there)."""
        for attempt in (1, 2):
            headers: list[tuple[str, str]] = []
            if self.version == "v2":
                headers.append((TOKEN_HEADER, await self._session_token()))
            resp = await self._send("GET", path, headers)
            if resp.status == 200:
                return resp.body.decode("utf-8", "replace")
            if resp.status == 401 and self.version == "v2" and attempt == 1:
                self._token = None  # expired or revoked: one new token, one more try
                continue
            hint = ""
            if resp.status == 401 and self.version == "v1":
                hint = " (the instance requires IMDSv2 session tokens: use imds_version v2)"
            raise ImdsError(f"GET {path}: {resp.describe()}{hint}", status=resp.status)
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(slots=True)
class _Group:
    """One metadata group: fetched once, retried until it succeeds."""

    name: str
    fetch: Callable[[], Awaitable[None]]
    done: bool = False


@register
class AwsFilter(Filter):
    name = "aws"
    description = "Add AWS Metadata"
    options = (
        Option("imds_version", T.STR, "v2", "instance metadata service version: v1 (plain "
               "GETs) or v2 (session token); v2 may need a hop limit of 2 in containers",
               choices=("v1", "v2")),
        Option("az", T.BOOL, "true", "add the availability zone (az)"),
        Option("ec2_instance_id", T.BOOL, "true", "add the instance id (ec2_instance_id)"),
        Option("ec2_instance_type", T.BOOL, "false", "add the instance type "
               "(ec2_instance_type)"),
        Option("private_ip", T.BOOL, "false", "add the private IPv4 address (private_ip)"),
        Option("vpc_id", T.BOOL, "false", "add the VPC id of the primary interface (vpc_id)"),
        Option("ami_id", T.BOOL, "false", "add the image id (ami_id)"),
        Option("account_id", T.BOOL, "false", "add the AWS account id (account_id)"),
        Option("hostname", T.BOOL, "false", "add the instance's private DNS hostname "
               "(hostname)"),
        Option("tags_enabled", T.BOOL, "false", "add the instance tags (needs tags in "
               "instance metadata enabled on the instance)"),
        Option("tags_include", T.STR, None, "comma list: add only these tag keys"),
        Option("tags_exclude", T.STR, None, "comma list: add every tag key but these"),
        Option("retry_interval_s", T.INT, "300", "seconds between attempts to fetch the "
               "metadata still missing", check=_not_negative),
        Option("enable_entity", T.BOOL, "false", "also add aws_entity_ec2_instance_id and "
               "aws_entity_account_id (CloudWatch entity)"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        self.include = _tag_list(o["tags_include"])
        self.exclude = _tag_list(o["tags_exclude"])
        if o["tags_include"] is not None and o["tags_exclude"] is not None:
            raise ValueError("tags_include and tags_exclude are exclusive with each other")
        if (self.include is not None or self.exclude is not None) and not o["tags_enabled"]:
            self.log.warning("tags_include/tags_exclude have no effect: tags_enabled is off")
        self.version: str = o["imds_version"]
        self.retry = max(float(o["retry_interval_s"]), MIN_RETRY)
        self.entity: bool = o["enable_entity"]
        self.endpoint = os.environ.get(ENDPOINT_VARIABLE, "").strip() or DEFAULT_ENDPOINT
        # Checked now so that a bad variable fails at startup, like an option.
        self.client: ImdsClient | None = None
        ImdsClient(self.endpoint, self.version)
        self.values: dict[str, str] = {}
        self.tags: list[tuple[str, str]] = []
        want_id = o["ec2_instance_id"] or self.entity
        want_account = o["account_id"] or self.entity
        plan: list[tuple[str, bool, Callable[[], Awaitable[None]]]] = [
            ("instance id", want_id, self._path_fetch("ec2_instance_id", "instance-id")),
            ("account id", want_account, self._account),
            ("instance type", o["ec2_instance_type"],
             self._path_fetch("ec2_instance_type", "instance-type")),
            ("private IP", o["private_ip"], self._path_fetch("private_ip", "local-ipv4")),
            ("VPC id", o["vpc_id"], self._vpc),
            ("AMI id", o["ami_id"], self._path_fetch("ami_id", "ami-id")),
            ("hostname", o["hostname"], self._path_fetch("hostname", "hostname")),
            ("availability zone", o["az"],
             self._path_fetch("az", "placement/availability-zone")),
            ("tags", o["tags_enabled"], self._tags),
        ]
        self.groups = [_Group(name, fetch) for name, wanted, fetch in plan if wanted]
        self.shown = [key for key in ("az", "ec2_instance_id", "ec2_instance_type",
                                      "private_ip", "vpc_id", "ami_id", "account_id",
                                      "hostname") if o[key]]
        self.complete = not self.groups
        self.reason = ""
        self.fields: dict[str, str] = {}
        self.tail = b""
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        for name in ("aws_unenriched_records", "aws_imds_errors"):
            self.counters.setdefault(name, 0)
        if not self.groups:
            self.log.warning("az, ec2_instance_id and every other key are off: records "
                             "pass unchanged")

    # -- fetching (off the record path) ---------------------------------------------------------
    def _path_fetch(self, key: str, path: str) -> Callable[[], Awaitable[None]]:
        async def fetch() -> None:
            assert self.client is not None
            self.values[key] = (await self.client.get(META + path)).strip()
        return fetch

    async def _account(self) -> None:
        assert self.client is not None
        text = await self.client.get(DOCUMENT_PATH)
        try:
            doc = _loads(text)
        except orjson.JSONDecodeError:
            doc = None
        account = doc.get("accountId") if type(doc) is dict else None
        if type(account) is not str or not account:
            raise ImdsError(f"GET {DOCUMENT_PATH}: no accountId in the identity document")
        self.values["account_id"] = account

    async def _vpc(self) -> None:
        assert self.client is not None
        mac = (await self.client.get(META + "mac")).strip()
        vpc = await self.client.get(f"{META}network/interfaces/macs/{quote(mac)}/vpc-id")
        self.values["vpc_id"] = vpc.strip()

    async def _tags(self) -> None:
        assert self.client is not None
        try:
            listing = await self.client.get(META + "tags/instance")
        except ImdsError as exc:
            if exc.status != 404:
                raise
            self.log.warning("EC2 instance metadata tag request returned 404: the instance "
                             "has no tags, or tags in instance metadata are not enabled; no "
                             "tags are added")
            self.tags = []
            return
        keys = [k.strip() for k in listing.split("\n") if k.strip()]
        tags: list[tuple[str, str]] = []
        for key in keys:
            value = await self.client.get(f"{META}tags/instance/{quote(key, safe='')}")
            tags.append((key, value))
        if self.include is not None:
            wanted = set(self.include)
            tags = [(k, v) for k, v in tags if k in wanted]
        elif self.exclude is not None:
            unwanted = set(self.exclude)
            tags = [(k, v) for k, v in tags if k not in unwanted]
        self.tags = tags

    async def fetch_round(self) -> None:
        """Try every group still missing, in order; stop at the first network failure (the
        others would wait for the same timeout)."""
        failures: list[str] = []
        for group in self.groups:
            if group.done:
                continue
            try:
                await group.fetch()
            except ImdsError as exc:
                self.counters.add("aws_imds_errors")
                failures.append(f"{group.name}: {exc}")
                if exc.network:
                    break
                continue
            group.done = True
        self.reason = failures[0] if failures else ""
        self._render()
        self.complete = all(g.done for g in self.groups)

    def _render(self) -> None:
        """The fields the records get now, as a dict and as spliceable JSON text."""
        values = self.values
        fields = {key: values[key] for key in self.shown if key in values}
        fields.update(self.tags)
        if self.entity and "ec2_instance_id" in values and "account_id" in values:
            fields["aws_entity_ec2_instance_id"] = values["ec2_instance_id"]
            fields["aws_entity_account_id"] = values["account_id"]
        self.fields = fields
        self.tail = b"," + _dumps(fields)[1:] if fields else b""

    async def _run(self) -> None:
        try:
            await self.fetch_round()
        finally:
            self._first.set()
        while not self.complete:
            await asyncio.sleep(self.retry)
            was = self.reason
            await self.fetch_round()
            if self.complete:
                self.log.info("EC2 metadata retrieved from %s after %s", self.endpoint,
                              was or "a retry")
            elif self.reason != was:
                self.log.debug("EC2 metadata still incomplete: %s", self.reason)

    async def start(self) -> None:
        if self.complete:
            return
        self.client = ImdsClient(self.endpoint, self.version)
        self._task = asyncio.create_task(self._run(), name=f"{self.instance}: IMDS")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), START_WAIT)
        if not self.complete and not self._warned:
            self._warned = True
            self.log.warning("EC2 metadata not available (%s); records pass without it "
                             "(counted in aws_unenriched_records) and IMDS is asked again "
                             "every %gs", self.reason or f"no answer from {self.endpoint} "
                             f"within {START_WAIT:g}s", self.retry)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self.client = self.client, None
        if client is not None:
            await client.close()

    # -- the record path ------------------------------------------------------------------------
    def filter(self, batch: Batch) -> Batch:
        bodies = batch.bodies
        if not self.complete:
            self.counters.add("aws_unenriched_records", len(bodies))
        tail = self.tail
        if not tail:
            return batch
        fields = self.fields
        disjoint = fields.keys().isdisjoint
        slow = self._slow
        out: list[Body] = []
        add = out.append
        grown = 0
        extra = len(tail) - 1
        for body in bodies:
            if type(body) is bytes:
                # '{...}' with no blank before the brace: splice; anything else is decoded.
                if body[-1:] == b"}" and body[:1] == b"{" and body[-2:-1] not in b" \t\r\n":
                    add(body[:-1] + tail if len(body) > 2 else b"{" + tail[1:])
                    grown += extra
                else:
                    add(slow(body))
            elif type(body) is dict:
                if not disjoint(body):
                    for key in fields:
                        body.pop(key, None)
                body.update(fields)
                add(body)
            else:  # pragma: no cover - bodies are bytes or dicts
                add(body)
        batch.bodies = out
        batch.size += grown
        return batch

    def _slow(self, body: bytes) -> Body:
        """A serialized body not shaped '{...}': decoded; a JSON object gets the fields, any
        other body passes as it is."""
        try:
            rec = _loads(body)
        except orjson.JSONDecodeError:
            return body
        if type(rec) is not dict:
            return body
        for key in self.fields:
            rec.pop(key, None)
        rec.update(self.fields)
        return rec
