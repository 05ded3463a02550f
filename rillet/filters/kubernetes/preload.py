"""``Kube_Meta_Preload_Cache_Dir``: Pod and Namespace objects from files, and the chain that
asks the files first and the API second (Fluent Bit's get_meta_file_info).

Files: ``<dir>/<namespace>_<pod>.meta`` (a Pod object, or with Use_Kubelet a kubelet ``/pods``
list) and ``<dir>/<namespace>.namespace_meta``. Each file is read once, on the first lookup; a
missing or unreadable file is remembered as absent (logged once) and the chain asks the API.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson

from rillet.filters.kubernetes.render import pod_from_list
from rillet.filters.kubernetes.source import Entry, Kind, MetaSource

PRELOAD_VERSION = -1  # entries from files never change


class PreloadSource:
    """A :class:`MetaSource` over a folder of ``.meta`` files (answers at once, never None)."""

    def __init__(self, directory: str, log: logging.Logger, use_kubelet: bool = False) -> None:
        self.directory = directory
        self.log = log
        self.use_kubelet = use_kubelet
        self.entries: dict[tuple[Kind, str, str], Entry] = {}

    async def start(self, wait: float) -> None:
        if not os.path.isdir(self.directory):
            self.log.warning("Kube_Meta_Preload_Cache_Dir %s is not a folder: every lookup "
                             "goes to the API", self.directory)

    async def stop(self) -> None:
        self.entries.clear()

    def path(self, kind: Kind, namespace: str, name: str) -> str:
        if kind == "namespace":
            return os.path.join(self.directory, f"{name}.namespace_meta")
        return os.path.join(self.directory, f"{namespace}_{name}.meta")

    def lookup(self, kind: Kind, namespace: str, name: str) -> Entry:
        key = (kind, namespace, name)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = self._read(kind, namespace, name)
        return entry

    def _read(self, kind: Kind, namespace: str, name: str) -> Entry:
        path = self.path(kind, namespace, name)
        try:
            with open(path, "rb") as f:
                obj: Any = orjson.loads(f.read())
        except FileNotFoundError:
            return Entry(None, PRELOAD_VERSION, f"no file {path}")
        except (OSError, orjson.JSONDecodeError) as exc:
            self.log.warning("cannot use metadata file %s: %s", path, exc)
            return Entry(None, PRELOAD_VERSION, f"unreadable {path}: {exc}")
        if type(obj) is not dict:
            self.log.warning("metadata file %s does not hold a JSON object", path)
            return Entry(None, PRELOAD_VERSION, f"not an object: {path}")
        if kind == "pod" and self.use_kubelet and "items" in obj:
            # A kubelet /pods list: the pod's item, or an empty object when it is not listed.
            obj = pod_from_list(obj, namespace, name) or {}
        return Entry(obj, PRELOAD_VERSION)


class ChainSource:
    """The first source that knows an object: files first, then the API."""

    def __init__(self, first: PreloadSource, second: MetaSource) -> None:
        self.first = first
        self.second = second

    async def start(self, wait: float) -> None:
        await self.first.start(wait)
        await self.second.start(wait)

    async def stop(self) -> None:
        try:
            await self.second.stop()
        finally:
            await self.first.stop()

    def lookup(self, kind: Kind, namespace: str, name: str) -> Entry | None:
        entry = self.first.lookup(kind, namespace, name)
        if entry.obj is not None:
            return entry
        return self.second.lookup(kind, namespace, name)
