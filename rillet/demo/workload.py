"""The demo's node: pods, their container log files in Docker's json-file format, nginx
servers that log real requests, and a small load generator in the spirit of ``hey``.

Everything a kubelet and dockerd would leave on a node is laid out under one folder:
``var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`` holds the lines and
``var/log/containers/<pod>_<ns>_<container>-<id>.log`` links to it, as on a real node.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientSession, ClientTimeout, web

NODE = "ip-10-1-128-166.us-east-2.compute.internal"
DOCKER_SPLIT = 16 * 1024            # dockerd splits a message every 16 KiB
NGINX_PAGE = (b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\n"
              b"    body {\n        width: 35em;\n        margin: 0 auto;\n"
              b"        font-family: Tahoma, Verdana, Arial, sans-serif;\n    }\n</style>\n"
              b"</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx "
              b"web server is successfully installed and\nworking. Further configuration is "
              b"required.</p>\n\n<p>For online documentation and support please refer to\n"
              b"<a href=\"http://nginx.org/\">nginx.org</a>.<br/>\nCommercial support is "
              b"available at\n<a href=\"http://nginx.com/\">nginx.com</a>.</p>\n\n<p><em>Thank "
              b"you for using nginx.</em></p>\n</body>\n</html>\n")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def docker_time(ns: int) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed: what dockerd writes."""
    secs, frac = divmod(ns, 1_000_000_000)
    t = time.gmtime(secs)
    digits = f"{frac:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + (f".{digits}" if digits else "") + "Z"


def nginx_time(secs: float) -> str:
    t = time.gmtime(secs)
    return (f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


class DockerLogFile:
    """One container's log file as dockerd's json-file driver writes it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self.lines = 0
        self.lock = threading.Lock()

    def encode(self, line: str, stream: str, ns: int) -> bytes:
        data = (line + "\n").encode()
        stamp = docker_time(ns)
        out = []
        for i in range(0, len(data), DOCKER_SPLIT):
            part = data[i:i + DOCKER_SPLIT].decode(errors="ignore")
            out.append(orjson.dumps({"log": part, "stream": stream, "time": stamp}) + b"\n")
        return b"".join(out)

    def write(self, line: str, stream: str = "stdout", ns: int | None = None) -> None:
        blob = self.encode(line, stream, time.time_ns() if ns is None else ns)
        with self.lock:
            os.write(self.fd, blob)
            self.lines += 1

    def write_many(self, lines: list[tuple[str, str, int]]) -> None:
        blob = b"".join(self.encode(line, stream, ns) for line, stream, ns in lines)
        with self.lock:
            os.write(self.fd, blob)
            self.lines += len(lines)

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class DemoPod:
    """A pod with one container; ``kind`` says what it logs (nginx, json, java, chatter)."""

    kind: str
    namespace: str
    name: str
    container: str
    image: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    owner: str = ""
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    docker_id: str = field(default_factory=lambda: secrets.token_hex(32))
    image_hash: str = field(default_factory=lambda: secrets.token_hex(32))
    ip: str = ""
    log: DockerLogFile | None = None

    @property
    def file_name(self) -> str:
        return f"{self.name}_{self.namespace}_{self.container}-{self.docker_id}.log"

    @property
    def excluded(self) -> bool:
        return self.annotations.get("fluentbit.io/exclude") == "true"

    def pod_json(self, node: str) -> dict[str, Any]:
        image_name = self.image.split(":", 1)[0]
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "uid": self.uid, "creationTimestamp": "2026-11-28T09:00:00Z"}
        if self.labels:
            meta["labels"] = self.labels
        if self.annotations:
            meta["annotations"] = self.annotations
        if self.owner:
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                        "name": self.owner, "uid": str(uuid.uuid4()),
                                        "controller": True, "blockOwnerDeletion": True}]
        return {
            "apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": self.container,
                                                        "image": self.image}]},
            "status": {"phase": "Running", "hostIP": "10.1.128.166", "podIP": self.ip,
                       "containerStatuses": [{
                           "name": self.container, "ready": True, "restartCount": 0,
                           "image": self.image,
                           "imageID": f"docker-pullable://{image_name}@sha256:{self.image_hash}",
                           "containerID": f"docker://{self.docker_id}"}]},
        }

    def open_log(self, root: Path) -> DockerLogFile:
        """Create the file under var/log/pods and its var/log/containers link."""
        pod_dir = root / "var/log/pods" / f"{self.namespace}_{self.name}_{self.uid}"
        target = pod_dir / self.container / "0.log"
        self.log = DockerLogFile(target)
        link = root / "var/log/containers" / self.file_name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        return self.log


def _suffix(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


def make_pods(rng: random.Random) -> list[DemoPod]:
    """nginx x3 (parser annotation), three JSON services, a Java service, an excluded pod."""
    pods: list[DemoPod] = []
    ip = iter(f"10.1.{130 + i // 200}.{10 + i % 200}" for i in range(1000))
    rs = "5468c5d4d7"
    for _ in range(3):
        pods.append(DemoPod("nginx", "default", f"nginx-{rs}-{_suffix(rng, 5)}", "nginx",
                            "nginx:1.17-alpine", {"app": "nginx", "pod-template-hash": rs},
                            {"fluentbit.io/parser": "nginx",
                             "kubernetes.io/psp": "eks.privileged"},
                            owner=f"nginx-{rs}", ip=next(ip)))
    for app, ns in (("user-service", "shop"), ("orders", "shop"), ("inventory", "warehouse")):
        tmpl = _suffix(rng, 10)
        pods.append(DemoPod("json", ns, f"{app}-{tmpl}-{_suffix(rng, 5)}", app,
                            f"example.com/{app}:2.4.1",
                            {"app": app, "pod-template-hash": tmpl}, owner=f"{app}-{tmpl}",
                            ip=next(ip)))
    tmpl = _suffix(rng, 10)
    pods.append(DemoPod("java", "payments", f"billing-{tmpl}-{_suffix(rng, 5)}", "billing",
                        "example.com/billing:7.0.3", {"app": "billing",
                                                      "pod-template-hash": tmpl},
                        owner=f"billing-{tmpl}", ip=next(ip)))
    tmpl = _suffix(rng, 10)
    pods.append(DemoPod("chatter", "default", f"debug-shell-{tmpl}-{_suffix(rng, 5)}", "shell",
                        "busybox:1.36", {"app": "debug-shell", "pod-template-hash": tmpl},
                        {"fluentbit.io/exclude": "true"}, owner=f"debug-shell-{tmpl}",
                        ip=next(ip)))
    return pods


# --- what the applications log --------------------------------------------------------------

_EVENTS: list[tuple[str, str, dict[str, Any]]] = [
    ("info", "A new user signed up!", {"source": "mobile"}),
    ("info", "A new user signed up!", {"source": "web"}),
    ("info", "order placed", {"items": 3, "currency": "EUR"}),
    ("warn", "payment retried", {"attempt": 2, "provider": "acme-pay"}),
    ("info", "cart updated", {"items": 5}),
    ("error", "inventory lookup failed", {"sku": "SKU-4711", "status": 503}),
    ("debug", "cache hit", {"key": "session:9f2c", "ttl_s": 300}),
]


def json_lines(service: str, n: int, rng: random.Random) -> Iterator[str]:
    for i in range(n):
        level, message, extra = _EVENTS[rng.randrange(len(_EVENTS))]
        event = {"message": message, "service": service, "level": level,
                 "metadata": dict(extra), "request_id": f"{rng.getrandbits(64):016x}",
                 "duration_ms": round(rng.uniform(0.2, 250.0), 3), "seq": i}
        yield orjson.dumps(event).decode()


_JAVA_TRACE = (
    "java.lang.IllegalStateException: invoice {n} has no line items",
    "\tat com.example.billing.Invoice.total(Invoice.java:88)",
    "\tat com.example.billing.InvoiceService.close(InvoiceService.java:142)",
    "\tat com.example.billing.web.InvoiceController.close(InvoiceController.java:57)",
    "\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke("
    "DirectMethodHandleAccessor.java:103)",
    "\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
    "Caused by: java.lang.NullPointerException: Cannot invoke \"java.util.List.size()\" because "
    "\"this.lines\" is null",
    "\tat com.example.billing.Invoice.lineCount(Invoice.java:61)",
    "\t... 42 common frames omitted",
)


def java_lines(n: int, rng: random.Random) -> Iterator[str]:
    """Spring-style text with a stack trace now and then (each line its own record: the seed
    has no multiline parser) and one line over 16 KiB, which dockerd splits and Docker_Mode
    joins again."""
    i = 0
    long_done = False
    while i < n:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        if i >= n // 2 and not long_done:
            long_done = True
            body = "x" * 20_000
            yield (f"{stamp}.000  WARN 1 --- [nio-8080-exec-1] c.e.billing.web.Audit : "
                   f"oversized request body ({len(body)} bytes): {body}")
            i += 1
        elif rng.random() < 0.05 and n - i > len(_JAVA_TRACE) + 1:
            yield (f"{stamp}.000 ERROR 1 --- [nio-8080-exec-3] o.a.c.c.C.[dispatcherServlet] : "
                   f"Servlet.service() threw exception")
            for line in _JAVA_TRACE:
                yield line.replace("{n}", str(4000 + i))
            i += 1 + len(_JAVA_TRACE)
        else:
            thread = f"nio-8080-exec-{rng.randrange(1, 9)}"
            yield (f"{stamp}.{rng.randrange(1000):03d}  INFO 1 --- [{thread}]"
                   f" c.e.billing.web.InvoiceController : invoice {4000 + i} created")
            i += 1


def chatter_lines(n: int, rng: random.Random) -> Iterator[str]:
    for i in range(n):
        yield f"debug: poll {i}: {rng.getrandbits(32):08x} nothing to do"


def write_lines(pod: DemoPod, lines: list[str]) -> None:
    """Append an application's lines now (a Java trace goes to stderr, like a JVM's)."""
    assert pod.log is not None
    now = time.time_ns()
    pod.log.write_many([(line, "stderr" if pod.kind == "java" and line.startswith(
        ("\t", "java.", "Caused")) else "stdout", now + i * 1000) for i, line in enumerate(lines)])


# --- nginx and the load generator -------------------------------------------------------------

class NginxFleet:
    """One HTTP server per nginx pod, each logging requests in nginx's ``main`` format to
    its pod's Docker log file; a round-robin "Service" in front; and a load generator."""

    def __init__(self, pods: list[DemoPod]) -> None:
        self.pods = pods
        self.urls: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="demo-nginx",
                                       daemon=True)
        self.runners: list[web.AppRunner] = []
        self.sent = 0
        self.failed = 0

    def _app(self, pod: DemoPod) -> web.Application:
        log = pod.log
        assert log is not None

        async def handle(request: web.Request) -> web.Response:
            status, body = (200, NGINX_PAGE) if request.path in ("/", "/index.html") \
                else (404, b"<html><body><h1>404 Not Found</h1></body></html>\n")
            peer = request.remote or "-"
            line = (f'{peer} - - [{nginx_time(time.time())}] "{request.method} '
                    f'{request.path_qs} HTTP/{request.version.major}.{request.version.minor}" '
                    f'{status} {len(body)} "{request.headers.get("Referer", "-")}" '
                    f'"{request.headers.get("User-Agent", "-")}" '
                    f'"{request.headers.get("X-Forwarded-For", "-")}"')
            log.write(line)
            return web.Response(status=status, body=body, content_type="text/html")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    async def _start(self) -> None:
        for pod in self.pods:
            runner = web.AppRunner(self._app(pod), access_log=None)
            await runner.setup()
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            site = web.SockSite(runner, sock)
            await site.start()
            self.urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
            self.runners.append(runner)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _hey(self, n: int, concurrency: int) -> None:
        """``hey -n N -c C``: N requests, C at a time, spread over the pods like a Service."""
        counter = iter(range(n))
        headers = {"User-Agent": "hey/0.0.1", "X-Forwarded-For": "52.95.4.2"}
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            async def worker() -> None:
                for i in counter:
                    url = self.urls[i % len(self.urls)] + ("/favicon.ico" if i % 25 == 24
                                                          else "/")
                    try:
                        async with session.get(url, headers=headers) as resp:
                            await resp.read()
                        self.sent += 1
                    except (TimeoutError, OSError):
                        self.failed += 1
            await asyncio.gather(*(worker() for _ in range(concurrency)))

    def hey(self, n: int, concurrency: int = 1) -> threading.Thread:
        """Start the load in the background; the thread ends when every request is answered."""
        fut = asyncio.run_coroutine_threadsafe(self._hey(n, concurrency), self.loop)
        waiter = threading.Thread(target=fut.result, name="demo-hey", daemon=True)
        waiter.start()
        return waiter

    def stop(self) -> None:
        if not self.thread.is_alive():
            return

        async def down() -> None:
            for runner in self.runners:
                await runner.cleanup()
        try:
            asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
