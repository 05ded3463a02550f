"""The fault matrix: one function per row. Each gets a fresh :class:`Node`, breaks something,
and leaves the node with every line written and an agent running (or restarted) that should
deliver them; the runner then counts lost and duplicated lines.

``scale`` stretches the durations (outage length, write volume): 1 in the test suite, larger in
``python -m tests.faults.run`` for the table in docs/reliability.md.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from rillet.engine.storage.format import read_header, salvage
from tests.faults.harness import Node
from tests.peers.fault_proxy import Rule


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Node, float], None]
    fluent_bit: str  # what Fluent Bit does (reference §2 / §1h)
    service: dict[str, str] = field(default_factory=dict)
    input_opts: dict[str, str] = field(default_factory=dict)
    output_opts: dict[str, str] = field(default_factory=dict)
    needs: str = ""  # a feature the scenario needs: skipped with a reason when absent


def _wait_some_delivered(node: Node, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(node.delivered().values()) >= at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} records delivered in {timeout}s:\n"
                         + node.log_text()[-3000:])


def kill9_ingest(node: Node, scale: float) -> None:
    """kill -9 twice while lines are being written and read, each time once the agent has
    delivered something (so each agent had the time to commit offsets: what is duplicated is
    what it had read but not yet committed)."""
    node.start()
    node.start_writers(int(6000 * scale), 3000)
    for _ in range(2):
        _wait_some_delivered(node, sum(node.delivered().values()) + 500)
        time.sleep(0.3)
        node.kill9()
        node.restart()
    node.join_writers()


def kill9_delivery(node: Node, scale: float) -> None:
    """kill -9 while PutLogEvents calls are on the wire: the proxy holds each call for 1.5 s
    (then forwards it: the call does happen) and the agent is killed meanwhile."""
    node.write_now(int(3000 * scale))
    hold = node.proxy.add(Rule("forward", "PutLogEvents", limit=3,
                               before=lambda _body: time.sleep(1.5)))
    node.start()
    deadline = time.monotonic() + 20
    while hold.applied == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    node.kill9()
    time.sleep(1.5)  # let the held calls land in CloudWatch
    node.restart()


def output_down(node: Node, scale: float) -> None:
    """CloudWatch answers 503 to every call for a while (scale x 8 s), then recovers."""
    down = 8 * scale
    node.proxy.add(Rule("error", None, status=503, until=time.monotonic() + down))
    node.start()
    node.start_writers(int(2000 * scale), 500)
    time.sleep(down)
    node.join_writers()
    node.notes.append(f"down {down:.0f}s")


def throttled(node: Node, scale: float) -> None:
    """Half of the PutLogEvents calls get ThrottlingException."""
    node.proxy.add(Rule("throttle", "PutLogEvents", ratio=0.5))
    node.start()
    node.start_writers(int(4000 * scale), 2000)
    node.join_writers()


def stream_deleted(node: Node, scale: float) -> None:
    """Every log stream is deleted by someone else between two calls, twice."""
    logs = node.moto.client("logs")

    def delete_streams(_body: bytes) -> None:
        try:
            streams = logs.describe_log_streams(logGroupName=node.group)["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            return
        names = [s["logStreamName"] for s in streams]
        node.archived += node.read_group(names)
        for s in streams:
            logs.delete_log_stream(logGroupName=node.group, logStreamName=s["logStreamName"])

    node.start()
    node.start_writers(int(3000 * scale), 1500)
    _wait_some_delivered(node, 100)
    node.proxy.add(Rule("forward", "PutLogEvents", limit=1, before=delete_streams))
    time.sleep(1.0)
    node.proxy.add(Rule("forward", "PutLogEvents", limit=1, before=delete_streams))
    node.join_writers()


def sigterm_backlog(node: Node, scale: float) -> None:
    """SIGTERM while CloudWatch is down and a backlog is buffered; the agent exits after Grace;
    the next agent (CloudWatch back) delivers it."""
    rule = node.proxy.add(Rule("error", None, status=503))
    node.write_now(int(3000 * scale))
    node.start()
    time.sleep(2.0)
    code = node.sigterm(timeout=30)
    node.notes.append(f"exit code {code} after SIGTERM")
    node.proxy.rules.remove(rule)
    node.restart()


def api_down_at_start(node: Node, scale: float) -> None:
    """The kubernetes filter's API server is down when the agent starts and comes up 3 s
    later: records flow unenriched meanwhile (never held or dropped), then enriched."""
    from tests.peers.kube_api import kube_api_peer, pod

    peer_cm = kube_api_peer(node.root / "kube-api")
    peer = peer_cm.__enter__()

    def close_peer() -> None:
        peer_cm.__exit__(None, None, None)
    node.cleanups.append(close_peer)
    for f in (*range(node.files), *range(100, 100 + node.files)):
        peer.server.add_pod(pod("default", f"app-{f}"))
    peer.server.stop()
    node.filters.append({"name": "kubernetes", "match": "kube.*", "merge_log": "on",
                         "kube_tag_prefix": node.tag_prefix, **peer.settings()})
    node.start()
    node.start_writers(int(3000 * scale), 600)
    time.sleep(3)
    peer.server.start()
    node.join_writers()


FS_SERVICE = {"storage.path": "{root}/storage", "storage.checksum": "on",
              "storage.metrics": "on"}
FS_INPUT = {"storage.type": "filesystem"}


def _chunk_files(node: Node) -> list[Path]:
    return sorted((node.root / "storage").glob("*/*.flb"))


def disk_full(node: Node, scale: float) -> None:
    """storage.path on a 384 KiB tmpfs that fills while CloudWatch is down for 5 s."""
    store = node.root / "storage"
    store.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(store)],
                             capture_output=True).returncode == 0
    if mounted:
        node.cleanups.append(lambda: _umount(store))
        node.notes.append("384 KiB tmpfs")
    else:  # no mount here: a size-limited budget instead of a small disk
        node.output_opts["storage.total_limit_size"] = "384k"
        node.notes.append("no mount permitted: storage.total_limit_size 384k instead")
    node.proxy.add(Rule("error", None, status=503, until=time.monotonic() + 5))
    node.start()
    node.start_writers(int(3000 * scale), 1000)
    node.join_writers()
    if "cannot write chunks" in node.log_text() or "budget" in node.log_text():
        node.notes.append("storage full reported, input paused")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def corrupt_chunk(node: Node, scale: float) -> None:
    """Chunks pile up on disk while CloudWatch is down; the agent is killed; one chunk file gets
    a flipped byte; the next agent (CloudWatch back) must quarantine it and deliver the rest."""
    rule = node.proxy.add(Rule("error", None, status=503))
    node.write_now(int(3000 * scale))
    node.start()
    deadline = time.monotonic() + 20
    while len(_chunk_files(node)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    node.kill9()
    files = _chunk_files(node)
    assert files, "no chunk files were written:\n" + node.log_text()[-2000:]
    victim = files[len(files) // 2]
    data = bytearray(victim.read_bytes())
    _meta, count = read_header(bytes(data), len(data))
    _, _, bodies, _ = salvage(bytes(data))  # intact still: every record
    data[len(data) - 10] ^= 0x20  # inside the last record's text
    victim.write_bytes(bytes(data))
    # That record's bytes are gone; every other record of the chunk has its own CRC and must
    # still arrive.
    node.accepted_loss.add(orjson.loads(bodies[-1])["log"].split(" ", 1)[0])
    node.notes.append(f"one byte flipped in {victim.name} ({count} records)")
    node.proxy.rules.remove(rule)
    node.restart()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("kill9_ingest", "kill -9 during ingestion (memory storage)", kill9_ingest,
             "memory buffering: offsets already advanced at ingestion, records in memory are "
             "lost (§1h crash guarantees, #5912)"),
    Scenario("kill9_delivery", "kill -9 during delivery (memory storage)", kill9_delivery,
             "records in flight are lost with memory buffering; re-sent whole chunks with "
             "filesystem buffering (§1h)"),
    Scenario("output_down", "CloudWatch down (503 on every call), then back", output_down,
             "Retry_Limit 1 by default: chunks dropped after the 2nd failure; with no_limits "
             "retried, backoff up to 2000 s (§1h)"),
    Scenario("throttled", "CloudWatch throttling 50% of PutLogEvents", throttled,
             "whole chunks retried; other chunks keep flowing into the throttle (§2 #5, #6)"),
    Scenario("stream_deleted", "a log stream deleted mid-run (twice)", stream_deleted,
             "C plugin caches streams; since PR #11983 the chunk is rejected without retry: "
             "lost (§2 #18)"),
    Scenario("api_down_at_start", "Kubernetes API server down at start, up 3 s later",
             api_down_at_start,
             "per-miss GETs fail and are not cached: records pass without metadata and the "
             "API is hammered (§2 #8)"),
    Scenario("kill9_ingest_fs", "kill -9 during ingestion (filesystem storage)", kill9_ingest,
             "chunks on disk survive; tail DB offset may trail: re-read duplicates (§1h)",
             service=FS_SERVICE, input_opts=FS_INPUT),
    Scenario("kill9_delivery_fs", "kill -9 during delivery (filesystem storage)",
             kill9_delivery,
             "chunks re-sent whole after restart: duplicates (§1h)",
             service=FS_SERVICE, input_opts=FS_INPUT),
    Scenario("disk_full", "disk full for storage.path while CloudWatch is down", disk_full,
             "no backpressure from a failing disk is documented (§1h); filesystem buffering "
             "writes every record (§2 #20)",
             service=FS_SERVICE, input_opts=FS_INPUT),
    Scenario("corrupt_chunk", "a corrupt chunk file at start (one byte flipped)",
             corrupt_chunk,
             "chunkio refuses the whole file (its records lost, or the agent crashes on it); "
             "with storage.delete_irrecoverable_chunks it is deleted",
             service=FS_SERVICE, input_opts=FS_INPUT),
    Scenario("sigterm_backlog", "SIGTERM with a backlog while CloudWatch is down",
             sigterm_backlog,
             "Grace 5 s, retries in backoff not attempted, buffered data lost (§2 #13)"),
)


def by_name(name: str) -> Scenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(name)
