"""deploy/: every kustomization renders with kubectl and validates against the Kubernetes schemas;
the agent's DaemonSet, RBAC, IRSA, the demo application and the Fargate forms are as documented."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy.manifests import (
    BASE_CONF,
    DEPLOY,
    KUBERNETES_VERSION,
    Obj,
    container,
    find,
    kustomization_dirs,
    mounted_configmap,
    one,
    pod_spec,
    rel,
    render,
)

EXPECTED = {"kubernetes/base", "kubernetes/overlays/cloudwatch", "kubernetes/overlays/firehose",
            "kubernetes/overlays/demo-app", "fargate", "fargate/sidecar", "fargate/aws-logging"}
AGENTS = ["kubernetes/base", "kubernetes/overlays/cloudwatch", "kubernetes/overlays/firehose",
          "kubernetes/overlays/demo-app"]
ROLE_ARN = re.compile(r"^arn:aws:iam::\d{12}:role/[\w+=,.@/-]+$")


def test_every_documented_kustomization_exists() -> None:
    assert {rel(d) for d in kustomization_dirs()} >= EXPECTED


@pytest.mark.parametrize("directory", [rel(d) for d in kustomization_dirs()])
def test_renders_and_every_object_validates_strictly(directory: str) -> None:
    objects = render(directory)
    assert objects
    for obj in objects:
        # strict: unknown fields (a typo) fail too, not only wrong types.
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "an object is rendered twice"


def test_the_strict_validation_catches_a_misspelt_field() -> None:
    daemonset = dict(one(render("kubernetes/base"), "DaemonSet", "fluentbit"))
    spec = dict(daemonset["spec"])
    spec["updateStratgy"] = spec.pop("updateStrategy")
    daemonset["spec"] = spec
    with pytest.raises(kubernetes_validate.ValidationError, match="updateStratgy"):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("directory", AGENTS)
def test_agent_objects_are_the_seeds(directory: str) -> None:
    objects = render(directory)
    assert one(objects, "Namespace", "fluentbit-system")
    for kind in ("ServiceAccount", "DaemonSet", "ConfigMap"):
        assert one(objects, kind, "fluentbit" if kind != "ConfigMap" else "fluentbit-config")[
            "metadata"]["namespace"] == "fluentbit-system"
    role = one(objects, "ClusterRole", "fluentbit")
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["namespaces", "pods"],
                              "verbs": ["get", "list", "watch"]}]
    binding = one(objects, "ClusterRoleBinding", "fluentbit")
    assert binding["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": "fluentbit"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fluentbit",
                                    "namespace": "fluentbit-system"}]
    account = one(objects, "ServiceAccount", "fluentbit")
    assert ROLE_ARN.match(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    spec = pod_spec(one(objects, "DaemonSet", "fluentbit"))
    assert spec["serviceAccountName"] == "fluentbit"


@pytest.mark.parametrize("directory", AGENTS)
def test_daemonset_mounts_resources_and_security(directory: str) -> None:
    objects = render(directory)
    daemonset = one(objects, "DaemonSet", "fluentbit")
    spec = pod_spec(daemonset)
    agent = container(daemonset, "fluentbit")
    assert spec["tolerations"] == [{"operator": "Exists"}]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["mountPath"].rstrip("/"): m for m in agent["volumeMounts"]}
    expected = {"/var/log": False, "/var/lib/docker/containers": True, "/var/log/pods": True}
    for path, read_only in expected.items():
        mount = mounts[path]
        assert host_paths[mount["name"]] == path
        assert mount.get("readOnly", False) is read_only, path
    # The tail DB is on the read-write host mount.
    assert "DB                /var/log/flb_kube.db" in BASE_CONF.read_text()
    config = mounted_configmap(objects, daemonset, agent, "/fluent-bit/etc")
    assert mounts["/fluent-bit/etc"]["readOnly"] is True
    assert "fluent-bit.conf" in config["data"]
    assert agent["args"] == ["-c", "/fluent-bit/etc/fluent-bit.conf"]
    # Every other writable path is an emptyDir.
    for path, mount in mounts.items():
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        if not mount.get("readOnly") and path != "/var/log":
            assert "emptyDir" in volume, path
    assert agent["resources"] == {"requests": {"cpu": "500m", "memory": "100Mi"},
                                  "limits": {"memory": "500Mi"}}
    node_name = [e for e in agent["env"] if e["name"] == "NODE_NAME"]
    assert node_name == [{"name": "NODE_NAME",
                          "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    security = agent["securityContext"]
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in security["capabilities"]
    pod_security = spec["securityContext"]
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_security["runAsUser"] == 0
    assert not spec.get("hostNetwork") and not spec.get("hostPID")
    assert agent["image"].startswith("rillet:") and not agent["image"].endswith(":latest")
    assert agent["livenessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert agent["readinessProbe"]["httpGet"]["path"] == "/api/v2/ready"


@pytest.mark.parametrize(("directory", "conf"), [
    ("kubernetes/base", BASE_CONF),
    ("kubernetes/overlays/cloudwatch", BASE_CONF),
    ("kubernetes/overlays/demo-app", BASE_CONF),
    ("kubernetes/overlays/firehose", DEPLOY / "kubernetes/overlays/firehose/fluent-bit.conf"),
    ("fargate/sidecar", DEPLOY / "fargate/sidecar/fluent-bit.conf"),
])
def test_configmaps_hold_the_files(directory: str, conf: Path) -> None:
    objects = render(directory)
    maps = [o for o in objects if "fluent-bit.conf" in o.get("data", {})]
    assert len(maps) == 1
    assert maps[0]["data"]["fluent-bit.conf"] == conf.read_text()


def test_demo_app() -> None:
    objects = render("kubernetes/overlays/demo-app")
    # The demo brings the CloudWatch agent with it.
    assert one(objects, "DaemonSet", "fluentbit")
    deployment = one(objects, "Deployment", "nginx")
    assert deployment["spec"]["replicas"] == 3
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["fluentbit.io/parser"] == "nginx"
    nginx = container(deployment, "nginx")
    assert nginx["image"] == "nginx:1.17-alpine"
    service = one(objects, "Service", "nginx-service")
    assert service["spec"]["type"] == "NodePort"
    labels = template["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in nginx["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    ingress = one(objects, "Ingress")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"]
                for p in r["http"]["paths"]]
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert backends and all(b["name"] == "nginx-service" and b["port"]["name"] in service_ports
                            for b in backends)
    namespaces = {o["metadata"]["namespace"] for o in (deployment, service, ingress)}
    assert namespaces == {"default"}


def _host_paths(objects: list[Obj]) -> list[str]:
    return [v["hostPath"]["path"] for o in objects if "template" in o.get("spec", {})
            for v in pod_spec(o).get("volumes", []) if "hostPath" in v]


def test_fargate_uses_no_host_path() -> None:
    assert _host_paths(render("kubernetes/base"))  # the check sees hostPath where there is one
    for directory in ("fargate", "fargate/sidecar", "fargate/aws-logging"):
        assert _host_paths(render(directory)) == []


def test_fargate_aws_logging_form() -> None:
    objects = render("fargate/aws-logging")
    namespace = one(objects, "Namespace", "aws-observability")
    assert namespace["metadata"]["labels"] == {"aws-observability": "enabled"}
    config = [o for o in objects if o["kind"] == "ConfigMap"]
    assert len(config) == 1
    assert config[0]["metadata"] == {"name": "aws-logging", "namespace": "aws-observability"}
    data = config[0]["data"]
    assert set(data) == {"flb_log_cw", "filters.conf", "output.conf", "parsers.conf"}
    assert data["flb_log_cw"] in ("true", "false")
    # EKS refuses a ConfigMap over 5300 characters.
    assert sum(len(k) + len(v) for k, v in data.items()) < 5300
    # Only these sections are accepted: the log router owns [SERVICE] and [INPUT].
    allowed = {"filters.conf": {"FILTER"}, "output.conf": {"OUTPUT"}, "parsers.conf": {"PARSER"}}
    for key, kinds in allowed.items():
        sections = set(re.findall(r"^\s*\[([A-Z_]+)\]", data[key], re.M))
        assert sections == kinds, key


def test_fargate_sidecar_shares_the_log_folder() -> None:
    objects = render("fargate/sidecar")
    deployment = one(objects, "Deployment", "nginx")
    spec = pod_spec(deployment)
    app, sidecar = container(deployment, "nginx"), container(deployment, "rillet")
    app_mounts = {m["name"]: m for m in app["volumeMounts"]}
    side_mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    shared = set(app_mounts) & set(side_mounts)
    assert shared == {"app-logs"}
    volume = next(v for v in spec["volumes"] if v["name"] == "app-logs")
    assert "emptyDir" in volume
    assert side_mounts["app-logs"]["readOnly"] is True
    folder = app_mounts["app-logs"]["mountPath"]
    text = mounted_configmap(objects, deployment, sidecar, "/fluent-bit/etc")["data"][
        "fluent-bit.conf"]
    paths = re.findall(r"^\s*Path\s+(\S+)", text, re.M)
    assert paths and all(p.startswith(folder + "/") for p in paths)
    db = re.findall(r"^\s*DB\s+(\S+)", text, re.M)
    writable = [m["mountPath"] for m in sidecar["volumeMounts"] if not m.get("readOnly")]
    assert db and any(db[0].startswith(w + "/") for w in writable)
    security = sidecar["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    account = one(objects, "ServiceAccount", spec["serviceAccountName"])
    assert ROLE_ARN.match(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])


def test_find_ignores_a_generated_suffix_for_configmaps_only() -> None:
    objects = render("kubernetes/overlays/demo-app")
    assert find(objects, "Service", "nginx") == []
    assert len(find(objects, "ConfigMap", "fluentbit-config")) == 1
