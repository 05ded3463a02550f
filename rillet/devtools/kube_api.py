"""A Kubernetes API server stand-in: real Pod and Namespace JSON over HTTPS, for tests and demos.

It serves, on loopback, the paths the kubernetes filter (and ``kubectl get``) use:

- ``GET /api/v1/namespaces/<ns>/pods/<name>``, ``GET /api/v1/namespaces/<name>``
- lists: ``/api/v1/pods``, ``/api/v1/namespaces/<ns>/pods``, ``/api/v1/namespaces`` with
  ``fieldSelector`` (``spec.nodeName``, ``metadata.name``, ``metadata.namespace``,
  ``status.phase``; ``=``, ``==``, ``!=``) and ``labelSelector`` (``k=v``, ``k!=v``, ``k``)
- watches of the same lists (``watch=1``): JSON lines from ``resourceVersion`` (history kept
  since the last :meth:`KubeApiStandIn.compact`; older versions get ``410 Expired``),
  ``allowWatchBookmarks``, ``timeoutSeconds``
- the kubelet's ``GET /pods`` (the node's pods), ``/version``, ``/api``, ``/apis``,
  ``/api/v1`` (enough discovery for ``kubectl``)

Every request needs ``Authorization: Bearer <token>`` with an accepted token (401 otherwise;
tokens in ``forbidden`` get 403). Errors are Kubernetes ``Status`` objects shaped like the real
server's. The Python control API changes objects (watchers see the events), rotates tokens,
compacts history (forcing 410), takes the API down and up, and keeps a request log.

Objects come from a folder: ``<ns>_<pod>.meta`` files (a Pod, or a kubelet-style list with
``items``; the file name gives the pod's namespace and name) and ``<ns>.namespace_meta`` files,
as in Fluent Bit's conformance data and ``gen_corpus.py``'s ``meta/`` folder. A pod without
``spec.nodeName`` is placed on the stand-in's node.

Run it: ``python -m rillet.devtools.kube_api --meta DIR [--port 0] [--node NAME] [--token T]
[--write-kubeconfig PATH]``; it prints one JSON line with its URL, CA file and token. Test
certificates come from ``trustme`` (a development dependency, imported only when needed).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import copy
import secrets
import signal
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiohttp import web

DEFAULT_TOKEN = "rillet-test-token"
SERVICE_ACCOUNT = "system:serviceaccount:logging:rillet"
K8S_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-rillet",
               "gitCommit": "0000000000000000000000000000000000000000",
               "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
               "goVersion": "go1.22.0", "compiler": "gc", "platform": "linux/amd64"}
R = TypeVar("R")
Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    status: int
    token: str


@dataclass(frozen=True, slots=True)
class CertFiles:
    ca: Path
    cert: Path
    key: Path


def make_test_certs(folder: Path, hosts: Iterable[str] = ()) -> CertFiles:
    """A fresh CA and a server certificate for loopback (and ``hosts``), written as PEM files.

    Needs ``trustme`` (a development dependency)."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    names = ["127.0.0.1", "localhost", "::1", "kubernetes.default.svc", *hosts]
    cert = ca.issue_cert(*names)
    files = CertFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.private_key_pem.write_to_path(str(files.key))
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in cert.cert_chain_pems[1:]:
        with files.cert.open("ab") as fh:
            fh.write(extra.bytes())
    return files


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A Kubernetes ``Status`` object, as the API server sends with errors."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": message, "reason": reason}
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def _status(code: int, reason: str, message: str, details: Obj | None = None) -> web.Response:
    return web.Response(status=code, body=orjson.dumps(status_body(code, reason, message,
                                                                   details)),
                        content_type="application/json")


def _json(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


def load_meta_dir(folder: Path, node: str) -> tuple[list[Obj], list[Obj]]:
    """Pods and namespaces from a folder of ``.meta`` / ``.namespace_meta`` files."""
    pods: list[Obj] = []
    namespaces: list[Obj] = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".meta", ".namespace_meta") or not path.is_file():
            continue
        try:
            doc = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a JSON object")
        if path.suffix == ".namespace_meta":
            meta = doc.setdefault("metadata", {})
            meta["name"] = path.stem
            doc.setdefault("kind", "Namespace")
            doc.setdefault("apiVersion", "v1")
            namespaces.append(doc)
            continue
        if isinstance(doc.get("items"), list):  # a kubelet /pods answer
            for item in doc["items"]:
                if isinstance(item, dict) and isinstance(item.get("metadata"), dict):
                    pods.append(_pod_defaults(item, node))
            continue
        ns, sep, name = path.stem.partition("_")
        if not sep:
            raise ValueError(f"{path}: pod files are named <namespace>_<pod>.meta")
        if not isinstance(doc.get("metadata"), dict):
            doc["metadata"] = {}
        doc["metadata"]["name"] = name
        doc["metadata"]["namespace"] = ns
        pods.append(_pod_defaults(doc, node))
    return pods, namespaces


def _pod_defaults(pod: Obj, node: str) -> Obj:
    pod.setdefault("kind", "Pod")
    pod.setdefault("apiVersion", "v1")
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        spec = pod["spec"] = {}
    spec.setdefault("nodeName", node)
    return pod


# --- selectors ------------------------------------------------------------------------------

_POD_FIELDS = {"metadata.name": ("metadata", "name"),
               "metadata.namespace": ("metadata", "namespace"),
               "spec.nodeName": ("spec", "nodeName"), "status.phase": ("status", "phase")}
_NS_FIELDS = {"metadata.name": ("metadata", "name"), "status.phase": ("status", "phase")}
Pred = Callable[[Obj], bool]


def _dig(obj: Obj, path: tuple[str, str]) -> str:
    part = obj.get(path[0])
    value = part.get(path[1]) if isinstance(part, dict) else None
    return value if isinstance(value, str) else ""


def _split_term(term: str) -> tuple[str, str, str]:
    for op in ("!=", "==", "="):
        if op in term:
            key, _, value = term.partition(op)
            return key.strip(), op, value.strip()
    return term.strip(), "exists", ""


def field_selector(text: str, fields: dict[str, tuple[str, str]]) -> Pred:
    """Raise ValueError (the server's message) for an unsupported field."""
    tests: list[tuple[tuple[str, str], bool, str]] = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        key, op, value = _split_term(term)
        if op == "exists":
            raise ValueError(f"invalid selector: '{text}'; can't understand '{term}'")
        if key not in fields:
            raise ValueError(f'field label not supported: {key}')
        tests.append((fields[key], op == "!=", value))

    def pred(obj: Obj) -> bool:
        return all((_dig(obj, path) == value) != negate for path, negate, value in tests)
    return pred


def label_selector(text: str) -> Pred:
    terms = [_split_term(t) for t in filter(None, (t.strip() for t in text.split(",")))]

    def pred(obj: Obj) -> bool:
        meta = obj.get("metadata")
        labels = meta.get("labels") if isinstance(meta, dict) else None
        labels = labels if isinstance(labels, dict) else {}
        for key, op, value in terms:
            if op == "exists":
                if key not in labels:
                    return False
            elif (labels.get(key) == value) == (op == "!="):
                return False
        return True
    return pred


# --- the server -----------------------------------------------------------------------------

_CLOSE = object()
_RECORDED = web.RequestKey("recorded", bool)


@dataclass(eq=False)
class _Watcher:
    resource: str
    pred: Pred
    queue: asyncio.Queue[Any]


class KubeApiStandIn:
    """The stand-in. Use it as a context manager (it then runs on its own thread), or
    ``await serve_async()`` / ``await close_async()`` on a running loop.

    Control methods may be called from any thread."""

    def __init__(self, meta_dir: Path | str | None = None, *, node: str | None = None,
                 tokens: Iterable[str] = (DEFAULT_TOKEN,),
                 ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 port: int = 0, bookmark_interval: float = 1.0) -> None:
        self.node = node or socket.gethostname()
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.bookmark_interval = bookmark_interval
        self.tokens: set[str] = set(tokens)
        self.forbidden: set[str] = set()
        # True: a watch from a compacted version gets an HTTP 410 answer instead of a 200
        # stream holding one ERROR event (what a real API server usually sends).
        self.gone_as_http = False
        self.pods: dict[tuple[str, str], Obj] = {}
        self.namespaces: dict[str, Obj] = {}
        self.rv = 1000
        self.compacted = 0
        self._history: list[tuple[int, str, str, Obj]] = []
        self._watchers: set[_Watcher] = set()
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._stopping: asyncio.Event | None = None
        if meta_dir is not None:
            pods, namespaces = load_meta_dir(Path(meta_dir), self.node)
            for pod in pods:
                self._store_pod(pod, "ADDED")
            for ns in namespaces:
                self._store_namespace(ns, "ADDED")

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def __enter__(self) -> KubeApiStandIn:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.serve_async())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            assert self._stopping is not None
            loop.run_until_complete(self._stopping.wait())
            loop.run_until_complete(self.close_async())
            loop.close()

        self._thread = threading.Thread(target=run, name="kube-api-stand-in", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)
        self._thread = None

    async def serve_async(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = asyncio.Event()
        await self._up()

    async def close_async(self) -> None:
        await self._shut()

    async def _up(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/version", self._version)
        app.router.add_get("/api", self._api)
        app.router.add_get("/apis", self._apis)
        app.router.add_get("/api/v1", self._api_v1)
        app.router.add_get("/api/v1/pods", self._pods)
        app.router.add_get("/api/v1/namespaces", self._namespaces)
        app.router.add_get("/api/v1/namespaces/{ns}", self._namespace)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._pods)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._pod)
        app.router.add_get("/pods", self._kubelet_pods)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context,
                           reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            self.port = server.sockets[0].getsockname()[1]
        self._runner, self._site = runner, site

    async def _shut(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(_CLOSE)
        if self._runner is not None:
            runner, self._runner, self._site = self._runner, None, None
            await runner.cleanup()

    def stop(self) -> None:
        """Take the API down: close every connection and stop listening (refused)."""
        self._run_async(self._shut)

    def start(self) -> None:
        """Bring the API up again, on the same port."""
        self._run_async(self._up)

    def _run_async(self, fn: Callable[[], Any]) -> None:
        loop = self._loop
        assert loop is not None, "the stand-in is not serving"
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("on the stand-in's loop, await _up()/_shut() instead")
        asyncio.run_coroutine_threadsafe(fn(), loop).result(30)

    def _call(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` on the server's loop (watchers' queues live there)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread or not loop.is_running():
            return fn()
        fut: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the caller
                fut.set_exception(exc)
        loop.call_soon_threadsafe(run)
        return fut.result(30)

    # --- control API --------------------------------------------------------------------

    def set_tokens(self, *tokens: str, forbidden: Iterable[str] = ()) -> None:
        """Accept exactly ``tokens`` from now on (several during a rotation); ``forbidden``
        tokens authenticate but get 403 for everything."""
        with self._lock:
            self.tokens = set(tokens) | set(forbidden)
            self.forbidden = set(forbidden)

    def add_pod(self, pod: Obj) -> Obj:
        """Create (or replace) a pod; watchers get ADDED (MODIFIED if it existed)."""
        pod = _pod_defaults(copy.deepcopy(pod), self.node)
        meta = pod.get("metadata")
        if not (isinstance(meta, dict) and meta.get("name") and meta.get("namespace")):
            raise ValueError("a pod needs metadata.name and metadata.namespace")
        key = (meta["namespace"], meta["name"])
        return self._call(lambda: self._store_pod(pod, "MODIFIED" if key in self.pods
                                                  else "ADDED"))

    def update_pod(self, namespace: str, name: str, *, labels: dict[str, str | None] | None = None,
                   annotations: dict[str, str | None] | None = None,
                   patch: Callable[[Obj], None] | None = None) -> Obj:
        """Change a pod (labels/annotations merged, None deletes a key); watchers get
        MODIFIED."""
        def run() -> Obj:
            current = self.pods.get((namespace, name))
            if current is None:
                raise KeyError(f"no pod {namespace}/{name}")
            pod = copy.deepcopy(current)
            _merge_meta(pod, labels, annotations)
            if patch is not None:
                patch(pod)
            return self._store_pod(pod, "MODIFIED")
        return self._call(run)

    def delete_pod(self, namespace: str, name: str) -> None:
        def run() -> None:
            pod = self.pods.pop((namespace, name), None)
            if pod is None:
                raise KeyError(f"no pod {namespace}/{name}")
            pod = copy.deepcopy(pod)
            self._emit("pods", "DELETED", pod)
        self._call(run)

    def add_namespace(self, namespace: Obj) -> Obj:
        ns = copy.deepcopy(namespace)
        ns.setdefault("kind", "Namespace")
        ns.setdefault("apiVersion", "v1")
        name = ns.get("metadata", {}).get("name")
        if not name:
            raise ValueError("a namespace needs metadata.name")
        return self._call(lambda: self._store_namespace(
            ns, "MODIFIED" if name in self.namespaces else "ADDED"))

    def update_namespace(self, name: str, *, labels: dict[str, str | None] | None = None,
                         annotations: dict[str, str | None] | None = None) -> Obj:
        def run() -> Obj:
            ns = copy.deepcopy(self.namespaces[name])
            _merge_meta(ns, labels, annotations)
            return self._store_namespace(ns, "MODIFIED")
        return self._call(run)

    def delete_namespace(self, name: str) -> None:
        def run() -> None:
            ns = self.namespaces.pop(name)
            self._emit("namespaces", "DELETED", copy.deepcopy(ns))
        self._call(run)

    def compact(self) -> None:
        """Forget the event history: watches from any version seen so far get 410 Expired
        (open watches get an ERROR event and end), as after an etcd compaction."""
        def run() -> None:
            self.rv += 1
            self.compacted = self.rv
            self._history.clear()
            for watcher in list(self._watchers):
                watcher.queue.put_nowait(("gone", self.compacted))
        self._call(run)

    def drop_watches(self) -> None:
        """End every open watch stream (clients reconnect from their last version)."""
        def run() -> None:
            for watcher in list(self._watchers):
                watcher.queue.put_nowait(_CLOSE)
        self._call(run)

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def request_log(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def count(self, path: str | None = None, *, watch: bool | None = None,
              status: int | None = None) -> int:
        """Requests so far whose path starts with ``path`` (watches or not; with a status)."""
        n = 0
        for req in self.request_log():
            if path is not None and not req.path.startswith(path):
                continue
            if watch is not None and ("watch=1" in req.query or "watch=true" in req.query) \
                    != watch:
                continue
            if status is not None and req.status != status:
                continue
            n += 1
        return n

    def write_kubeconfig(self, path: Path, *, token: str | None = None,
                         ca_file: Path | None = None) -> Path:
        """A kubeconfig (JSON, which kubectl reads as YAML) for this server."""
        cluster: Obj = {"server": self.url}
        if ca_file is not None:
            cluster["certificate-authority"] = str(ca_file)
        elif self.scheme == "https":
            cluster["insecure-skip-tls-verify"] = True
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": cluster}],
            "users": [{"name": "rillet", "user": {
                "token": token or next(iter(sorted(self.tokens)), "")}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in",
                                                          "user": "rillet"}}],
        }
        path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
        return path

    # --- state changes (on the loop) ----------------------------------------------------

    def _next_rv(self, obj: Obj) -> int:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return self.rv

    def _store_pod(self, pod: Obj, kind: str) -> Obj:
        meta = pod["metadata"]
        self.pods[(meta["namespace"], meta["name"])] = pod
        self._emit("pods", kind, pod)
        return copy.deepcopy(pod)

    def _store_namespace(self, ns: Obj, kind: str) -> Obj:
        self.namespaces[ns["metadata"]["name"]] = ns
        self._emit("namespaces", kind, ns)
        return copy.deepcopy(ns)

    def _emit(self, resource: str, kind: str, obj: Obj) -> None:
        rv = self._next_rv(obj)
        self._history.append((rv, resource, kind, obj))
        for watcher in list(self._watchers):
            if watcher.resource == resource and watcher.pred(obj):
                watcher.queue.put_nowait((kind, obj))

    # --- HTTP ---------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        with self._lock:
            accepted = token in self.tokens
            forbidden = token in self.forbidden
        if not accepted:
            resp: web.StreamResponse = _status(401, "Unauthorized", "Unauthorized")
        elif forbidden:
            resp = self._forbidden(request)
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                resp = _status(exc.status, exc.reason, exc.text or exc.reason)
        if not request.get(_RECORDED):
            self._record(request, resp.status)
        return resp

    def _record(self, request: web.Request, status: int) -> None:
        """Log a request (a watch is logged when its stream starts, not when it ends)."""
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        request[_RECORDED] = True
        with self._lock:
            self._requests.append(Request(request.method, request.path, request.query_string,
                                          status, token))

    def _forbidden(self, request: web.Request) -> web.Response:
        info = request.match_info
        watch = request.query.get("watch") in ("1", "true")
        resource = "pods" if request.path.endswith("/pods") or "name" in info else "namespaces"
        if request.path == "/pods":
            return _status(403, "Forbidden", f'Forbidden (user={SERVICE_ACCOUNT}, verb=get, '
                           'resource=nodes, subresource=proxy)')
        if "name" in info or (resource == "namespaces" and "ns" in info):
            name = info.get("name") or info["ns"]
            where = f' in the namespace "{info["ns"]}"' if "name" in info else ""
            return _status(403, "Forbidden",
                           f'{resource} "{name}" is forbidden: User "{SERVICE_ACCOUNT}" '
                           f'cannot get resource "{resource}" in API group ""{where}',
                           {"name": name, "kind": resource})
        verb = "watch" if watch else "list"
        where = f'in the namespace "{info["ns"]}"' if "ns" in info else "at the cluster scope"
        return _status(403, "Forbidden", f'{resource} is forbidden: User "{SERVICE_ACCOUNT}" '
                       f'cannot {verb} resource "{resource}" in API group "" {where}',
                       {"kind": resource})

    async def _version(self, request: web.Request) -> web.Response:
        return _json(K8S_VERSION)

    async def _api(self, request: web.Request) -> web.Response:
        return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}]})

    async def _apis(self, request: web.Request) -> web.Response:
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def _api_v1(self, request: web.Request) -> web.Response:
        verbs = ["get", "list", "watch"]
        return _json({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
             "verbs": verbs, "shortNames": ["po"], "categories": ["all"]},
            {"name": "namespaces", "singularName": "namespace", "namespaced": False,
             "kind": "Namespace", "verbs": verbs, "shortNames": ["ns"]},
        ]})

    async def _pod(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self.pods.get((ns, name))
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found',
                           {"name": name, "kind": "pods"})
        return _json(pod)

    async def _namespace(self, request: web.Request) -> web.Response:
        name = request.match_info["ns"]
        ns = self.namespaces.get(name)
        if ns is None:
            return _status(404, "NotFound", f'namespaces "{name}" not found',
                           {"name": name, "kind": "namespaces"})
        return _json(ns)

    async def _kubelet_pods(self, request: web.Request) -> web.Response:
        items = [p for p in self.pods.values() if _dig(p, ("spec", "nodeName")) == self.node]
        return _json({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        ns = request.match_info.get("ns")
        return await self._collection(request, "pods", "PodList", _POD_FIELDS, ns)

    async def _namespaces(self, request: web.Request) -> web.StreamResponse:
        return await self._collection(request, "namespaces", "NamespaceList", _NS_FIELDS, None)

    async def _collection(self, request: web.Request, resource: str, list_kind: str,
                          fields: dict[str, tuple[str, str]],
                          ns: str | None) -> web.StreamResponse:
        try:
            preds = [field_selector(request.query.get("fieldSelector", ""), fields),
                     label_selector(request.query.get("labelSelector", ""))]
        except ValueError as exc:
            return _status(400, "BadRequest", str(exc))
        if ns is not None:
            preds.append(lambda obj: _dig(obj, ("metadata", "namespace")) == ns)

        def pred(obj: Obj) -> bool:
            return all(p(obj) for p in preds)
        if request.query.get("watch") in ("1", "true"):
            return await self._watch(request, resource, pred)
        source = self.pods.values() if resource == "pods" else self.namespaces.values()
        return _json({"kind": list_kind, "apiVersion": "v1",
                      "metadata": {"resourceVersion": str(self.rv)},
                      "items": [obj for obj in source if pred(obj)]})

    def _expired(self, rv: int) -> Obj:
        return status_body(410, "Expired", f"too old resource version: {rv} ({self.compacted})")

    async def _watch(self, request: web.Request, resource: str,
                     pred: Pred) -> web.StreamResponse:
        raw = request.query.get("resourceVersion", "")
        try:
            since = int(raw) if raw not in ("", "0") else None
            timeout = float(request.query.get("timeoutSeconds", "1800"))
        except ValueError:
            return _status(400, "BadRequest", f"invalid resourceVersion or timeoutSeconds: "
                           f"{request.query_string}")
        bookmarks = request.query.get("allowWatchBookmarks") == "true"
        if since is not None and since < self.compacted and self.gone_as_http:
            return _status(410, "Expired", self._expired(since)["message"])
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        self._record(request, resp.status)
        await resp.prepare(request)

        async def send(kind: str, obj: Obj) -> None:
            await resp.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")

        if since is not None and since < self.compacted:
            await send("ERROR", self._expired(since))
            return resp
        watcher = _Watcher(resource, pred, asyncio.Queue())
        if since is None:
            source = self.pods.values() if resource == "pods" else self.namespaces.values()
            backlog: list[tuple[str, Obj]] = [("ADDED", o) for o in source if pred(o)]
        else:
            backlog = [(k, o) for rv, r, k, o in self._history
                       if rv > since and r == resource and pred(o)]
        self._watchers.add(watcher)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            for kind, obj in backlog:
                await send(kind, obj)
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                wait = min(left, self.bookmark_interval) if bookmarks else left
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        kind = "Pod" if resource == "pods" else "Namespace"
                        await send("BOOKMARK", {"kind": kind, "apiVersion": "v1", "metadata": {
                            "resourceVersion": str(self.rv)}})
                    continue
                if item is _CLOSE:
                    break
                if item[0] == "gone":
                    await send("ERROR", self._expired(item[1] - 1))
                    break
                await send(*item)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(watcher)
        return resp


def _merge_meta(obj: Obj, labels: dict[str, str | None] | None,
                annotations: dict[str, str | None] | None) -> None:
    meta = obj.setdefault("metadata", {})
    for key, changes in (("labels", labels), ("annotations", annotations)):
        if changes is None:
            continue
        current = meta.setdefault(key, {})
        for k, v in changes.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v


# --- command line ---------------------------------------------------------------------------

def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rillet.devtools.kube_api",
                                description="Kubernetes API server stand-in (loopback HTTPS).")
    p.add_argument("--meta", required=True, type=Path,
                   help="folder of <ns>_<pod>.meta and <ns>.namespace_meta files")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument("--node", default=None, help="node of pods without spec.nodeName "
                   "(default: the host name)")
    p.add_argument("--token", action="append", default=None,
                   help="accepted bearer token (repeat for several; default: a random one)")
    p.add_argument("--cert-dir", type=Path, default=None,
                   help="where the test CA, server certificate and token file are written "
                   "(default: a temporary folder)")
    p.add_argument("--cert", type=Path, help="server certificate (PEM) instead of a test one")
    p.add_argument("--key", type=Path, help="server key (PEM), with --cert")
    p.add_argument("--ca", type=Path, help="CA file to print, with --cert")
    p.add_argument("--http", action="store_true", help="plain HTTP (no TLS)")
    p.add_argument("--write-kubeconfig", type=Path, default=None, metavar="PATH",
                   help="write a kubeconfig for kubectl")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    folder: Path = args.cert_dir or Path(tempfile.mkdtemp(prefix="kube-api-"))
    folder.mkdir(parents=True, exist_ok=True)
    ca_file: Path | None = None
    ctx: ssl.SSLContext | None = None
    if not args.http:
        if args.cert:
            if not args.key:
                raise SystemExit("--cert needs --key")
            ctx = server_ssl_context(args.cert, args.key)
            ca_file = args.ca
        else:
            files = make_test_certs(folder)
            ctx = server_ssl_context(files.cert, files.key)
            ca_file = files.ca
    tokens = args.token or [secrets.token_urlsafe(24)]
    stand_in = KubeApiStandIn(args.meta, node=args.node, tokens=tokens, ssl_context=ctx,
                              host=args.host, port=args.port)
    await stand_in.serve_async()
    token_file = folder / "token"
    token_file.write_text(tokens[0] + "\n", encoding="utf-8")
    kubeconfig = None
    if args.write_kubeconfig:
        kubeconfig = str(stand_in.write_kubeconfig(args.write_kubeconfig, token=tokens[0],
                                                   ca_file=ca_file))
    info = {"url": stand_in.url, "ca_file": str(ca_file) if ca_file else None,
            "token": tokens[0], "token_file": str(token_file), "node": stand_in.node,
            "pods": len(stand_in.pods), "namespaces": len(stand_in.namespaces),
            "kubeconfig": kubeconfig}
    sys.stdout.write(orjson.dumps(info).decode() + "\n")
    sys.stdout.flush()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await stand_in.close_async()


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    try:
        asyncio.run(_serve(args))
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"kube_api: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
