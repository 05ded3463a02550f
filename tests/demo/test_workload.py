"""The demo's node: Docker's json-file format, nginx's log line, the seed template."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from rillet.config.classic import MAIN_KINDS, read_classic
from rillet.demo import workload
from rillet.demo.run import SEED_CONF
from rillet.parsers.registry import ParserRegistry
from tests.shared_data import SHARED

ROOT = Path(__file__).resolve().parents[2]


def test_docker_time_trims_trailing_zeros_like_dockerd() -> None:
    assert workload.docker_time(1576777272_706307780) == "2019-12-19T17:41:12.70630778Z"
    assert workload.docker_time(1576777272_500000000) == "2019-12-19T17:41:12.5Z"
    assert workload.docker_time(1576777272_000000000) == "2019-12-19T17:41:12Z"


def test_long_lines_are_split_at_16k_and_only_the_last_part_ends_the_line(tmp_path: Path) -> None:
    log = workload.DockerLogFile(tmp_path / "0.log")
    log.write("short")
    log.write("é" * 20_000, stream="stderr")   # 40,000 bytes: three parts
    log.close()
    rows = [orjson.loads(line) for line in (tmp_path / "0.log").read_bytes().splitlines()]
    assert [r["log"] for r in rows[:1]] == ["short\n"]
    parts = rows[1:]
    assert len(parts) == 3 and log.lines == 2
    assert all(not p["log"].endswith("\n") for p in parts[:-1]) and parts[-1]["log"][-1] == "\n"
    assert all(len(p["log"].encode()) <= workload.DOCKER_SPLIT for p in parts)
    assert "".join(p["log"] for p in parts) == "é" * 20_000 + "\n"
    assert {p["stream"] for p in parts} == {"stderr"} and len({p["time"] for p in parts}) == 1


def test_java_pod_logs_traces_and_one_line_docker_splits() -> None:
    lines = list(workload.java_lines(300, random.Random(1)))
    assert len(lines) == 300
    assert any(line.startswith("\tat com.example.billing") for line in lines)
    assert sum(len(line) > workload.DOCKER_SPLIT for line in lines) == 1


def test_pods_cover_the_seed_cases() -> None:
    pods = workload.make_pods(random.Random(2))
    kinds = [p.kind for p in pods]
    assert kinds.count("nginx") == 3 and "java" in kinds and kinds.count("json") == 3
    [excluded] = [p for p in pods if p.excluded]
    assert excluded.kind == "chatter"
    nginx = next(p for p in pods if p.kind == "nginx").pod_json(workload.NODE)
    assert nginx["metadata"]["annotations"]["fluentbit.io/parser"] == "nginx"
    assert nginx["spec"]["nodeName"] == workload.NODE
    status = nginx["status"]["containerStatuses"][0]
    assert status["containerID"] == "docker://" + pods[0].docker_id
    assert "annotations" not in next(p for p in pods if p.kind == "json").pod_json("n")["metadata"]


def test_nginx_access_lines_parse_with_the_builtin_nginx_parser(tmp_path: Path) -> None:
    import urllib.request

    pod = workload.make_pods(random.Random(3))[0]
    pod.open_log(tmp_path)
    fleet = workload.NginxFleet([pod])
    fleet.start()
    try:
        req = urllib.request.Request(fleet.urls[0] + "/?q=1", headers={
            "User-Agent": "hey/0.0.1", "X-Forwarded-For": "52.95.4.2"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200 and len(resp.read()) == 612
    finally:
        fleet.stop()
    link = tmp_path / "var/log/containers" / pod.file_name
    assert link.is_symlink() and f"{pod.namespace}_{pod.name}_{pod.uid}" in str(link.resolve())
    [row] = [orjson.loads(line) for line in link.read_bytes().splitlines()]
    record = _parse_nginx(row["log"].rstrip("\n"))
    assert record["method"] == "GET" and record["path"] == "/?q=1" and record["code"] == "200"
    assert record["size"] == "612" and record["agent"] == "hey/0.0.1"


def _parse_nginx(line: str) -> dict[str, str]:
    parser = ParserRegistry().get("nginx")
    assert parser is not None
    result = parser.parse(line)
    assert result is not None
    return {k: str(v) for k, v in result[0].items()}


SEED_NODE_VALUES = {
    "RILLET_DEMO_PARSERS": "/fluent-bit/parsers/parsers.conf",
    "RILLET_DEMO_LOGS": "/var/log/containers",
    "RILLET_DEMO_DB": "/var/log/flb_kube.db",
    "KUBE_URL": "https://kubernetes.default.svc.cluster.local:443",
    # Fluent Bit's defaults for the keys the seed leaves out.
    "KUBE_CA_FILE": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
    "KUBE_TOKEN_FILE": "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "KUBE_TAG_PREFIX": "kube.var.log.containers.",
}
DEFAULTED = {"kube_ca_file", "kube_token_file", "kube_tag_prefix"}


def _sections(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    model = read_classic(str(path), allowed=MAIN_KINDS)
    return [(s.kind, [(e.key, str(e.value)) for e in s.entries])
            for s in [model.service, *model.pipeline()]]


@pytest.mark.parametrize("seed", [
    ROOT / "deploy/kubernetes/base/fluent-bit.conf",
    SHARED / "reference/seed/fluent-bit.conf",
], ids=["deploy-configmap", "shared-seed"])
def test_the_demo_runs_the_seed_changing_only_paths_and_endpoints(
        seed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not seed.is_file():
        pytest.skip(f"{seed} is not here")
    for key, value in SEED_NODE_VALUES.items():
        monkeypatch.setenv(key, value)
    demo = _sections(SEED_CONF)
    node = _sections(seed)
    # The ConfigMap adds the probes' monitoring keys to [SERVICE]; compare the pipeline exactly.
    node_service = dict(node[0][1])
    assert node_service["parsers_file"] == dict(demo[0][1])["parsers_file"]
    assert [(k, [kv for kv in e if kv[0] not in DEFAULTED]) for k, e in demo[1:]] == node[1:]
    # What the template adds are Fluent Bit's own defaults, on a node.
    added = {k: v for _, e in demo[1:] for k, v in e if k in DEFAULTED}
    assert added == {"kube_ca_file": SEED_NODE_VALUES["KUBE_CA_FILE"],
                     "kube_token_file": SEED_NODE_VALUES["KUBE_TOKEN_FILE"],
                     "kube_tag_prefix": SEED_NODE_VALUES["KUBE_TAG_PREFIX"]}
