"""The Kubernetes API stand-in: real paths, Status errors, selectors, watch, control API,
kubectl and the command line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rillet.devtools.kube_api import load_meta_dir
from tests.peers.kube_api import NODE, KubeApiPeer, pod
from tests.shared_data import SHARED

GEN_CORPUS = SHARED / "bench" / "gen_corpus.py"


def get(peer: KubeApiPeer, path: str, token: str | None = "rillet-test-token",
        timeout: float = 5.0) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cafile=str(peer.certs.ca))
    req = urllib.request.Request(peer.url + path)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def watch_lines(peer: KubeApiPeer, path: str) -> list[dict[str, Any]]:
    """A whole watch stream (the request must end it with timeoutSeconds)."""
    ctx = ssl.create_default_context(cafile=str(peer.certs.ca))
    req = urllib.request.Request(peer.url + path,
                                 headers={"Authorization": "Bearer rillet-test-token"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


def test_conformance_meta_loaded_with_stub_names(conformance_api: KubeApiPeer) -> None:
    srv = conformance_api.server
    status, body = get(conformance_api, "/api/v1/namespaces/core/pods/no-meta")
    assert status == 200
    assert body["metadata"]["name"] == "no-meta"
    assert body["metadata"]["namespace"] == "core"
    assert body["spec"]["nodeName"] == NODE
    # names come from the file name, even where the object says otherwise
    status, body = get(conformance_api,
                       "/api/v1/namespaces/core/pods/base-with-owner-references")
    assert status == 200 and body["metadata"]["ownerReferences"]
    assert body["spec"]["nodeName"] == "ip-10-49-18-80.eu-west-1.compute.internal"
    # a kubelet-style list file holds its pods
    assert ("options", "use-kubelet-enabled") in srv.pods
    status, body = get(conformance_api, "/api/v1/namespaces/core")
    assert status == 200 and body["metadata"]["labels"]["fake-namespace-label1"] == "label1"
    assert len(srv.pods) == 36  # 36 .meta files, one holding a list of one


def test_gen_corpus_meta_folder(tmp_path: Path) -> None:
    if not GEN_CORPUS.is_file():
        pytest.skip(f"{GEN_CORPUS} not found")
    subprocess.run([sys.executable, str(GEN_CORPUS), str(tmp_path / "corpus"), "--pods", "5",
                    "--lines", "20"], check=True, capture_output=True, timeout=60)
    pods, namespaces = load_meta_dir(tmp_path / "corpus" / "meta", "n1")
    assert len(pods) == 5
    assert {n["metadata"]["name"] for n in namespaces} >= {p["metadata"]["namespace"]
                                                          for p in pods}
    for p in pods:
        assert p["kind"] == "Pod" and p["spec"]["nodeName"]


def test_errors_are_status_objects(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    status, body = get(kube_api, "/api/v1/namespaces/shop/pods/nope", token=None)
    assert status == 401
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized",
                    "code": 401}
    status, body = get(kube_api, "/api/v1/namespaces/shop/pods/nope")
    assert status == 404
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": 'pods "nope" not found',
                    "reason": "NotFound", "details": {"name": "nope", "kind": "pods"},
                    "code": 404}
    status, body = get(kube_api, "/api/v1/namespaces/nope")
    assert status == 404 and body["message"] == 'namespaces "nope" not found'
    srv.set_tokens("good", forbidden=["limited"])
    status, body = get(kube_api, "/api/v1/namespaces/shop/pods/x", token="limited")
    assert status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == ('pods "x" is forbidden: User "system:serviceaccount:logging:'
                               'rillet" cannot get resource "pods" in API group "" in the '
                               'namespace "shop"')
    status, body = get(kube_api, "/api/v1/pods?watch=1", token="limited")
    assert status == 403 and "cannot watch resource" in body["message"]
    status, body = get(kube_api, "/api/v1/pods", token="rillet-test-token")
    assert status == 401
    status, body = get(kube_api, "/api/v1/pods?fieldSelector=spec.color%3Dred", token="good")
    assert status == 400 and body["message"] == "field label not supported: spec.color"
    assert [r.status for r in srv.request_log()] == [401, 404, 404, 403, 403, 401, 400]


def test_list_selectors(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_pod(pod("a", "one", labels={"app": "web"}))
    srv.add_pod(pod("a", "two", node="node-b", labels={"app": "db"}))
    srv.add_pod(pod("b", "three", labels={"app": "web"}))

    def names(path: str) -> list[str]:
        status, body = get(kube_api, path)
        assert status == 200, body
        assert body["kind"] == "PodList" and int(body["metadata"]["resourceVersion"]) > 0
        return sorted(i["metadata"]["name"] for i in body["items"])

    assert names("/api/v1/pods") == ["one", "three", "two"]
    assert names(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}") == ["one", "three"]
    assert names("/api/v1/pods?fieldSelector=spec.nodeName!%3Dnode-b") == ["one", "three"]
    assert names("/api/v1/namespaces/a/pods") == ["one", "two"]
    assert names("/api/v1/pods?fieldSelector=metadata.name%3D%3Dtwo") == ["two"]
    assert names("/api/v1/pods?labelSelector=app%3Dweb") == ["one", "three"]
    _, body = get(kube_api, "/pods")  # the kubelet's view: this node's pods
    assert sorted(i["metadata"]["name"] for i in body["items"]) == ["one", "three"]


def test_watch_stream(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    first = srv.add_pod(pod("a", "one"))
    rv = first["metadata"]["resourceVersion"]
    srv.update_pod("a", "one", annotations={"k": "v"})
    srv.add_pod(pod("a", "other-node", node="node-b"))
    srv.delete_pod("a", "one")
    sel = f"fieldSelector=spec.nodeName%3D{NODE}"
    events = watch_lines(kube_api, f"/api/v1/pods?watch=1&{sel}&resourceVersion={rv}"
                                   "&timeoutSeconds=0.5&allowWatchBookmarks=true")
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["MODIFIED", "DELETED"]
    assert set(kinds[2:]) <= {"BOOKMARK"} and kinds[2:]
    assert events[0]["object"]["metadata"]["annotations"] == {"k": "v"}
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) == srv.rv
    # no version: the current objects as ADDED
    events = watch_lines(kube_api, "/api/v1/pods?watch=1&timeoutSeconds=0.2")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "other-node")]
    # compaction: older versions get 410 Expired as an ERROR event, or as HTTP 410
    srv.compact()
    events = watch_lines(kube_api, f"/api/v1/pods?watch=1&resourceVersion={rv}")
    assert events == [{"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {rv} ({srv.rv})", "reason": "Expired",
        "code": 410}}]
    srv.gone_as_http = True
    status, body = get(kube_api, f"/api/v1/pods?watch=1&resourceVersion={rv}")
    assert status == 410 and body["reason"] == "Expired"
    assert watch_lines(kube_api, f"/api/v1/pods?watch=1&resourceVersion={srv.rv}"
                                 "&timeoutSeconds=0.1") == []


def test_stop_and_start(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    port = srv.port
    srv.stop()
    with pytest.raises(urllib.error.URLError):
        get(kube_api, "/version", timeout=2)
    srv.start()
    assert srv.port == port
    status, body = get(kube_api, "/version")
    assert status == 200 and body["major"] == "1"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_get_pod(conformance_api: KubeApiPeer) -> None:
    kubeconfig = conformance_api.kubeconfig()
    env = dict(os.environ, HOME=str(conformance_api.folder), KUBECONFIG=str(kubeconfig))
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "get", "pod", "-n", "core", "base",
         "-o", "json"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert obj["metadata"]["name"] == "base"
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/name": "fluent-bit"}
    assert obj == conformance_api.server.pods[("core", "base")]
    missing = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "get", "pod", "-n", "core", "nope"],
        capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode != 0
    assert 'pods "nope" not found' in missing.stderr


def test_command_line(tmp_path: Path) -> None:
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "shop_web-1.meta").write_text(json.dumps(pod("shop", "ignored", node=None)))
    (meta / "shop.namespace_meta").write_text(json.dumps({"metadata": {"labels": {"t": "1"}}}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rillet.devtools.kube_api", "--meta", str(meta), "--node", "n9",
         "--token", "tok", "--cert-dir", str(tmp_path / "certs"),
         "--write-kubeconfig", str(tmp_path / "kubeconfig")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["token"] == "tok" and info["node"] == "n9"
        assert info["pods"] == 1 and info["namespaces"] == 1
        assert Path(info["token_file"]).read_text().strip() == "tok"
        ctx = ssl.create_default_context(cafile=info["ca_file"])
        req = urllib.request.Request(info["url"] + "/api/v1/namespaces/shop/pods/web-1",
                                     headers={"Authorization": "Bearer tok"})
        with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["spec"]["nodeName"] == "n9"
        config = json.loads((tmp_path / "kubeconfig").read_text())
        assert config["clusters"][0]["cluster"]["server"] == info["url"]
    finally:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    assert proc.wait() == 0
