"""An EC2 Instance Metadata Service (IMDS) stand-in, for tests and demos of the ``aws`` filter.

It serves, on loopback over plain HTTP as the real service does:

- ``PUT /latest/api/token`` (IMDSv2): needs ``X-aws-ec2-metadata-token-ttl-seconds`` between 1
  and 21600 (400 otherwise) and answers a session token valid for that long;
- ``GET /latest/meta-data/<path>``: the values of :attr:`ImdsStandIn.metadata` (a folder path
  lists its children, one a line, folders with a trailing ``/``), and the instance tags under
  ``tags/instance`` (404 while tags in metadata are off, as on a real instance by default);
- ``GET /latest/dynamic/instance-identity/document``: the identity document (JSON).

A GET with an ``X-aws-ec2-metadata-token`` header needs a valid token (401 otherwise); without
one it is an IMDSv1 request, answered unless ``http_tokens`` is ``required`` (401), as EC2's
``HttpTokens`` setting does. The control methods (any thread) change values and tags, switch
v1 and tags on and off, expire tokens, take the service down and up on the same port, slow it
down, and count the requests by path and status.

Use it as a context manager (it runs its own event loop on a thread)::

    with ImdsStandIn() as imds:
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.url
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL = 21600
ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"

INSTANCE_ID = "i-0abc1234def567890"
ACCOUNT_ID = "123456789012"
MAC = "0e:49:61:0f:c3:11"


def default_metadata() -> dict[str, str]:
    """The meta-data values of a plausible instance (paths under ``/latest/meta-data/``)."""
    return {
        "instance-id": INSTANCE_ID,
        "placement/availability-zone": "us-east-1a",
        "placement/region": "us-east-1",
        "instance-type": "m5.large",
        "local-ipv4": "10.0.12.34",
        "mac": MAC,
        f"network/interfaces/macs/{MAC}/vpc-id": "vpc-0123456789abcdef0",
        f"network/interfaces/macs/{MAC}/subnet-id": "subnet-0123456789abcdef0",
        "ami-id": "ami-0fedcba9876543210",
        "hostname": "ip-10-0-12-34.ec2.internal",
        "local-hostname": "ip-10-0-12-34.ec2.internal",
    }


def identity_document(metadata: Mapping[str, str], account_id: str = ACCOUNT_ID) -> dict[str, Any]:
    """The instance identity document matching ``metadata``."""
    return {
        "accountId": account_id,
        "architecture": "x86_64",
        "availabilityZone": metadata.get("placement/availability-zone", ""),
        "imageId": metadata.get("ami-id", ""),
        "instanceId": metadata.get("instance-id", ""),
        "instanceType": metadata.get("instance-type", ""),
        "pendingTime": "2026-11-01T08:00:00Z",
        "privateIp": metadata.get("local-ipv4", ""),
        "region": metadata.get("placement/region", ""),
        "version": "2017-09-30",
    }


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    status: int
    token: bool  # the request carried a session token (IMDSv2)


class ImdsStandIn:
    """The stand-in; attributes may be changed from any thread while it serves."""

    def __init__(self, metadata: Mapping[str, str] | None = None, *,
                 tags: Mapping[str, str] | None = None, tags_in_metadata: bool = True,
                 http_tokens: str = "optional", account_id: str = ACCOUNT_ID,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if http_tokens not in ("optional", "required"):
            raise ValueError("http_tokens: optional or required")
        self.metadata: dict[str, str] = dict(default_metadata() if metadata is None
                                             else metadata)
        self.tags: dict[str, str] = dict({"Name": "node-1", "team": "logs"} if tags is None
                                         else tags)
        self.tags_in_metadata = tags_in_metadata
        self.http_tokens = http_tokens
        self.account_id = account_id
        self.delay = 0.0  # seconds before each answer (timeouts)
        self.host = host
        self.port = port
        self._tokens: dict[str, float] = {}
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The endpoint, as ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` takes it."""
        return f"http://{self.host}:{self.port}/"

    # --- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> ImdsStandIn:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="imds-stand-in",
                                        daemon=True)
        self._thread.start()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def _on_loop(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None, "use the stand-in as a context manager"
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def start(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        self._on_loop(self._listen())

    def stop(self) -> None:
        """Stop listening and drop every connection (connections are then refused)."""
        self._on_loop(self._close())

    async def _listen(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        document = "/latest/dynamic/instance-identity/document"
        app.add_routes([web.put("/latest/api/token", self._token),
                        web.get("/latest/meta-data", self._meta),
                        web.get("/latest/meta-data/{path:.*}", self._meta),
                        web.get(document, self._document), web.get(document + "/", self._document)])
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            self.port = server.sockets[0].getsockname()[1]
        self._runner = runner

    async def _close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- control ------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every token handed out so far stops being valid (401 on its next use)."""
        with self._lock:
            self._tokens.clear()

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def count(self, path: str = "", *, status: int | None = None,
              method: str | None = None) -> int:
        """Requests so far whose path starts with ``path`` (with that status and method)."""
        return sum(1 for r in self.requests() if r.path.startswith(path)
                   and (status is None or r.status == status)
                   and (method is None or r.method == method))

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- handlers -----------------------------------------------------------------------

    def _log(self, request: web.Request, status: int) -> None:
        with self._lock:
            self._requests.append(Request(request.method, request.path, status,
                                          TOKEN_HEADER in request.headers))

    async def _answer(self, request: web.Request, status: int, text: str,
                      content_type: str = "text/plain") -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        self._log(request, status)
        return web.Response(status=status, text=text, content_type=content_type)

    async def _token(self, request: web.Request) -> web.Response:
        raw = request.headers.get(TTL_HEADER)
        try:
            ttl = int(raw) if raw is not None else 0
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TTL:
            return await self._answer(request, 400, "Bad Request")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return await self._answer(request, 200, token)

    def _authorized(self, request: web.Request) -> bool:
        token = request.headers.get(TOKEN_HEADER)
        if token is None:
            return self.http_tokens != "required"
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    async def _meta(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return await self._answer(request, 401, "Unauthorized")
        path = request.match_info.get("path", "").strip("/")
        value = self._lookup(path)
        if value is None:
            return await self._answer(request, 404, "Not Found")
        return await self._answer(request, 200, value)

    def _lookup(self, path: str) -> str | None:
        if path == "tags" or path.startswith("tags/"):
            if not self.tags_in_metadata:
                return None
            tags = dict(self.tags)
            if path == "tags":
                return "instance/"
            if path == "tags/instance":
                return "\n".join(tags)
            return tags.get(path[len("tags/instance/"):]) \
                if path.startswith("tags/instance/") else None
        values = dict(self.metadata)
        if path in values:
            return values[path]
        prefix = path + "/" if path else ""
        children: list[str] = []
        for key in values:
            if key.startswith(prefix):
                head, sep, _ = key[len(prefix):].partition("/")
                entry = head + sep
                if entry not in children:
                    children.append(entry)
        return "\n".join(children) if children else None

    async def _document(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return await self._answer(request, 401, "Unauthorized")
        doc = identity_document(self.metadata, self.account_id)
        return await self._answer(request, 200, orjson.dumps(doc, option=orjson.OPT_INDENT_2)
                                  .decode(), "text/plain")
