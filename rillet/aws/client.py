"""Signed AWS requests over pooled asynchronous HTTP.

:class:`AwsClient` sends bodies that the output already serialized (orjson bytes), signs them
with botocore's SigV4 signer and sends them with aiohttp over keep-alive connections. botocore
supplies the endpoint (region and partition: ``amazonaws.com``, ``amazonaws.com.cn``, the ISO
and EU sovereign partitions...) and the protocol metadata (JSON version, target prefix, signing
name); ``endpoint`` overrides the URL (``host``, ``host:port`` or a full URL).

Why not botocore's or aiobotocore's own request path: both serialize every request through the
service model in Python and parse every response the same way, which costs 2-3x the CPU per
event of this path (numbers in docs/aws.md).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import botocore.session
import orjson
from yarl import URL

from rillet.aws.credentials import CredentialsError, CredentialsProvider, normalize_url
from rillet.aws.signing import SigV4

__all__ = ["AwsClient", "Response", "resolve_endpoint"]

_USER_AGENT = "rillet/0.1.0 aws-fluent-bit-plugin"
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException"})


@dataclass(slots=True)
class Response:
    """What came back. ``status`` 0 means no HTTP response (network error, timeout, no
    credentials); ``error_code`` is the AWS error code (``ThrottlingException``) or ''."""

    status: int
    body: bytes = b""
    error_code: str = ""
    message: str = ""
    request_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return orjson.loads(self.body) if self.body else {}
        except orjson.JSONDecodeError:
            return {}

    def describe(self) -> str:
        what = self.error_code or (f"HTTP {self.status}" if self.status else "no response")
        return f"{what}: {self.message}" if self.message else what


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    url: str
    signing_name: str
    target_prefix: str
    json_version: str
    partition: str


def resolve_endpoint(service: str, region: str, endpoint: str | None = None) -> ServiceInfo:
    """The URL and protocol metadata of ``service`` in ``region`` (blocking; at startup).

    botocore's endpoint rules give the partition's DNS suffix; no credentials are needed (a
    placeholder key is passed so that building the client does not walk the chain)."""
    session = botocore.session.get_session()
    url = normalize_url(endpoint) if endpoint else None
    try:
        client = session.create_client(service, region_name=region, endpoint_url=url,
                                       aws_access_key_id="x", aws_secret_access_key="x")
    except Exception as exc:
        raise ValueError(f"cannot resolve the {service} endpoint for region '{region}': "
                         f"{exc}") from exc
    model = client.meta.service_model
    meta = model.metadata
    return ServiceInfo(url=client.meta.endpoint_url.rstrip("/"),
                       signing_name=model.signing_name or service,
                       target_prefix=meta.get("targetPrefix", ""),
                       json_version=meta.get("jsonVersion", "1.1"),
                       partition=getattr(client.meta, "partition", "aws") or "aws")


def _error_code(raw: str) -> str:
    """``com.amazon.coral.service#ThrottlingException`` / ``Foo:http://...`` -> the name."""
    return raw.rsplit("#", 1)[-1].split(":", 1)[0].strip()


class AwsClient:
    """One AWS service endpoint for one output instance: pooled connections, signing."""

    keep_headers = False  # True: every Response gets its headers, not only errors

    def __init__(self, service: str, region: str, credentials: CredentialsProvider,
                 log: logging.Logger, *, endpoint: str | None = None,
                 extra_user_agent: str | None = None, auto_retry: bool = True,
                 max_connections: int = 16, timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        info = resolve_endpoint(service, region, endpoint)
        self.service = service
        self.region = region
        self.info = info
        self.url = info.url
        self.credentials = credentials
        self.log = log
        self.auto_retry = auto_retry
        self.max_connections = max_connections
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.user_agent = _USER_AGENT + (f" {extra_user_agent}" if extra_user_agent else "")
        self.content_type = f"application/x-amz-json-{info.json_version}"
        self._session: aiohttp.ClientSession | None = None
        self._signer = SigV4(info.signing_name, region)

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, ttl_dns_cache=60, enable_cleanup_closed=True,
                ssl=self.ssl_context if self.ssl_context is not None else True)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
                skip_auto_headers=("Content-Type",), auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _sign(self, frozen: Any, method: str, url: str, body: bytes,
              headers: dict[str, str]) -> dict[str, str]:
        return dict(self._signer.headers(frozen, method, url, body, headers))

    async def call_json(self, operation: str, body: bytes,
                        headers: dict[str, str] | None = None) -> Response:
        """A JSON-protocol call (CloudWatch Logs, Kinesis, Firehose): ``operation`` is the
        API name (``PutLogEvents``), ``body`` the serialized request."""
        h = {"Content-Type": self.content_type,
             "X-Amz-Target": f"{self.info.target_prefix}.{operation}",
             "User-Agent": self.user_agent}
        if headers:
            h.update(headers)
        return await self.request("POST", "/", body, h)

    async def request(self, method: str, path: str, body: bytes,
                      headers: dict[str, str]) -> Response:
        """Sign and send; network errors come back as ``status`` 0 (one immediate retry of a
        network error when ``auto_retry_requests`` is on, as Fluent Bit does)."""
        attempts = 2 if self.auto_retry else 1
        resp = Response(0)
        for _ in range(attempts):
            resp = await self._send_once(method, path, body, headers)
            if resp.status != 0 or resp.error_code == "CredentialsError":
                return resp
        return resp

    async def _send_once(self, method: str, path: str, body: bytes,
                         headers: dict[str, str]) -> Response:
        try:
            frozen = await self.credentials.frozen()
        except CredentialsError as exc:
            return Response(0, error_code="CredentialsError", message=str(exc))
        url = self.url + path
        signed = self._sign(frozen, method, url, body, headers)
        if self._session is None:
            await self.start()
        session = self._session
        assert session is not None
        try:
            # encoded=True: the path goes out exactly as signed (yarl would otherwise remove
            # "." and ".." segments, which are part of an S3 key).
            async with session.request(method, URL(url, encoded=True), data=body,
                                       headers=signed) as r:
                data = await r.read()
                status = r.status
                rh = r.headers
                request_id = rh.get("x-amzn-RequestId") or rh.get("x-amz-request-id") or ""
                resp = Response(status, data, request_id=request_id)
                if self.keep_headers:  # answers carry data in headers (S3's ETag)
                    resp.headers = dict(rh)
                if status >= 300:
                    _fill_error(resp, rh.get("x-amzn-ErrorType", ""))
                    resp.headers = dict(rh)
                    if resp.error_code in _EXPIRED:
                        # Resolve the chain again on the next request (the policy retries).
                        self.credentials.invalidate()
                return resp
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Response(0, error_code="NetworkError",
                            message=f"{type(exc).__name__}: {exc}".rstrip(": "))


def _fill_error(resp: Response, header_type: str) -> None:
    doc = resp.json()
    raw = header_type
    message = ""
    if isinstance(doc, dict):
        raw = raw or str(doc.get("__type") or doc.get("code") or doc.get("Code") or "")
        message = str(doc.get("message") or doc.get("Message") or "")
    resp.error_code = _error_code(raw) if raw else ""
    if not message and resp.body and not isinstance(doc, dict):
        message = resp.body[:200].decode("utf-8", "replace")
    resp.message = message
