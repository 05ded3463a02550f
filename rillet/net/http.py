"""One pooled HTTP client per output instance (aiohttp, imported when an output starts one).

:class:`HttpClient` keeps keep-alive connections to one ``host:port`` (plain or TLS), sends
bodies that the output already serialized and compressed, and answers every request with an
:class:`HttpResponse`: ``status`` 0 and ``error`` set for a network error or a timeout, so an
output decides RETRY / ERROR from one value and never has to catch transport exceptions.
Redirects are not followed (a 3xx is an answer like any other). With a
:class:`~rillet.net.sigv4.Signer`, every request is signed (AWS SigV4) over the bytes sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rillet.net.tls import ClientTls

if TYPE_CHECKING:
    from rillet.net.sigv4 import Signer

__all__ = ["HttpClient", "HttpResponse", "host_header"]


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def describe(self, limit: int = 300) -> str:
        """``HTTP 400: <start of the body>`` or the network error."""
        if self.status == 0:
            return self.error or "no response"
        text = self.body[:limit].decode("utf-8", "replace").strip()
        return f"HTTP {self.status}: {text}" if text else f"HTTP {self.status}"


def host_header(host: str, port: int, tls: bool, with_port: bool = True) -> str:
    """The Host header for ``host:port``: the port is left out when it is the scheme's default
    (or when ``with_port`` is False); IPv6 literals get brackets."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    default = 443 if tls else 80
    if with_port and port != default:
        return f"{name}:{port}"
    return name


class HttpClient:
    """Keep-alive connections to one server for one output instance."""

    def __init__(self, host: str, port: int, tls: ClientTls, *, timeout: float = 60.0,
                 max_connections: int = 16, proxy: str | None = None,
                 signer: Signer | None = None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        scheme = "https" if tls.enabled else "http"
        name = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.base_url = f"{scheme}://{name}:{port}"
        self.timeout = timeout
        self.max_connections = max_connections
        self.proxy = proxy
        self.signer = signer
        self._session: Any = None

    async def start(self) -> None:
        if self._session is not None:
            return
        import aiohttp

        if self.signer is not None:
            await self.signer.start()

        ssl_arg: Any = self.tls.context if self.tls.context is not None else False
        connector = aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=60,
                                         ssl=ssl_arg, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
            skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
            auto_decompress=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: bytes,
                      headers: Sequence[tuple[str, str]]) -> HttpResponse:
        """Send once; never raises for transport problems (``status`` 0 instead)."""
        import aiohttp

        if self._session is None:
            await self.start()
        session = self._session
        if self.signer is not None:
            from rillet.aws.credentials import CredentialsError

            try:
                headers = await self.signer.sign(method, self.base_url + path, body,
                                                 list(headers))
            except CredentialsError as exc:
                return HttpResponse(0, error=f"AWS credentials: {exc}")
        kwargs: dict[str, Any] = {"data": body, "headers": list(headers),
                                  "allow_redirects": False}
        if self.tls.server_hostname:
            kwargs["server_hostname"] = self.tls.server_hostname
        if self.proxy:
            kwargs["proxy"] = self.proxy
        try:
            async with session.request(method, self.base_url + path, **kwargs) as r:
                data = await r.read()
                return HttpResponse(r.status, data, dict(r.headers))
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            what = f"{type(exc).__name__}: {exc}".rstrip(": ")
            return HttpResponse(0, error=f"{self.base_url}{path}: {what}")
