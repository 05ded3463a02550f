"""Helpers for the deploy/ tests: render kustomizations with kubectl, find objects, and prepare a
ConfigMap's configuration for ``rillet --dry-run`` on this machine."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE = DEPLOY / "kubernetes"
BASE_CONF = KUSTOMIZE / "base" / "fluent-bit.conf"
REPO_PARSERS = ROOT / "rillet" / "parsers" / "builtin" / "parsers.conf"
IMAGE_PARSERS = "/fluent-bit/parsers/parsers.conf"
KUBERNETES_VERSION = "1.37.0"

Obj = dict[str, Any]


def kustomization_dirs() -> list[Path]:
    """Every folder under deploy/ that kubectl can render (holds a kustomization.yaml)."""
    return sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def rel(path: Path) -> str:
    return str(path.relative_to(DEPLOY))


@functools.cache
def _render(directory: Path) -> tuple[Obj, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed on this machine: "
                    "the kustomizations were not rendered")
    res = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, f"kubectl kustomize {rel(directory)} failed:\n{res.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(res.stdout) if doc)


def render(directory: str | Path) -> list[Obj]:
    """The objects ``kubectl kustomize`` renders for ``directory`` (relative to deploy/)."""
    return list(_render(DEPLOY / directory))


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """Objects of ``kind``; with ``name``, only that name (a generated ConfigMap's name is
    matched without its hash suffix)."""
    found = []
    for obj in objects:
        if obj["kind"] != kind:
            continue
        actual = obj["metadata"]["name"]
        generated = kind == "ConfigMap" and actual.rsplit("-", 1)[0] == name
        if name is None or actual == name or generated:
            found.append(obj)
    return found


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Obj, name: str) -> Obj:
    matches = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    assert len(matches) == 1, f"no container {name} in {workload['metadata']['name']}"
    return matches[0]


def mounted_configmap(objects: list[Obj], workload: Obj, ctr: Obj, mount_path: str) -> Obj:
    """The ConfigMap (from ``objects``) mounted at ``mount_path`` in container ``ctr``."""
    mounts = [m for m in ctr["volumeMounts"] if m["mountPath"].rstrip("/") == mount_path]
    assert len(mounts) == 1, f"nothing mounted at {mount_path}"
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    name = volumes[mounts[0]["name"]]["configMap"]["name"]
    maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    assert len(maps) == 1, f"the ConfigMap {name} mounted at {mount_path} is not rendered"
    return maps[0]


def local_copy(text: str, path: Path) -> Path:
    """Write ``text`` to ``path`` with only the image's parsers path replaced by the repository's
    file (absent on a test machine; the Dockerfile test checks the image puts it there)."""
    local = text.replace(IMAGE_PARSERS, str(REPO_PARSERS))
    before, after = text.splitlines(), local.splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 1, f"expected the Parsers_File line only to change: {changed}"
    assert changed[0][0].split() == ["Parsers_File", IMAGE_PARSERS]
    path.write_text(local)
    return path
