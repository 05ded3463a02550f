"""``rillet demo``: the seed pipeline end to end on one machine.

It lays out a node (see :mod:`rillet.demo.workload`), starts the Kubernetes API stand-in
(HTTPS, a bearer token, a test CA) serving the node's pods, moto's server for CloudWatch Logs,
and a real rillet process running ``seed.conf`` (the seed's configuration, only its paths and
endpoints from the environment). nginx pods answer a ``hey``-style load while rillet runs. When
every line is delivered or excluded it reads the records back from CloudWatch Logs, prints one
nginx event, one JSON-app event and a summary, and stops everything it started (also on
Ctrl-C). ``--keep`` leaves the servers up and says how to query them.
"""

from __future__ import annotations

import importlib.util
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import orjson

from rillet.demo import workload
from rillet.demo.workload import DemoPod, NginxFleet
from rillet.devtools.moto_server import MotoServer

SEED_CONF = Path(__file__).with_name("seed.conf")
PARSERS = Path(__file__).parent.parent / "parsers" / "builtin" / "parsers.conf"
GROUP = "fluentbit-cloudwatch"
REGION = "us-east-2"


@dataclass
class Options:
    requests: int = 300          # nginx requests (hey -n)
    concurrency: int = 1         # hey -c
    lines: int = 4000            # lines per JSON application pod
    java_lines: int = 1500
    chatter_lines: int = 2000    # the excluded pod
    timeout: float = 50.0        # seconds for the records to arrive
    keep: bool = False
    seed: int | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)


class DemoError(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _signals() -> Iterator[None]:
    """SIGTERM stops the demo like Ctrl-C does: through the same clean-up."""
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return orjson.loads(resp.read())


def _sum(section: dict[str, dict[str, int]], key: str) -> int:
    return sum(v.get(key, 0) for v in section.values())


class Demo:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.out = opts.out
        self.rng = random.Random(opts.seed)
        self.stack = ExitStack()
        self.root = Path(tempfile.mkdtemp(prefix="rillet-demo-"))
        self.stack.callback(shutil.rmtree, self.root, True)
        self.pods: list[DemoPod] = []
        self.backlog: list[tuple[DemoPod, list[str]]] = []
        self.rillet: subprocess.Popen[bytes] | None = None
        self.monitor_port = 0
        self.env: dict[str, str] = {}
        self.moto: MotoServer | None = None
        self.moto_url = ""
        self.kubeconfig = self.root / "kubeconfig"
        self.t_start = 0.0
        self.t_done = 0.0
        self.rillet_usage: tuple[float, int] | None = None

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    # --- setting up ------------------------------------------------------------------------

    def start_kube_api(self) -> None:
        from rillet.devtools.kube_api import KubeApiStandIn, make_test_certs, server_ssl_context

        certs = make_test_certs(self.root / "pki")
        token = f"demo-{self.rng.getrandbits(96):024x}"
        token_file = self.root / "pki" / "token"
        token_file.write_text(token + "\n", encoding="utf-8")
        api = KubeApiStandIn(node=workload.NODE, tokens=[token],
                             ssl_context=server_ssl_context(certs.cert, certs.key))
        for pod in self.pods:
            api.add_pod(pod.pod_json(workload.NODE))
        for ns in sorted({p.namespace for p in self.pods}):
            api.add_namespace({"metadata": {"name": ns, "labels": {
                "kubernetes.io/metadata.name": ns}}})
        self.stack.enter_context(api)
        api.write_kubeconfig(self.kubeconfig, token=token, ca_file=certs.ca)
        self.env.update(KUBE_URL=api.url, KUBE_CA_FILE=str(certs.ca),
                        KUBE_TOKEN_FILE=str(token_file), NODE_NAME=workload.NODE)
        self.say(f"  kubernetes API stand-in  {api.url}  ({len(self.pods)} pods, "
                 f"node {workload.NODE})")

    def start_moto(self) -> None:
        from rillet.devtools.moto_server import TEST_ENV

        moto = MotoServer()
        try:
            moto.start()
        except RuntimeError as exc:
            raise DemoError(str(exc)) from exc
        self.stack.callback(moto.stop)
        self.moto = moto
        self.moto_url = moto.url
        self.env.update(TEST_ENV)
        self.env["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"] = moto.url
        self.say(f"  moto (CloudWatch Logs)   {moto.url}")

    def create_logs(self) -> None:
        """Each container's (empty) log file and link; what its app will write."""
        rng = self.rng
        opts = self.opts
        for pod in self.pods:
            log = pod.open_log(self.root)
            self.stack.callback(log.close)
            if pod.kind == "json":
                self.backlog.append((pod, list(workload.json_lines(pod.container, opts.lines,
                                                                   rng))))
            elif pod.kind == "java":
                self.backlog.append((pod, list(workload.java_lines(opts.java_lines, rng))))
            elif pod.kind == "chatter":
                self.backlog.append((pod, list(workload.chatter_lines(opts.chatter_lines, rng))))
        logs = self.root / "var/log/containers"
        self.env.update(RILLET_DEMO_LOGS=str(logs), RILLET_DEMO_DB=str(self.root / "flb_kube.db"),
                        RILLET_DEMO_PARSERS=str(PARSERS),
                        KUBE_TAG_PREFIX="kube." + str(logs).strip("/").replace("/", ".") + ".")

    def start_apps(self) -> threading.Thread:
        """The applications log while rillet runs (tail starts at the end of files it finds
        at startup, as Fluent Bit does without Read_from_Head): 200 lines per pod every 20 ms."""
        def write() -> None:
            step = 200
            longest = max((len(lines) for _, lines in self.backlog), default=0)
            for i in range(0, longest, step):
                for pod, lines in self.backlog:
                    if i < len(lines):
                        workload.write_lines(pod, lines[i:i + step])
                time.sleep(0.02)
        thread = threading.Thread(target=write, name="demo-apps", daemon=True)
        thread.start()
        return thread

    def start_rillet(self) -> None:
        from rillet.devtools.moto_server import free_port

        self.monitor_port = free_port()
        log = open(self.root / "rillet.log", "wb")  # noqa: SIM115 (closed by the stack)
        self.stack.callback(log.close)
        env = {**os.environ, **self.env}
        self.rillet = subprocess.Popen(
            [sys.executable, "-m", "rillet", "-c", str(SEED_CONF), "-H",
             "-P", str(self.monitor_port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.stack.callback(self.stop_rillet)
        self.t_start = time.monotonic()
        deadline = self.t_start + 20
        while time.monotonic() < deadline:
            if self.rillet.poll() is not None:
                raise DemoError(f"rillet exited with {self.rillet.returncode}")
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.monitor_port}/api/v2/ready", timeout=1):
                    self.say(f"  rillet                   pid {self.rillet.pid}, "
                             f"metrics on http://127.0.0.1:{self.monitor_port}/api/v1/metrics")
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise DemoError("rillet did not become ready in 20 s")

    def stop_rillet(self) -> None:
        """Stop rillet gracefully; note the CPU time and peak RSS it used (the resource usage
        of reaped children: rillet is the first child the demo reaps)."""
        proc, self.rillet = self.rillet, None
        if proc is None or proc.poll() is not None:
            return
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        rss = after.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        self.rillet_usage = (cpu, rss)

    def rillet_log_tail(self, n: int = 15) -> str:
        try:
            lines = (self.root / "rillet.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in lines[-n:])

    # --- running -----------------------------------------------------------------------------

    def lines_written(self) -> int:
        return sum(p.log.lines for p in self.pods if p.log is not None)

    def metrics(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = _get_json(
                f"http://127.0.0.1:{self.monitor_port}/api/v1/metrics")
            return data
        except (urllib.error.URLError, OSError, orjson.JSONDecodeError):
            return {}

    def wait_delivered(self, load_done: Callable[[], bool]) -> tuple[int, int]:
        """Progress until every written line is delivered or excluded; (delivered, excluded)."""
        deadline = time.monotonic() + self.opts.timeout
        delivered = excluded = 0
        tty = self.out.isatty()
        next_line = 0.0
        while True:
            m = self.metrics()
            if self.rillet is None or self.rillet.poll() is not None:
                raise DemoError("rillet stopped unexpectedly")
            read = _sum(m.get("input", {}), "records")
            delivered = _sum(m.get("output", {}), "proc_records")
            excluded = _sum(m.get("filter", {}), "drop_records")
            written = self.lines_written()
            elapsed = time.monotonic() - self.t_start
            line = (f"  {elapsed:5.1f} s  lines written {written:,}  read {read:,}  "
                    f"delivered {delivered:,}  excluded {excluded:,}")
            finished = load_done() and delivered + excluded >= written
            if tty:
                self.say("\r" + line + "   ", end="")
            elif finished or elapsed >= next_line:
                self.say(line)
                next_line = elapsed + 2.0
            if finished:
                self.t_done = time.monotonic()
                if tty:
                    self.say()
                return delivered, excluded
            if time.monotonic() > deadline:
                if tty:
                    self.say()
                raise DemoError(f"after {self.opts.timeout:.0f} s, {written - delivered - excluded}"
                                f" of {written} lines are neither delivered nor excluded")
            time.sleep(0.25)

    def read_back(self) -> dict[str, list[dict[str, Any]]]:
        from rillet.devtools.moto_server import read_log_events

        assert self.moto is not None
        logs = self.moto.client("logs", REGION)
        streams: list[str] = []
        kw: dict[str, Any] = {"logGroupName": GROUP}
        while True:
            page = logs.describe_log_streams(**kw)
            streams += [s["logStreamName"] for s in page["logStreams"]]
            if not page.get("nextToken"):
                break
            kw["nextToken"] = page["nextToken"]
        return {s: read_log_events(logs, GROUP, s) for s in sorted(streams)}

    def first_pod(self, kind: str) -> DemoPod:
        return next(p for p in self.pods if p.kind == kind)

    def show_event(self, title: str, events: dict[str, list[dict[str, Any]]],
                   pod: DemoPod) -> None:
        name = next((s for s in events if pod.file_name in s and events[s]), None)
        if name is None:
            raise DemoError(f"no CloudWatch stream holds {pod.name}'s records")
        records = [orjson.loads(e["message"]) for e in events[name]]
        # The seed's example: a plain "GET /" answered 200 (the load also asks for a favicon).
        record = next((r for r in records if isinstance(r.get("data"), dict)
                       and r["data"].get("code") == "200"), records[0])
        self.say(f"\n{title}\n  log group  {GROUP}\n  log stream {name}")
        text = orjson.dumps(record, option=orjson.OPT_INDENT_2).decode()
        self.say("\n".join("  " + line for line in text.splitlines()))

    def summary(self, written: int, events: dict[str, list[dict[str, Any]]],
                excluded: int) -> bool:
        delivered = sum(len(v) for v in events.values())
        kinds: dict[str, int] = {}
        for p in self.pods:
            if p.log is not None:
                kinds[p.kind] = kinds.get(p.kind, 0) + p.log.lines
        seconds = self.t_done - self.t_start
        rate = (delivered + excluded) / seconds if seconds > 0 else 0.0
        rows = [
            ("lines written", f"{written:,}",
             f"nginx {kinds.get('nginx', 0):,} · JSON apps {kinds.get('json', 0):,} · "
             f"Java {kinds.get('java', 0):,} · excluded pod {kinds.get('chatter', 0):,}"),
            ("records delivered", f"{delivered:,}", f"read back from CloudWatch Logs ({GROUP})"),
            ("records excluded", f"{excluded:,}", 'fluentbit.io/exclude: "true"'),
            ("streams", f"{len(events)}", "fluentbit-kube.<path of each container log>"),
            ("seconds", f"{seconds:.1f}", "rillet start to last record delivered"),
            ("records/s", f"{rate:,.0f}", "paced by the apps writing; throughput: make bench"),
        ]
        if self.rillet_usage is not None:
            cpu, rss = self.rillet_usage
            rows.append(("rillet CPU seconds", f"{cpu:.2f}",
                         f"start-up and shutdown included; peak RSS {rss / 2**20:.0f} MB"))
        self.say("\nsummary")
        for label, value, note in rows:
            self.say(f"  {label:<18} {value:>9}   {note}")
        ok = delivered + excluded == written
        if not ok:
            self.say(f"\n  MISMATCH: {written - delivered - excluded:+,} lines unaccounted for")
        return ok

    def print_keep(self) -> None:
        app = self.first_pod("json")
        target = self.root / "var/log/containers" / app.file_name
        line = orjson.dumps({"log": '{"message":"hello from --keep"}\n', "stream": "stdout",
                             "time": workload.docker_time(time.time_ns())}).decode()
        streams = f"aws --endpoint-url {self.moto_url} --region {REGION} logs"
        self.say(f"""
servers left running (--keep); Ctrl-C stops them all.
  export AWS_ACCESS_KEY_ID={self.env['AWS_ACCESS_KEY_ID']}
  export AWS_SECRET_ACCESS_KEY={self.env['AWS_SECRET_ACCESS_KEY']}
  {streams} describe-log-streams --log-group-name {GROUP}
  {streams} get-log-events --log-group-name {GROUP} --log-stream-name <name> --limit 5
  {streams} filter-log-events --log-group-name {GROUP} --filter-pattern '"signed up"'
  kubectl --kubeconfig {self.kubeconfig} get pods -A -o wide
  curl -s http://127.0.0.1:{self.monitor_port}/api/v1/metrics
  # a new line for the user-service pod (rillet tails it; it reaches CloudWatch in ~1 s):
  echo '{line}' >> {target}""")

    def run(self) -> int:
        opts = self.opts
        with _signals(), self.stack:
            try:
                self.say("rillet demo: the seed pipeline (tail -> kubernetes -> cloudwatch) "
                         "on this machine")
                missing = [m for m in ("moto", "trustme") if importlib.util.find_spec(m) is None]
                if missing:
                    raise DemoError(f"the demo needs {' and '.join(missing)} from "
                                    "requirements-dev.txt (`make run` installs them)")
                self.pods = workload.make_pods(self.rng)
                self.create_logs()
                self.start_kube_api()
                self.start_moto()
                nginx = NginxFleet([p for p in self.pods if p.kind == "nginx"])
                nginx.start()
                self.stack.callback(nginx.stop)
                self.start_rillet()
                apps = self.start_apps()
                load = nginx.hey(opts.requests, opts.concurrency)
                self.say(f"  load: hey -n {opts.requests} -c {opts.concurrency} against "
                         f"{len(nginx.urls)} nginx pods")
                _, excluded = self.wait_delivered(
                    lambda: not (load.is_alive() or apps.is_alive()))
                if nginx.failed:
                    raise DemoError(f"{nginx.failed} nginx requests failed")
                events = self.read_back()
                self.show_event("one nginx event (parsed by the pod's annotated parser):",
                                events, self.first_pod("nginx"))
                self.show_event("one JSON-app event (its JSON merged under `data`):", events,
                                self.first_pod("json"))
                if not opts.keep:
                    self.stop_rillet()
                ok = self.summary(self.lines_written(), events, excluded)
                if opts.keep:
                    self.print_keep()
                    while True:
                        time.sleep(3600)
                return 0 if ok else 1
            except KeyboardInterrupt:
                self.say("\ninterrupted: stopping rillet, moto, the API stand-in and nginx")
                return 0
            except DemoError as exc:
                self.say(f"\nrillet demo failed: {exc}")
                tail = self.rillet_log_tail()
                if tail:
                    self.say("  rillet's log (last lines):\n" + tail)
                return 1
