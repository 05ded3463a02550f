"""The real pipeline (tail -> kubernetes -> file) with the filter talking HTTPS to the API
stand-in: metadata follows the API at run time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from rillet.engine.engine import Engine
from rillet.engine.pipeline import build
from rillet.filters.kubernetes.source import Entry
from tests.engine.harness import make_model, running, wait_for
from tests.peers.kube_api import KubeApiPeer, pod

CONTAINER_ID = "0123456789abcdef" * 4
NS, POD = "shop", "web-7d9f-abcde"


class Node:
    """A node's log folder with one container log, and the agent's output folder."""

    def __init__(self, root: Path) -> None:
        self.logs = root / "var" / "log" / "containers"
        self.logs.mkdir(parents=True)
        self.out = root / "out"
        self.out.mkdir()
        self.file = self.logs / f"{POD}_{NS}_app-{CONTAINER_ID}.log"
        self.file.touch()
        self.prefix = "kube." + str(self.logs).strip("/").replace("/", ".") + "."
        self.n = 0

    def write(self, count: int = 1) -> None:
        with self.file.open("ab") as fh:
            for _ in range(count):
                self.n += 1
                line = orjson.dumps({"log": f"line {self.n}\n", "stream": "stdout",
                                     "time": "2026-01-01T00:00:00.123456789Z"})
                fh.write(line + b"\n")

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path in sorted(self.out.iterdir()):
            out.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line)
        return sorted(out, key=lambda r: int(r["log"].split()[1]))


@contextlib.asynccontextmanager
async def agent(node: Node, peer: KubeApiPeer, **filter_opts: str) -> AsyncIterator[Engine]:
    model = make_model(
        inputs=[{"name": "tail", "tag": "kube.*", "path": str(node.logs / "*.log"),
                 "parser": "docker", "read_from_head": "on", "refresh_interval": "0.1"}],
        filters=[{"name": "kubernetes", "match": "kube.*", "kube_tag_prefix": node.prefix,
                  **peer.settings(**filter_opts)}],
        outputs=[{"name": "file", "match": "*", "path": str(node.out), "format": "plain"}])
    async with running(build(model)) as engine:
        yield engine


def lookup(engine: Engine) -> Entry | None:
    source = getattr(engine.pipeline.filters[0].plugin, "source", None)
    return source.lookup("pod", NS, POD) if source is not None else None


def test_annotation_change_applies_without_restart(kube_api: KubeApiPeer,
                                                  tmp_path: Path) -> None:
    srv = kube_api.server
    srv.add_pod(pod(NS, POD, annotations={"release": "blue"}))
    node = Node(tmp_path)

    async def main() -> None:
        async with agent(node, kube_api) as engine:
            node.write(3)
            await wait_for(lambda: len(node.records()) == 3, 10)
            srv.update_pod(NS, POD, annotations={"release": "green"})

            def changed() -> bool:
                entry = lookup(engine)
                return bool(entry and entry.obj and
                            entry.obj["metadata"]["annotations"]["release"] == "green")
            await wait_for(changed, 5)
            node.write(2)
            await wait_for(lambda: len(node.records()) == 5, 10)

    asyncio.run(main())
    releases = [r["kubernetes"]["annotations"]["release"] for r in node.records()]
    assert releases == ["blue"] * 3 + ["green"] * 2
    first = node.records()[0]["kubernetes"]
    assert first["pod_name"] == POD and first["namespace_name"] == NS
    assert first["docker_id"] == CONTAINER_ID and first["host"] == srv.node
    # the watch carried the change: no GET for the pod, one list
    assert srv.count(f"/api/v1/namespaces/{NS}/pods/{POD}") == 0
    assert srv.count("/api/v1/pods", watch=False) == 1


def test_api_down_at_start_records_flow_then_enriched(kube_api: KubeApiPeer,
                                                      tmp_path: Path) -> None:
    srv = kube_api.server
    srv.add_pod(pod(NS, POD))
    srv.stop()
    node = Node(tmp_path)

    async def main() -> None:
        async with agent(node, kube_api, kube_start_wait="0.5", kube_meta_wait="0.2",
                         kube_retry_max="0.3") as engine:
            node.write(4)
            await wait_for(lambda: len(node.records()) == 4, 10)
            counters = engine.pipeline.filters[0].counters
            assert counters["kube_unenriched_records"] >= 4
            srv.start()
            await wait_for(lambda: bool((e := lookup(engine)) and e.obj), 10)
            node.write(3)
            await wait_for(lambda: len(node.records()) == 7, 10)

    asyncio.run(main())
    records = node.records()
    assert all("kubernetes" not in r for r in records[:4])
    assert all(r["kubernetes"]["pod_name"] == POD for r in records[4:])
    assert srv.count() <= 6  # the list, the watch, at most a probe or two: no storm
