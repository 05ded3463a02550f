"""Pod / Namespace objects -> the ``kubernetes`` and ``kubernetes_namespace`` blocks.

The blocks are built once per (pod, container, source version) and kept serialized: the filter
splices the bytes into every record of the pod. Field order and presence follow Fluent Bit's
``merge_pod_meta`` / ``merge_namespace_meta`` (kube_meta.c):

``kubernetes``: pod_name, namespace_name, pod_id (metadata.uid), labels, annotations,
ownerReferences (Owner_References On), host (spec.nodeName), pod_ip (status.podIP),
container_name, docker_id, container_hash, container_image. A field whose source is absent is
omitted; ``labels``/``annotations`` are kept when present, even empty. ``docker_id`` and
``container_hash`` come from the tag when it has them, else from the container's status
(``containerStatuses`` then ``initContainerStatuses``) with the ``docker://`` style scheme cut.

``kubernetes_namespace``: name, labels (Namespace_Labels On), annotations
(Namespace_Annotations On).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from rillet.filters.kubernetes.tag import Identity

_dumps = orjson.dumps


@dataclass(frozen=True, slots=True)
class RenderOptions:
    labels: bool = True
    annotations: bool = True
    owner_references: bool = False
    namespace_labels: bool = False
    namespace_annotations: bool = False


def strip_scheme(value: Any) -> str | None:
    """Fluent Bit's extract_hash: ``docker://abc`` -> ``abc``, ``repo@sha256:x`` kept whole;
    a value without ``:`` is unusable (None)."""
    if type(value) is not str or len(value) <= 1:
        return None
    colon = value.find(":")
    if colon < 0:
        return None
    end = colon
    while end + 1 < len(value) and value[end + 1] == "/":
        end += 1
    if end == colon:
        return value
    rest = value[end + 1:]
    return rest or None


def _dict(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}


def container_status(status: dict[str, Any], container: str) -> dict[str, Any] | None:
    """The status entry of ``container`` (regular containers first, then init containers, in
    the order the object lists them)."""
    for key, statuses in status.items():
        if key not in ("containerStatuses", "initContainerStatuses") or type(statuses) is not list:
            continue
        for item in statuses:
            if type(item) is dict and item.get("name") == container:
                return item
    return None


def pod_block(ident: Identity, pod: dict[str, Any], opts: RenderOptions) -> dict[str, Any]:
    """The ``kubernetes`` map for one container of ``pod`` (the object as the API serves it)."""
    meta = _dict(pod.get("metadata"))
    spec = _dict(pod.get("spec"))
    status = _dict(pod.get("status"))
    out: dict[str, Any] = {}
    if ident.pod:
        out["pod_name"] = ident.pod
    if ident.namespace:
        out["namespace_name"] = ident.namespace
    if "uid" in meta:
        out["pod_id"] = meta["uid"]
    if opts.labels and "labels" in meta:
        out["labels"] = meta["labels"]
    if opts.annotations and "annotations" in meta:
        out["annotations"] = meta["annotations"]
    if opts.owner_references and "ownerReferences" in meta:
        out["ownerReferences"] = meta["ownerReferences"]
    if "nodeName" in spec:
        out["host"] = spec["nodeName"]
    if "podIP" in status:
        out["pod_ip"] = status["podIP"]
    docker_id, chash, image = ident.docker_id, ident.container_hash, ""
    cs = container_status(status, ident.container) if ident.container else None
    if cs is not None:
        docker_id = docker_id or strip_scheme(cs.get("containerID")) or ""
        chash = chash or strip_scheme(cs.get("imageID")) or ""
        img = cs.get("image")
        image = img if type(img) is str else ""
    if ident.container:
        out["container_name"] = ident.container
    if docker_id:
        out["docker_id"] = docker_id
    if chash:
        out["container_hash"] = chash
    if image:
        out["container_image"] = image
    return out


def tag_block(ident: Identity) -> dict[str, Any]:
    """Use_Tag_For_Meta: only what the tag says (Fluent Bit's merge_meta_from_tag)."""
    out: dict[str, Any] = {}
    if ident.pod:
        out["pod_name"] = ident.pod
    if ident.namespace:
        out["namespace_name"] = ident.namespace
    if ident.container:
        out["container_name"] = ident.container
    if ident.docker_id:
        out["docker_id"] = ident.docker_id
    return out


def namespace_block(name: str, ns: dict[str, Any], opts: RenderOptions) -> dict[str, Any]:
    meta = _dict(ns.get("metadata"))
    out: dict[str, Any] = {"name": name}
    if opts.namespace_labels and "labels" in meta:
        out["labels"] = meta["labels"]
    if opts.namespace_annotations and "annotations" in meta:
        out["annotations"] = meta["annotations"]
    return out


def dummy_block() -> dict[str, Any]:
    """Dummy_Meta: Fluent Bit's fixed test metadata, ``{"dummy": <asctime of now>}``."""
    return {"dummy": time.asctime(time.localtime())}


def serialize(block: dict[str, Any]) -> bytes:
    return _dumps(block)


def pod_from_list(obj: dict[str, Any], namespace: str, pod: str) -> dict[str, Any] | None:
    """A kubelet ``/pods`` style list (``items``) -> the item of ``namespace``/``pod``."""
    items = obj.get("items")
    if type(items) is not list:
        return obj
    for item in items:
        if type(item) is not dict:
            continue
        meta = _dict(item.get("metadata"))
        if meta.get("name") == pod and meta.get("namespace") == namespace:
            return item
    return None
