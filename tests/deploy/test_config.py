"""The configurations deploy/ ships: the base is the seed's (plus the probes' monitoring keys),
every ConfigMap's configuration passes ``rillet --dry-run``, the Fargate fragments assemble into
a valid configuration, and the probes name real routes of the monitoring API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rillet.config.classic import read_classic
from rillet.config.loader import load_config
from rillet.config.model import ConfigModel, Section
from rillet.engine.pipeline import build
from rillet.monitor.agent import Agent
from rillet.monitor.api import MonitorAPI
from tests.deploy.manifests import (
    BASE_CONF,
    DEPLOY,
    Obj,
    container,
    local_copy,
    mounted_configmap,
    one,
    pod_spec,
    render,
)
from tests.shared_data import SHARED
from tests.test_cli import run

SEED = SHARED / "reference" / "seed" / "fluent-bit.conf"
PROBE_KEYS = {"http_server": "On", "http_listen": "0.0.0.0", "http_port": "2020",
              "health_check": "On"}
FIREHOSE_CONF = DEPLOY / "kubernetes" / "overlays" / "firehose" / "fluent-bit.conf"
# The configurations mounted into workloads: (kustomization, workload kind, name, container).
WORKLOADS = [("kubernetes/overlays/cloudwatch", "DaemonSet", "fluentbit", "fluentbit"),
             ("kubernetes/overlays/firehose", "DaemonSet", "fluentbit", "fluentbit"),
             ("kubernetes/overlays/demo-app", "DaemonSet", "fluentbit", "fluentbit"),
             ("fargate/sidecar", "Deployment", "nginx", "rillet")]
# The sidecar's configuration reads the pod's identity from the downward API's variables.
POD_ENV = {"POD_NAME": "nginx-5468c5d4d7-n2swr", "POD_NAMESPACE": "fargate-demo"}


def entries(section: Section) -> list[tuple[str, Any]]:
    return [(e.key, e.value) for e in section.entries]


def sections(model: ConfigModel) -> dict[str, list[list[tuple[str, Any]]]]:
    return {kind: [entries(s) for s in getattr(model, kind)]
            for kind in ("inputs", "filters", "outputs")}


@pytest.mark.skipif(not SEED.is_file(), reason=f"the shared seed configuration is absent: {SEED}")
def test_base_config_is_the_seed_plus_the_probes_keys() -> None:
    seed, ours = read_classic(str(SEED)), read_classic(str(BASE_CONF))
    assert sections(ours) == sections(seed)
    added = [(k, v) for k, v in entries(ours.service) if k in PROBE_KEYS]
    assert dict(added) == PROBE_KEYS and len(added) == len(PROBE_KEYS)
    kept = [(k, v) for k, v in entries(ours.service) if k not in PROBE_KEYS]
    assert kept == entries(seed.service)


def test_firehose_config_differs_from_the_base_in_its_output_only() -> None:
    base, firehose = read_classic(str(BASE_CONF)), read_classic(str(FIREHOSE_CONF))
    assert entries(firehose.service) == entries(base.service)
    assert sections(firehose)["inputs"] == sections(base)["inputs"]
    assert sections(firehose)["filters"] == sections(base)["filters"]
    (output,) = firehose.outputs
    assert output.name == "kinesis_firehose"
    assert output.get("match") == "**" and output.get("region") and output.get("delivery_stream")


def _workload(directory: str, kind: str, name: str, ctr: str) -> tuple[list[Obj], Obj, Obj]:
    objects = render(directory)
    workload = one(objects, kind, name)
    return objects, workload, container(workload, ctr)


def _mounted_config(directory: str, kind: str, name: str, ctr: str) -> str:
    objects, workload, agent = _workload(directory, kind, name, ctr)
    text: str = mounted_configmap(objects, workload, agent, "/fluent-bit/etc")["data"][
        "fluent-bit.conf"]
    return text


def _dry_run(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in POD_ENV.items():
        monkeypatch.setenv(key, value)
    res = run("-c", str(path), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "configuration test is successful" in res.stdout
    assert "[error]" not in res.stderr


@pytest.mark.parametrize("workload", WORKLOADS, ids=[w[0] for w in WORKLOADS])
def test_mounted_configuration_passes_dry_run(workload: tuple[str, str, str, str],
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    text = _mounted_config(*workload)
    _dry_run(local_copy(text, tmp_path / "fluent-bit.conf"), monkeypatch)


def test_dry_run_fails_on_a_broken_configmap(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    text = _mounted_config(*WORKLOADS[1]).replace("delivery_stream", "delivery_strem")
    path = local_copy(text, tmp_path / "fluent-bit.conf")
    res = run("-c", str(path), "--dry-run")
    assert res.returncode == 1 and "delivery_strem" in res.stderr


def test_local_copy_changes_only_the_parsers_path(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="Parsers_File"):
        local_copy(BASE_CONF.read_text().replace("/fluent-bit/parsers/parsers.conf", "x"),
                   tmp_path / "a.conf")


def test_fargate_fragments_assembled_as_the_log_router_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render("fargate/aws-logging")
    data = one(objects, "ConfigMap", "aws-logging")["data"]
    for key in ("filters.conf", "output.conf", "parsers.conf"):
        (tmp_path / key).write_text(data[key])
    # Fargate's router brings [SERVICE] and the tail [INPUT]; the ConfigMap's parsers.conf is its
    # parsers file, filters.conf and output.conf follow the input.
    main = tmp_path / "fluent-bit.conf"
    main.write_text(
        "[SERVICE]\n"
        f"    Parsers_File {tmp_path / 'parsers.conf'}\n\n"
        "[INPUT]\n"
        "    Name             tail\n"
        "    Tag              kube.*\n"
        "    Path             /var/log/containers/*.log\n"
        "    DB               /var/log/flb_kube.db\n"
        "    Mem_Buf_Limit    10MB\n"
        "    Skip_Long_Lines  On\n"
        "    Refresh_Interval 10\n\n"
        "@INCLUDE filters.conf\n"
        "@INCLUDE output.conf\n")
    _dry_run(main, monkeypatch)
    model = load_config(str(main))
    assert [f.name for f in model.filters] == ["parser", "kubernetes"]
    assert [p.get("name") for p in model.parsers][-1] == "crio"
    assert [o.name for o in model.outputs] == ["cloudwatch_logs"]


def _port(ctr: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in ctr["ports"] if p["name"] == port]
    return int(number)


@pytest.mark.parametrize("workload", WORKLOADS, ids=[w[0] for w in WORKLOADS])
def test_probes_are_routes_of_the_monitoring_api(workload: tuple[str, str, str, str],
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in POD_ENV.items():
        monkeypatch.setenv(key, value)
    objects, deployed, agent = _workload(*workload)
    text = mounted_configmap(objects, deployed, agent, "/fluent-bit/etc")["data"][
        "fluent-bit.conf"]
    pipeline = build(load_config(str(local_copy(text, tmp_path / "fluent-bit.conf"))))
    service = pipeline.service
    assert service["http_server"] is True
    assert service["http_listen"] == "0.0.0.0"  # the kubelet probes the pod's IP
    routes = MonitorAPI(Agent(pipeline, install_signals=False)).routes
    for probe in ("livenessProbe", "readinessProbe"):
        get = agent[probe]["httpGet"]
        assert get["path"] in routes, f"{probe} {get['path']} is not served"
        assert _port(agent, get["port"]) == int(service["http_port"])
    assert "/api/v2/ready" in routes
    assert agent["livenessProbe"]["httpGet"]["path"] != agent["readinessProbe"]["httpGet"]["path"]
    assert not pod_spec(deployed).get("hostNetwork")


def test_liveness_route_needs_health_check(tmp_path: Path) -> None:
    text = BASE_CONF.read_text().replace("Health_Check On", "Health_Check Off")
    pipeline = build(load_config(str(local_copy(text, tmp_path / "fluent-bit.conf"))))
    routes = MonitorAPI(Agent(pipeline, install_signals=False)).routes
    assert "/api/v1/health" not in routes
