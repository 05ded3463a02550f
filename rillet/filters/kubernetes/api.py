"""Pod and Namespace metadata from the Kubernetes API server (or the kubelet's ``/pods``).

:class:`ApiSource` answers :meth:`lookup` from memory; its own asyncio tasks keep the memory
current:

- ``kube_watch on`` (rillet's default): one list of the node's pods
  (``fieldSelector=spec.nodeName=<node>``), then a watch from the list's ``resourceVersion``
  (JSON lines, bookmarks). A ``410 Gone`` (HTTP status or an ``ERROR`` event) re-lists; a dropped
  connection re-watches from the last version after a backoff.
- a lookup the memory cannot answer (a pod of another node, a line read before its watch event)
  schedules one ``GET /api/v1/namespaces/<ns>/pods/<name>``; ``kube_watch off`` does only that,
  as Fluent Bit does, with entries kept ``Kube_Meta_Cache_TTL`` (0 = forever).
- failures (404, 401/403, timeouts, refused connections, answers larger than ``Buffer_Size``)
  become negative entries kept for an exponential backoff capped at ``kube_retry_max``; while the
  API server is unreachable, new lookups are answered negatively without a request, and one probe
  at a time finds out when it is back. So an unreachable API never causes a request storm.
- ``Use_Kubelet``: pods come from ``GET https://<Kubelet_Host>:<Kubelet_Port>/pods``, fetched
  again on a miss (at most once per second) and when entries expire.
- a pod the watch (or the kubelet list) reports deleted is kept ``kube_deleted_pod_retention``
  so its last lines are still enriched, then forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson

from rillet.config.options import Option, Options, T
from rillet.engine.metrics import Counters
from rillet.filters.kubernetes.source import Entry, Kind

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

API_OPTIONS: tuple[Option, ...] = (
    Option("kube_url", T.STR, "https://kubernetes.default.svc:443",
           "API server URL (https:// or http://)"),
    Option("kube_ca_file", T.STR, f"{SA_DIR}/ca.crt", "CA certificate file of the API server"),
    Option("kube_ca_path", T.STR, None, "directory of CA certificate files (PEM)"),
    Option("kube_token_file", T.STR, f"{SA_DIR}/token",
           "bearer token file, re-read every kube_token_ttl"),
    Option("kube_token_command", T.STR, None,
           "shell command printing the bearer token (used instead of kube_token_file)"),
    Option("kube_token_ttl", T.TIME, "10m", "how often the token is read again"),
    Option("tls.verify", T.BOOL, "on", "verify the server's certificate chain"),
    Option("tls.verify_hostname", T.BOOL, "off",
           "also check the certificate names the host (or tls.vhost)"),
    Option("tls.debug", T.INT, "0", "0: no TLS detail in logs; 1 or more: log TLS failures "
           "with the certificate error detail"),
    Option("tls.vhost", T.STR, None, "host name sent in TLS SNI (and checked by "
           "tls.verify_hostname)"),
    Option("buffer_size", T.SIZE, "32k", "largest object (pod, namespace, watch event) "
           "accepted from the API server or kubelet; 0 = unlimited"),
    Option("use_kubelet", T.BOOL, "off", "get pods from the kubelet's /pods, not the API "
           "server"),
    Option("kubelet_host", T.STR, "127.0.0.1", "kubelet host"),
    Option("kubelet_port", T.INT, "10250", "kubelet port"),
    Option("kube_meta_cache_ttl", T.TIME, "0", "how long a fetched pod is kept before it is "
           "fetched again (0 = forever; watched pods are always current)"),
    Option("kube_meta_namespace_cache_ttl", T.TIME, "15m",
           "how long a fetched namespace is kept (0 = forever)"),
    Option("kube_watch", T.BOOL, "on", "rillet: list and watch this node's pods (off: one GET "
           "per unknown pod, as Fluent Bit)"),
    Option("kube_node_name", T.STR, None, "rillet: this node's name for the watch "
           "(default: $NODE_NAME, else the host name)"),
    Option("kube_deleted_pod_retention", T.TIME, "60s", "rillet: how long a deleted pod's "
           "metadata is still used"),
    Option("kube_retry_max", T.TIME, "30s", "rillet: longest backoff before a failed lookup "
           "or connection is tried again"),
    Option("kube_start_wait", T.TIME, "5s", "rillet: how long startup waits for the first "
           "list of pods"),
)

# The largest list (or watch line) read at all, whatever Buffer_Size says: lists hold many
# objects, and Buffer_Size applies to each of them.
HARD_CAP = 256 * 1024 * 1024
_GET_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
_WATCH_SECONDS = 300
# A watch connection that stays silent this long is treated as dead and re-opened from the last
# resourceVersion: API servers send a bookmark about every minute, so a healthy watch is never
# this quiet, and a connection lost without a FIN/RST is noticed in minutes, not at the
# end of the watch.
_WATCH_IDLE = 120.0
_KUBELET_MIN_INTERVAL = 1.0


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} '{url}' must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError(f"{what} '{url}' has an invalid port") from None


def check_api_options(opts: Options) -> None:
    """Startup checks of the API options (raise ValueError with the reason).

    A CA file or directory named explicitly must be readable when it is used (tls.verify on and
    an https URL, or the kubelet); the default service-account paths may be absent (outside a
    cluster): the source then logs the problem when it starts."""
    _check_url(opts["kube_url"], "kube_url")
    port = opts["kubelet_port"]
    if not 0 < port < 65536:
        raise ValueError(f"kubelet_port {port} is not a TCP port")
    if opts["buffer_size"] < 0:
        raise ValueError("buffer_size must be 0 (unlimited) or positive")
    for name in ("kube_token_ttl", "kube_meta_cache_ttl", "kube_meta_namespace_cache_ttl",
                 "kube_deleted_pod_retention", "kube_retry_max", "kube_start_wait"):
        if opts[name] < 0:
            raise ValueError(f"{name} must not be negative")
    tls_used = opts["use_kubelet"] or opts["kube_url"].startswith("https:")
    if opts["tls.verify"] and tls_used:
        ca_file = opts["kube_ca_file"]
        if ca_file and opts.was_set("kube_ca_file") and not os.access(ca_file, os.R_OK):
            raise ValueError(f"kube_ca_file '{ca_file}' is not readable (tls.verify is on)")
        ca_path = opts["kube_ca_path"]
        if ca_path and not os.path.isdir(ca_path):
            raise ValueError(f"kube_ca_path '{ca_path}' is not a readable directory")
        if ca_file and opts.was_set("kube_ca_file"):
            try:
                ssl.create_default_context().load_verify_locations(cafile=ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(f"kube_ca_file '{ca_file}' holds no usable CA certificate: "
                                 f"{exc}") from None


def ssl_context(opts: Options, log: logging.Logger | None = None) -> ssl.SSLContext:
    """The client TLS context: the CA file/directory when given (else the system's CAs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not opts["tls.verify"]:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.check_hostname = bool(opts["tls.verify_hostname"])
    loaded = False
    ca_file = opts["kube_ca_file"]
    if ca_file and os.access(ca_file, os.R_OK):
        ctx.load_verify_locations(cafile=ca_file)
        loaded = True
    elif ca_file and log is not None:
        log.warning("kube_ca_file '%s' is not readable: using the system's CA certificates",
                    ca_file)
    ca_path = opts["kube_ca_path"]
    if ca_path and os.path.isdir(ca_path):
        for path in sorted(Path(ca_path).iterdir()):
            if path.is_file():
                try:
                    ctx.load_verify_locations(cafile=str(path))
                    loaded = True
                except (ssl.SSLError, OSError, ValueError):
                    if log is not None:
                        log.debug("kube_ca_path: %s holds no CA certificate", path)
    if not loaded:
        ctx.load_default_certs()
    return ctx


def node_name(opts: Options) -> str:
    return opts["kube_node_name"] or os.environ.get("NODE_NAME") or socket.gethostname()


# --- errors ---------------------------------------------------------------------------------

class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


# Failures that mean "the server is unreachable", as opposed to an answer about one object.
_NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError,
                   OSError)


def _status_message(body: bytes) -> str:
    """The ``message`` of a Kubernetes Status object, else the start of the body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return body[:200].decode("utf-8", "replace").strip()


def _describe(exc: BaseException, url: str, debug: int) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        detail = f": {cert}" if debug > 0 else f": {getattr(cert, 'verify_message', cert)}"
        return (f"TLS certificate verification failed for {url}{detail} (check kube_ca_file/"
                "kube_ca_path, or set tls.verify off)")
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error talking to {url}: {exc}"
    if isinstance(exc, TimeoutError):
        return f"timeout talking to {url}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {url}: {exc.os_error}"
    return f"{type(exc).__name__} talking to {url}: {exc}"


# --- token ----------------------------------------------------------------------------------

class _Token:
    """The bearer token: the file (or command output), read again every ``ttl`` seconds."""

    def __init__(self, opts: Options, log: logging.Logger, counters: Counters) -> None:
        self.file: str | None = opts["kube_token_file"]
        self.command: str | None = opts["kube_token_command"]
        self.ttl: float = opts["kube_token_ttl"]
        self.log = log
        self.counters = counters
        self.value = ""
        self.read_at = -1e18
        self._warned = False

    async def get(self, now: float) -> str:
        if now - self.read_at >= self.ttl or self.read_at < 0:
            await self.reload(now)
        return self.value

    async def reload(self, now: float) -> bool:
        """Read the token again; True when it changed."""
        self.read_at = now
        old = self.value
        if self.command:
            self.value = await self._run_command(self.command) or self.value
        elif self.file:
            try:
                self.value = Path(self.file).read_text(encoding="utf-8").strip()
                self._warned = False
            except OSError as exc:
                if not self._warned:
                    self.log.warning("cannot read kube_token_file '%s' (%s): requests go "
                                     "without a token", self.file, exc.strerror)
                    self._warned = True
        changed = self.value != old
        if changed:
            self.counters.add("kube_token_reloads")
        return changed

    async def _run_command(self, command: str) -> str:
        try:
            proc = await asyncio.create_subprocess_shell(
                command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 10)
        except (OSError, TimeoutError) as exc:
            self.log.error("kube_token_command failed: %s", exc)
            return ""
        if proc.returncode != 0:
            self.log.error("kube_token_command exited with %s: %s", proc.returncode,
                           err.decode("utf-8", "replace").strip()[:200])
            return ""
        return out.decode("utf-8", "replace").strip()


# --- cache ----------------------------------------------------------------------------------

Key = tuple[str, str]


@dataclass(slots=True)
class _Slot:
    entry: Entry | None = None
    # Positive entry: when it is fetched again (0 = never). Negative: when it may be retried.
    expires: float = 0.0
    failures: int = 0
    inflight: bool = False
    listed: bool = False  # came from the node's list/watch (or the kubelet list)
    deleted_at: float = 0.0


@dataclass
class _Table:
    kind: Kind
    ttl: float
    slots: dict[Key, _Slot] = field(default_factory=dict)
    deleted: dict[Key, float] = field(default_factory=dict)  # key -> forget after
    synced: asyncio.Event | None = None


def _key(kind: Kind, obj: dict[str, Any]) -> Key | None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    name = meta.get("name")
    if not isinstance(name, str):
        return None
    if kind == "namespace":
        return (name, name)
    ns = meta.get("namespace")
    return (ns, name) if isinstance(ns, str) else None


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from ``metadata.resourceVersion``."""
    if a == b:
        return True
    ma, mb = a.get("metadata"), b.get("metadata")
    if not (isinstance(ma, dict) and isinstance(mb, dict)):
        return False
    if {k: v for k, v in a.items() if k != "metadata"} != \
            {k: v for k, v in b.items() if k != "metadata"}:
        return False
    return ({k: v for k, v in ma.items() if k != "resourceVersion"}
            == {k: v for k, v in mb.items() if k != "resourceVersion"})


_PATHS = {"pod": "/api/v1/pods", "namespace": "/api/v1/namespaces"}
COUNTER_NAMES = ("kube_api_requests", "kube_api_errors", "kube_watch_restarts", "kube_relists",
                 "kube_cache_hits", "kube_cache_misses", "kube_cache_negative",
                 "kube_too_large", "kube_token_reloads", "kube_watch_events")


class ApiSource:
    """:class:`~rillet.filters.kubernetes.source.MetaSource` over the API server or kubelet."""

    def __init__(self, opts: Options, log: logging.Logger, counters: Counters, *,
                 namespaces: bool, clock: Callable[[], float] = time.monotonic) -> None:
        check_api_options(opts)
        self.opts = opts
        self.log = log
        self.counters = counters
        for name in COUNTER_NAMES:
            counters.setdefault(name, 0)
        self.clock = clock
        self.want_namespaces = namespaces
        self.api_url = opts["kube_url"].rstrip("/")
        self.kubelet_url = f"https://{opts['kubelet_host']}:{opts['kubelet_port']}"
        self.use_kubelet: bool = opts["use_kubelet"]
        self.watch: bool = opts["kube_watch"]
        self.node = node_name(opts)
        self.limit: int = opts["buffer_size"] or HARD_CAP
        self.retention: float = opts["kube_deleted_pod_retention"]
        self.retry_max: float = opts["kube_retry_max"]
        self.start_wait: float = opts["kube_start_wait"]
        self.tls_debug: int = opts["tls.debug"]
        self.vhost: str | None = opts["tls.vhost"]
        self.token = _Token(opts, log, counters)
        self.tables: dict[Kind, _Table] = {
            "pod": _Table("pod", opts["kube_meta_cache_ttl"]),
            "namespace": _Table("namespace", opts["kube_meta_namespace_cache_ttl"]),
        }
        self._versions = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        # Reachability of the API server (and of the kubelet: one state each).
        self._down: dict[str, _DownState] = {}
        self._kubelet_next = 0.0
        self._kubelet_inflight = False

    # --- MetaSource ---------------------------------------------------------------------

    async def start(self, wait: float) -> None:
        if self._started:
            return
        self._started = True
        ctx = None
        if self.api_url.startswith("https:") or self.use_kubelet:
            try:
                ctx = ssl_context(self.opts, self.log)
            except (ssl.SSLError, OSError) as exc:
                self.log.error("cannot load the CA certificates: %s", exc)
                ctx = ssl.create_default_context()
        connector = aiohttp.TCPConnector(ssl=ctx if ctx is not None else False, limit=16)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        waits: list[asyncio.Event] = []
        kinds: list[Kind] = []
        if self.watch and not self.use_kubelet:
            kinds.append("pod")
        if self.watch and self.want_namespaces:
            kinds.append("namespace")
        for kind in kinds:
            table = self.tables[kind]
            table.synced = asyncio.Event()
            waits.append(table.synced)
            self._spawn(self._informer(table))
        if self.use_kubelet:
            ev = asyncio.Event()
            waits.append(ev)
            self._spawn(self._kubelet_refresh(ev))
        self._spawn(self._janitor())
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in waits)), wait)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._started = False

    def lookup(self, kind: Kind, namespace: str, name: str) -> Entry | None:
        table = self.tables[kind]
        key = (namespace, name)
        slot = table.slots.get(key)
        now = self.clock()
        if slot is None:
            self.counters["kube_cache_misses"] += 1
            slot = table.slots[key] = _Slot()
            down = self._down.get(self._base(kind))
            if down is not None and down.error and (now < down.until or down.probing):
                # known unreachable: answer at once, so records are not held waiting for it
                self._fail(slot, down.error, transient=True, until=max(down.until, now + 0.05))
                return slot.entry
            self._schedule(table, key, slot)
            return None
        entry = slot.entry
        if entry is None:  # first fetch still in flight (or asked before start())
            self.counters["kube_cache_misses"] += 1
            if not slot.inflight:
                self._schedule(table, key, slot)
            return None
        if entry.obj is None:
            self.counters["kube_cache_negative"] += 1
            if now >= slot.expires and not slot.inflight:
                self._schedule(table, key, slot)
            return entry
        self.counters["kube_cache_hits"] += 1
        if slot.expires and now >= slot.expires and not slot.inflight and not slot.deleted_at:
            self._schedule(table, key, slot)  # refresh; the current entry is used meanwhile
        return entry

    # --- background work ----------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule(self, table: _Table, key: Key, slot: _Slot) -> None:
        if not self._started:
            return  # lookups before start(): fetched once the source runs
        if table.kind == "pod" and self.use_kubelet:
            if not self._kubelet_inflight:
                self._spawn(self._kubelet_refresh(None))
            return
        slot.inflight = True
        self._spawn(self._fetch(table, key, slot))

    def _base(self, kind: Kind) -> str:
        return self.kubelet_url if kind == "pod" and self.use_kubelet else self.api_url

    def _backoff(self, failures: int) -> float:
        cap = self.retry_max
        return min(cap, min(1.0, cap) * (2 ** max(0, failures - 1)))

    def _down_state(self, base: str) -> _DownState:
        state = self._down.get(base)
        if state is None:
            state = self._down[base] = _DownState()
        return state

    def _network_failed(self, base: str, error: str) -> None:
        state = self._down_state(base)
        state.failures += 1
        state.until = self.clock() + self._backoff(state.failures)
        if not state.error:
            self.log.warning("%s is unreachable: %s (retrying with backoff up to %gs; records "
                             "pass without metadata meanwhile)", base, error, self.retry_max)
        state.error = error

    def _network_ok(self, base: str) -> None:
        state = self._down.get(base)
        if state is not None and state.error:
            self.log.info("%s is reachable again", base)
            state.failures = 0
            state.error = ""
            state.until = 0.0

    async def _get(self, base: str, path: str, query: dict[str, str] | None = None,
                   limit: int | None = None) -> bytes:
        """GET ``base+path`` with the bearer token; the body of a 200 answer.

        Raises _HttpError (other statuses), _TooLarge, _Gone (410) or a network error."""
        resp = await self._open(base, path, query, _GET_TIMEOUT)
        async with resp:
            if resp.status != 200:
                body = await resp.content.read(64 * 1024)
                if resp.status == 410:
                    raise _Gone(_status_message(body))
                raise _HttpError(resp.status, _status_message(body))
            return await _read_capped(resp, limit or self.limit)

    async def _open(self, base: str, path: str, query: dict[str, str] | None,
                    timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """Send the request; after a 401, read the token again and, if it changed, retry once."""
        assert self._session is not None
        url = base + path + ("?" + urlencode(query) if query else "")
        retried = False
        while True:
            token = await self.token.get(self.clock())
            headers = {"Accept": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            self.counters["kube_api_requests"] += 1
            kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout}
            if self.vhost and base.startswith("https:"):
                kwargs["server_hostname"] = self.vhost
            resp = await self._session.get(url, **kwargs)
            if resp.status == 401 and not retried:
                retried = True
                await self.token.reload(self.clock())
                if self.token.value != token:  # (another request may have read it already)
                    await resp.read()
                    resp.release()
                    self.log.info("%s answered 401: retrying with the new token", base)
                    continue
            return resp

    async def _fetch(self, table: _Table, key: Key, slot: _Slot) -> None:
        """One GET for one object; its answer goes into ``slot``."""
        try:
            ns, name = key
            if table.kind == "pod":
                path = f"/api/v1/namespaces/{quote(ns, safe='')}/pods/{quote(name, safe='')}"
            else:
                path = f"/api/v1/namespaces/{quote(name, safe='')}"
            await self._fetch_one(table, key, slot, self.api_url, path)
        except Exception as exc:  # a bug or an unexpected answer: never kill the source
            self.counters["kube_api_errors"] += 1
            self.log.error("lookup of %s %s/%s failed: %r", table.kind, *key, exc,
                           exc_info=True)
            self._fail(slot, f"unexpected error: {exc!r}", transient=False)
        finally:
            slot.inflight = False

    async def _fetch_one(self, table: _Table, key: Key, slot: _Slot, base: str,
                         path: str) -> None:
        state = self._down_state(base)
        now = self.clock()
        if state.error and (now < state.until or state.probing):
            self._fail(slot, state.error, transient=True, until=max(state.until, now + 0.05))
            return
        probe = bool(state.error)
        state.probing = probe
        what = f"{table.kind} {key[0]}/{key[1]}" if table.kind == "pod" else \
            f"namespace {key[1]}"
        try:
            body = await self._get(base, path)
            obj = orjson.loads(body)
            if not isinstance(obj, dict):
                raise _HttpError(200, "the answer is not a JSON object")
        except _NETWORK_ERRORS as exc:
            error = _describe(exc, base, self.tls_debug)
            self.counters["kube_api_errors"] += 1
            self._network_failed(base, error)
            self._fail(slot, error, transient=True)
            return
        except _TooLarge as exc:
            self._too_large(what, str(exc))
            self._fail(slot, f"{what} is larger than buffer_size ({exc})", transient=False)
            return
        except (_HttpError, _Gone, orjson.JSONDecodeError) as exc:
            self._network_ok(base)
            self.counters["kube_api_errors"] += 1
            status = getattr(exc, "status", 0)
            error = f"cannot get {what}: {exc}"
            self.log.debug("%s", error)
            if status >= 500:
                self._network_failed(base, error)
            self._fail(slot, error, transient=status >= 500 or status == 429)
            return
        finally:
            if probe:
                state.probing = False
        self._network_ok(base)
        if slot.listed and slot.entry is not None and slot.entry.obj is not None:
            return  # the watch has (newer) news about this object
        self._put(table, key, obj, listed=False)

    def _too_large(self, what: str, detail: str) -> None:
        self.counters["kube_too_large"] += 1
        self.log.warning("%s: the answer is larger than buffer_size (%s); set buffer_size "
                         "higher or to 0 (unlimited)", what, detail)

    def _fail(self, slot: _Slot, error: str, *, transient: bool, until: float = 0.0) -> None:
        slot.failures += 1
        now = self.clock()
        slot.expires = until or now + self._backoff(slot.failures)
        old = slot.entry
        if transient and old is not None and old.obj is not None:
            return  # keep what we had until the server answers again
        if old is None or old.obj is not None or old.error != error:
            slot.entry = Entry(None, next(self._versions), error)

    def _put(self, table: _Table, key: Key, obj: dict[str, Any], *, listed: bool,
             expire: bool = False) -> None:
        """Store ``obj``; ``listed``: it came from the node's list/watch; ``expire``: it is
        fetched again after the table's TTL (GETs, the kubelet's list)."""
        slot = table.slots.get(key)
        if slot is None:
            slot = table.slots[key] = _Slot()
        old = slot.entry
        if old is None or old.obj is None or not _same(old.obj, obj):
            slot.entry = Entry(obj, next(self._versions))
        slot.failures = 0
        slot.listed = slot.listed or listed
        slot.expires = self.clock() + table.ttl if (expire or not listed) and table.ttl else 0.0
        if slot.deleted_at:
            slot.deleted_at = 0.0
            table.deleted.pop(key, None)

    def _put_too_large(self, table: _Table, key: Key, size: int) -> None:
        what = f"{table.kind} {key[0]}/{key[1]}"
        self._too_large(what, f"{size} bytes")
        slot = table.slots.setdefault(key, _Slot())
        self._fail(slot, f"{what} is larger than buffer_size ({size} bytes)", transient=False)

    def _deleted(self, table: _Table, key: Key) -> None:
        slot = table.slots.get(key)
        if slot is None or slot.deleted_at:
            return
        now = self.clock()
        slot.deleted_at = now
        slot.expires = 0.0
        table.deleted[key] = now + self.retention

    def _apply_list(self, table: _Table, items: Iterable[Any], limit: int,
                    expire: bool = False) -> None:
        seen: set[Key] = set()
        for item in items:
            if not isinstance(item, dict):
                continue
            key = _key(table.kind, item)
            if key is None:
                continue
            seen.add(key)
            if limit < HARD_CAP:
                size = len(orjson.dumps(item))
                if size > limit:
                    self._put_too_large(table, key, size)
                    continue
            self._put(table, key, item, listed=True, expire=expire)
        for key, slot in list(table.slots.items()):
            if slot.listed and key not in seen and not slot.deleted_at:
                self._deleted(table, key)

    async def _janitor(self) -> None:
        """Forget deleted objects once their retention is over."""
        period = max(0.02, min(1.0, self.retention / 4))
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            for table in self.tables.values():
                if not table.deleted:
                    continue
                for key, deadline in list(table.deleted.items()):
                    if now >= deadline:
                        del table.deleted[key]
                        slot = table.slots.get(key)
                        if slot is not None and slot.deleted_at:
                            del table.slots[key]

    # --- list + watch -------------------------------------------------------------------

    async def _informer(self, table: _Table) -> None:
        """List then watch ``table``'s objects, forever."""
        path = _PATHS[table.kind]
        query = {"fieldSelector": f"spec.nodeName={self.node}"} if table.kind == "pod" else {}
        base = self.api_url
        rv: str | None = None
        failures = 0
        first = True
        while True:
            try:
                if rv is None:
                    if not first:
                        self.counters["kube_relists"] += 1
                    first = False
                    rv = await self._list(table, base, path, query)
                    self._network_ok(base)
                    failures = 0
                    if table.synced is not None:
                        table.synced.set()
                began = self.clock()
                rv, events = await self._watch(table, base, path, query, rv)
                self._network_ok(base)
                if events or self.clock() - began > 1.0:
                    failures = 0
                else:  # the stream ended at once with nothing in it: do not spin
                    failures += 1
                    await asyncio.sleep(self._backoff(failures))
            except _Gone as exc:
                self.log.info("%s watch: %s; listing again", table.kind, exc)
                if rv is None:  # the list itself answered 410: do not spin
                    failures += 1
                    await asyncio.sleep(self._backoff(failures))
                rv = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure: log, back off, try again
                if table.synced is not None:
                    table.synced.set()  # the first attempt has ended
                failures += 1
                self.counters["kube_watch_restarts"] += 1
                self.counters["kube_api_errors"] += 1
                if isinstance(exc, _NETWORK_ERRORS):
                    self._network_failed(base, _describe(exc, base, self.tls_debug))
                else:
                    level = logging.WARNING if failures == 1 else logging.DEBUG
                    expected = (_HttpError, _TooLarge, orjson.JSONDecodeError, ValueError)
                    self.log.log(level, "%s %s: %s", table.kind,
                                 "list" if rv is None else "watch", exc,
                                 exc_info=not isinstance(exc, expected))
                await asyncio.sleep(self._backoff(failures))

    async def _list(self, table: _Table, base: str, path: str, query: dict[str, str]) -> str:
        body = await self._get(base, path, query, HARD_CAP)
        doc = orjson.loads(body)
        items = doc.get("items") if isinstance(doc, dict) else None
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        if not isinstance(items, list | None) or not isinstance(meta, dict):
            raise ValueError(f"the {table.kind} list is not a Kubernetes list object")
        items = items or []
        self._apply_list(table, items, self.limit)
        rv = meta.get("resourceVersion") or ""
        self.log.debug("listed %d %ss (resourceVersion %s)", len(items), table.kind, rv)
        return str(rv)

    async def _watch(self, table: _Table, base: str, path: str, query: dict[str, str],
                     rv: str) -> tuple[str, int]:
        """One watch request; returns the last resourceVersion and the number of events."""
        q = dict(query, watch="1", allowWatchBookmarks="true",
                 timeoutSeconds=str(_WATCH_SECONDS))
        if rv:
            q["resourceVersion"] = rv
        timeout = aiohttp.ClientTimeout(total=_WATCH_SECONDS + 30, sock_connect=10,
                                        sock_read=_WATCH_IDLE)
        resp = await self._open(base, path, q, timeout)
        events = 0
        async with resp:
            if resp.status == 410:
                raise _Gone(_status_message(await resp.content.read(64 * 1024)))
            if resp.status != 200:
                raise _HttpError(resp.status,
                                 _status_message(await resp.content.read(64 * 1024)))
            self._network_ok(base)
            buf = bytearray()
            async for data in resp.content.iter_any():
                buf += data
                start = 0
                while True:
                    end = buf.find(b"\n", start)
                    if end < 0:
                        break
                    line = bytes(buf[start:end])
                    start = end + 1
                    if line.strip():
                        rv = self._event(table, line, rv)
                        events += 1
                if start:
                    del buf[:start]
                if len(buf) > HARD_CAP:
                    raise _TooLarge(f"a watch event of more than {HARD_CAP} bytes")
        return rv, events

    def _event(self, table: _Table, line: bytes, rv: str) -> str:
        self.counters["kube_watch_events"] += 1
        ev = orjson.loads(line)
        kind = ev.get("type") if isinstance(ev, dict) else None
        obj = ev.get("object") if isinstance(ev, dict) else None
        if not isinstance(obj, dict):
            raise ValueError(f"watch event without an object: {line[:200]!r}")
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone(str(obj.get("message", "410 Gone")))
            raise _HttpError(int(obj.get("code") or 0), str(obj.get("message", "")))
        meta = obj.get("metadata")
        new_rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if kind != "BOOKMARK":
            key = _key(table.kind, obj)
            if key is None:
                self.log.debug("watch event without a name: %r", line[:200])
            elif len(line) > self.limit + 64 and kind != "DELETED":
                self._put_too_large(table, key, len(line))
            elif kind in ("ADDED", "MODIFIED"):
                self._put(table, key, obj, listed=True)
            elif kind == "DELETED" and key in table.slots:
                self._put(table, key, obj, listed=True)
                self._deleted(table, key)
        return str(new_rv) if new_rv else rv

    # --- kubelet ------------------------------------------------------------------------

    async def _kubelet_refresh(self, done: asyncio.Event | None) -> None:
        """GET the kubelet's /pods (at most once a second, backing off while it fails)."""
        if self._kubelet_inflight:
            return
        self._kubelet_inflight = True
        table = self.tables["pod"]
        base = self.kubelet_url
        try:
            now = self.clock()
            if now < self._kubelet_next:
                await asyncio.sleep(self._kubelet_next - now)
            state = self._down_state(base)
            error = ""
            items: list[Any] = []
            try:
                body = await self._get(base, "/pods", limit=HARD_CAP)
                doc = orjson.loads(body)
                listed = doc.get("items") if isinstance(doc, dict) else None
                if not isinstance(listed, list):
                    raise _HttpError(200, "the kubelet's /pods answer has no items list")
                items = listed
            except _NETWORK_ERRORS as exc:
                error = _describe(exc, base, self.tls_debug)
                self._network_failed(base, error)
            except (_HttpError, _Gone, _TooLarge, ValueError) as exc:
                error = f"kubelet /pods: {exc}"
                self.log.warning("%s", error)
            if error:
                self.counters["kube_api_errors"] += 1
                self._kubelet_next = self.clock() + self._backoff(max(1, state.failures))
                for slot in table.slots.values():
                    if not slot.listed:
                        self._fail(slot, error, transient=True, until=self._kubelet_next)
                return
            self._network_ok(base)
            self._kubelet_next = self.clock() + _KUBELET_MIN_INTERVAL
            self._apply_list(table, items, self.limit, expire=True)
            for key, slot in table.slots.items():
                if not slot.listed and (slot.entry is None or slot.entry.obj is None):
                    self._fail(slot, f"pod {key[0]}/{key[1]} is not on this node's kubelet",
                               transient=False)
        finally:
            self._kubelet_inflight = False
            if done is not None:
                done.set()


@dataclass(slots=True)
class _DownState:
    failures: int = 0
    until: float = 0.0
    error: str = ""
    probing: bool = False


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    length = resp.content_length
    if length is not None and length > limit:
        raise _TooLarge(f"{length} bytes")
    buf = bytearray()
    async for data in resp.content.iter_any():
        buf += data
        if len(buf) > limit:
            raise _TooLarge(f"more than {limit} bytes")
    return bytes(buf)
