"""The Kubernetes API stand-in (:mod:`rillet.devtools.kube_api`) as a test peer.

:func:`kube_api_peer` starts it on its own thread over HTTPS with a fresh ``trustme`` CA, writes
the CA file and a token file, and builds the kubernetes filter's API options pointing at it.
The ``kube_api`` fixture wraps it per test (import it in a ``conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rillet.config.model import Section
from rillet.config.options import Options, OptionTable, resolve
from rillet.devtools.kube_api import (
    DEFAULT_TOKEN,
    CertFiles,
    KubeApiStandIn,
    make_test_certs,
    server_ssl_context,
)
from rillet.filters.kubernetes.api import API_OPTIONS

NODE = "node-a"


@dataclass
class KubeApiPeer:
    server: KubeApiStandIn
    certs: CertFiles
    token_file: Path
    folder: Path

    @property
    def url(self) -> str:
        return self.server.url

    def rotate_token(self, new: str, *, keep_old: bool = False) -> None:
        """The service-account token rotates: the server accepts ``new`` (and, with
        ``keep_old``, the old one too), and the token file holds ``new``."""
        old = self.token_file.read_text(encoding="utf-8").strip()
        self.server.set_tokens(new, *((old,) if keep_old else ()))
        self.token_file.write_text(new + "\n", encoding="utf-8")

    def settings(self, **overrides: str) -> dict[str, str]:
        """Option settings (as a config file writes them) reaching this server quickly."""
        out = {"kube_url": self.url, "kube_ca_file": str(self.certs.ca),
               "kube_token_file": str(self.token_file), "kube_node_name": self.server.node,
               "kube_retry_max": "0.3", "kube_start_wait": "3"}
        out.update(overrides)
        return out

    def options(self, table: OptionTable = API_OPTIONS, **overrides: str) -> Options:
        """``table`` resolved with :meth:`settings` (keys with dots: pass them in a dict via
        ``**{"tls.verify": "off"}``)."""
        section = Section("filter", "test.conf", 1)
        section.set("name", "kubernetes")
        for key, value in self.settings(**overrides).items():
            section.set(key, value)
        errors: list[str] = []
        opts = resolve(section, table, errors)
        assert errors == [], errors
        return opts

    def kubeconfig(self) -> Path:
        return self.server.write_kubeconfig(self.folder / "kubeconfig",
                                            token=self.token_file.read_text().strip(),
                                            ca_file=self.certs.ca)


@contextmanager
def kube_api_peer(folder: Path, meta_dir: Path | None = None, *, node: str = NODE,
                  **kwargs: Any) -> Iterator[KubeApiPeer]:
    folder.mkdir(parents=True, exist_ok=True)
    certs = make_test_certs(folder / "tls")
    token_file = folder / "token"
    token_file.write_text(DEFAULT_TOKEN + "\n", encoding="utf-8")
    kwargs.setdefault("bookmark_interval", 0.2)
    server = KubeApiStandIn(meta_dir, node=node, tokens=(DEFAULT_TOKEN,),
                            ssl_context=server_ssl_context(certs.cert, certs.key), **kwargs)
    with server:
        yield KubeApiPeer(server, certs, token_file, folder)


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[KubeApiPeer]:
    """The HTTPS API stand-in on node ``node-a``, empty: add pods with
    ``kube_api.server.add_pod(pod(...))``."""
    with kube_api_peer(tmp_path / "kube-api") as peer:
        yield peer


def pod(namespace: str, name: str, *, node: str | None = NODE,
        annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
        uid: str | None = None) -> dict[str, Any]:
    """A small but real-looking Pod object."""
    obj: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
                     "uid": uid or f"uid-{namespace}-{name}",
                     "labels": labels or {"app": name},
                     "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
        "status": {"podIP": "10.0.0.7", "phase": "Running"},
    }
    if node is not None:
        obj["spec"]["nodeName"] = node
    return obj
