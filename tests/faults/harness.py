"""Fault matrix harness: the real agent (a subprocess running ``python -m rillet``) tails
Docker json-file logs and ships them to CloudWatch Logs (moto's server on loopback) through the
fault-injecting proxy; a scenario breaks something on the way, then every line written is looked
up in CloudWatch and counted: lost (never arrived) and duplicated (arrived more than once).

Each log line carries a unique sequence text ``f<file>-<n>`` so that counting does not depend on
order, streams or batching. A :class:`Node` is one scenario run's world (log folder, agent
config, the agent process, a unique log group); scenarios live in ``scenarios.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.peers.fault_proxy import FaultProxy
from tests.peers.moto_server import TEST_ENV, MotoServer

_LINE = ('{{"log":"{seq} {pad}\\n","stream":"stdout",'
         '"time":"2026-11-28T08:00:{sec:02d}.{frac:09d}Z"}}\n')
_PAD = "x" * 60


def docker_line(seq: str, n: int) -> bytes:
    return _LINE.format(seq=seq, pad=_PAD, sec=n % 60, frac=n % 1_000_000_000).encode()


@dataclass
class Outcome:
    scenario: str
    run: int
    written: int
    delivered: int
    lost: int
    duplicated: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    enriched: int = 0  # events carrying a kubernetes block

    def row(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "run": self.run, "written": self.written,
                "delivered": self.delivered, "lost": self.lost,
                "duplicated": self.duplicated, "seconds": round(self.seconds, 1),
                "notes": "; ".join(self.notes)}


class Writer(threading.Thread):
    """Appends ``lines`` lines to one file at ``rate`` lines/s (in small bursts)."""

    def __init__(self, path: Path, file_no: int, lines: int, rate: float) -> None:
        super().__init__(name=f"writer-{file_no}", daemon=True)
        self.path, self.file_no, self.lines, self.rate = path, file_no, lines, rate
        self.written = 0

    def run(self) -> None:
        burst = max(1, int(self.rate / 50))
        start = time.monotonic()
        with self.path.open("ab", buffering=0) as fh:
            while self.written < self.lines:
                n = min(burst, self.lines - self.written)
                fh.write(b"".join(docker_line(f"f{self.file_no}-{self.written + i}",
                                              self.written + i) for i in range(n)))
                self.written += n
                due = start + self.written / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)


class Node:
    """One scenario run: a log folder, an agent configuration and process, a log group."""

    def __init__(self, root: Path, moto: MotoServer, proxy: FaultProxy, *,
                 files: int = 3, service: dict[str, str] | None = None,
                 input_opts: dict[str, str] | None = None,
                 output_opts: dict[str, str] | None = None,
                 filters: list[dict[str, str]] | None = None) -> None:
        self.root = root
        self.moto = moto
        self.proxy = proxy
        self.files = files
        self.logs = root / "containers"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.group = f"/rillet/faults/{uuid.uuid4().hex[:10]}"
        self.service = {"flush": "0.2", "grace": "3", "log_level": "info",
                        "scheduler.base": "0.2", "scheduler.cap": "2", **(service or {})}
        self.input_opts = {"db": str(root / "tail.db"), "refresh_interval": "1",
                           "read_from_head": "on", "parser": "docker",
                           "docker_mode": "on", **(input_opts or {})}
        self.output_opts = {"region": "us-east-1", "endpoint": proxy.url,
                            "log_group_name": self.group, "log_stream_prefix": "node-",
                            "auto_create_group": "on", "retry_limit": "no_limits",
                            **(output_opts or {})}
        self.filters = list(filters or [])
        self.cleanups: list[Callable[[], None]] = []  # run by stop(), last first
        self.enriched = 0  # events with a kubernetes block, at the last read_group()
        # Lines a scenario destroyed on purpose (a corrupted chunk): reported, not counted lost.
        self.accepted_loss: set[str] = set()
        self.conf = root / "agent.conf"
        self.agent_log = root / "agent.log"
        self.agent: subprocess.Popen[bytes] | None = None
        self.written = 0
        self.writers: list[Writer] = []
        self.notes: list[str] = []
        self.restarts = 0
        self._counts: dict[int, int] = {}  # lines written at once per file
        # Events a scenario removed from CloudWatch on purpose (deleted streams), kept here.
        self.archived: Counter[str] = Counter()

    # -- inputs -------------------------------------------------------------------------------
    def path(self, file_no: int) -> Path:
        return self.logs / f"app-{file_no}_default_app-{file_no:064x}.log"

    def write_now(self, lines_per_file: int) -> None:
        """Write every file's lines at once (before or while the agent runs)."""
        for f in range(self.files):
            base = self._count(f)
            with self.path(f).open("ab") as fh:
                fh.write(b"".join(docker_line(f"f{f}-{base + i}", base + i)
                                  for i in range(lines_per_file)))
            self._counts[f] = base + lines_per_file
            self.written += lines_per_file

    def _count(self, f: int) -> int:
        return self._counts.get(f, 0)

    def start_writers(self, lines_per_file: int, rate_per_file: float) -> None:
        """Append lines while the agent runs (each file in its own thread)."""
        for f in range(self.files):
            w = Writer(self.path(f), f + 100, lines_per_file, rate_per_file)
            self.writers.append(w)
            w.start()
        self.written += lines_per_file * self.files

    def join_writers(self, timeout: float = 60) -> None:
        for w in self.writers:
            w.join(timeout)

    # -- the agent ----------------------------------------------------------------------------
    def write_config(self) -> None:
        root = str(self.root)

        def section(name: str, opts: dict[str, str]) -> str:
            return f"[{name}]\n" + "".join(f"    {k} {v.replace('{root}', root)}\n"
                                            for k, v in opts.items())
        self.conf.write_text(
            section("SERVICE", self.service)
            + section("INPUT", {"name": "tail", "tag": "kube.*",
                                "path": str(self.logs / "*.log"), **self.input_opts})
            + "".join(section("FILTER", f) for f in self.filters)
            + section("OUTPUT", {"name": "cloudwatch_logs", "match": "*",
                                 **self.output_opts}))

    def start(self) -> None:
        self.write_config()
        env = {**os.environ, **TEST_ENV,
               "AWS_CONFIG_FILE": str(self.root / "aws-config"),
               "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "aws-credentials")}
        for key in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_ENDPOINT_URL"):
            env.pop(key, None)
        with self.agent_log.open("ab") as log:
            self.agent = subprocess.Popen([sys.executable, "-m", "rillet", "-c", str(self.conf)],
                                          stdout=subprocess.DEVNULL, stderr=log, env=env)

    def restart(self) -> None:
        self.restarts += 1
        self.start()

    def kill9(self) -> None:
        assert self.agent is not None
        self.agent.send_signal(signal.SIGKILL)
        self.agent.wait(10)

    def sigterm(self, timeout: float = 30) -> int:
        assert self.agent is not None
        self.agent.send_signal(signal.SIGTERM)
        return self.agent.wait(timeout)

    def stop(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(15)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait(5)
        while self.cleanups:
            self.cleanups.pop()()

    @property
    def tag_prefix(self) -> str:
        """What tail's ``kube.*`` tag puts before a file's name (Kube_Tag_Prefix)."""
        return "kube." + str(self.logs).strip("/").replace("/", ".") + "."

    def log_text(self) -> str:
        return self.agent_log.read_text(errors="replace") if self.agent_log.exists() else ""

    # -- results ------------------------------------------------------------------------------
    def delivered(self) -> Counter[str]:
        """How many times each sequence text arrived in the log group (archived included)."""
        return self.archived + self.read_group()

    def read_group(self, streams: list[str] | None = None) -> Counter[str]:
        """Sequence texts now in the log group (or in some of its streams)."""
        logs = self.moto.client("logs")
        seen: Counter[str] = Counter()
        enriched = 0
        if streams is None:
            try:
                streams = [s["logStreamName"] for page in
                           logs.get_paginator("describe_log_streams").paginate(
                               logGroupName=self.group) for s in page["logStreams"]]
            except logs.exceptions.ResourceNotFoundException:
                return seen
        for stream in streams:
            token = None
            while True:
                kw: dict[str, Any] = {"logGroupName": self.group, "logStreamName": stream,
                                      "startFromHead": True}
                if token:
                    kw["nextToken"] = token
                page = logs.get_log_events(**kw)
                for event in page["events"]:
                    try:
                        record = orjson.loads(event["message"])
                        seen[record["log"].split(" ", 1)[0]] += 1
                        enriched += "kubernetes" in record
                    except (ValueError, KeyError, AttributeError):
                        seen["<unreadable>"] += 1
                nxt = page.get("nextForwardToken")
                if not page["events"] or nxt == token:
                    break
                token = nxt
        self.enriched = enriched
        return seen

    def wanted(self) -> set[str]:
        """Lines that must arrive: written, minus those a scenario destroyed on purpose."""
        return self.expected() - self.accepted_loss

    def expected(self) -> set[str]:
        out = {f"f{f}-{n}" for f in range(self.files) for n in range(self._count(f))}
        for w in self.writers:
            out |= {f"f{w.file_no}-{n}" for n in range(w.lines)}
        return out

    def wait_delivered(self, timeout: float) -> Counter[str]:
        want = self.wanted()
        deadline = time.monotonic() + timeout
        seen: Counter[str] = Counter()
        while time.monotonic() < deadline:
            seen = self.delivered()
            if want <= seen.keys():
                # Late duplicates from retried calls land within a flush or two.
                time.sleep(0.5)
                return self.delivered()
            time.sleep(0.5)
        return seen

    def outcome(self, scenario: str, run: int, started: float, timeout: float = 60) -> Outcome:
        seen = self.wait_delivered(timeout)
        want = self.expected()
        missing = want - seen.keys()
        lost = len(missing - self.accepted_loss)
        destroyed = len(missing & self.accepted_loss)
        dup = sum(n - 1 for key, n in seen.items() if key in want and n > 1)
        extra = sum(n for key, n in seen.items() if key not in want)
        notes = list(self.notes)
        if self.accepted_loss:
            notes.append(f"{destroyed} damaged record(s) not delivered, the rest salvaged")
        if any(f.get("name") == "kubernetes" for f in self.filters):
            notes.append(f"{self.enriched} of {sum(seen.values())} events enriched")
        if extra:
            notes.append(f"{extra} unexpected events")
        return Outcome(scenario, run, len(want), sum(seen.values()), lost, dup,
                       time.monotonic() - started, notes, self.enriched)
