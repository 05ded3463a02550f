"""Tag (or log file path) -> the identity of the container that wrote the records.

Fluent Bit skips ``Kube_Tag_Prefix`` by length, without checking the tag starts with it, and runs
its regex (or ``Regex_Parser``) on the rest. rillet checks the prefix: a tag that does not start
with it gets one warning and passes unenriched. Tags made from kubelet's own layout,
``/var/log/pods/<namespace>_<pod>_<uid>/<container>/<N>.log`` (dots or slashes), are understood
whatever the prefix, when no ``Regex_Parser`` is set.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

# Fluent Bit's KUBE_TAG_TO_REGEX (kube_regex.h), in Python syntax; searched, not anchored.
DEFAULT_TAG_REGEX = (
    r"(?P<pod_name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*)"
    r"_(?P<namespace_name>[^_]+)_(?P<container_name>.+)-(?P<docker_id>[a-z0-9]{64})\.log$"
)
# Fluent Bit's KUBE_JOURNAL_TO_REGEX, applied to a journal record's CONTAINER_NAME.
JOURNAL_REGEX = (
    r"^(?P<name_prefix>[^_]+)_(?P<container_name>[^\._]+)(\.(?P<container_hash>[^_]+))?"
    r"_(?P<pod_name>[^_]+)_(?P<namespace_name>[^_]+)_[^_]+_[^_]+$"
)
# kubelet's layout: /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log
PODS_PATH_REGEX = (
    r"var[./]log[./]pods[./](?P<namespace_name>[^_/]+)_(?P<pod_name>[^_/]+)"
    r"_(?P<pod_uid>[0-9a-fA-F-]+)[./](?P<container_name>[^./]+)[./]\d+\.log$"
)

_FIELDS = ("pod_name", "namespace_name", "container_name", "docker_id", "container_hash")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who wrote a file's records. Empty strings are absent fields (Fluent Bit drops empty
    captures)."""

    namespace: str
    pod: str
    container: str = ""
    docker_id: str = ""
    container_hash: str = ""


def identity_of(groups: dict[str, Any]) -> Identity | None:
    """An :class:`Identity` from regex captures; None without a pod and a namespace."""
    values = {k: v for k in _FIELDS if isinstance(v := groups.get(k), str) and v}
    ns = values.get("namespace_name", "")
    pod = values.get("pod_name", "")
    if not ns and not pod:
        return None
    return Identity(ns, pod, values.get("container_name", ""), values.get("docker_id", ""),
                    values.get("container_hash", ""))


class TagResolver:
    """Tag -> Identity, cached per tag. ``search`` is the tag regex's ``search`` (or a
    Regex_Parser's), applied to the tag after the prefix."""

    def __init__(self, prefix: str, search: Any, log: logging.Logger,
                 understand_pods_paths: bool = True) -> None:
        self.prefix = prefix
        self.search = search
        self.log = log
        self.pods_path = re.compile(PODS_PATH_REGEX).search if understand_pods_paths else None
        self.cache: dict[str, Identity | None] = {}

    def resolve(self, tag: str) -> Identity | None:
        try:
            return self.cache[tag]
        except KeyError:
            pass
        ident = self._resolve(tag)
        if len(self.cache) > 65536:  # tags of files long gone
            self.cache.clear()
        self.cache[tag] = ident
        return ident

    def _resolve(self, tag: str) -> Identity | None:
        prefix = self.prefix
        if tag.startswith(prefix) and len(tag) > len(prefix) + 1:
            m = self.search(tag[len(prefix):])
            if m is not None:
                ident = identity_of(m.groupdict())
                if ident is not None:
                    return ident
        if self.pods_path is not None:
            m = self.pods_path(tag)
            if m is not None:
                return identity_of(m.groupdict())
        if not tag.startswith(prefix):
            self.log.warning("tag '%s' does not start with Kube_Tag_Prefix '%s': its records "
                             "pass without metadata (set Kube_Tag_Prefix to the tail input's "
                             "Tag prefix followed by the path with '/' as '.'; warned once per "
                             "tag)", tag, prefix)
        else:
            self.log.warning("invalid pattern for given tag %s (records pass without metadata; "
                             "warned once per tag)", tag)
        return None
