"""Fixtures of the devtools tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.kube_api import KubeApiPeer, kube_api, kube_api_peer  # noqa: F401
from tests.shared_data import CONFORMANCE

META = CONFORMANCE / "runtime" / "data" / "kubernetes" / "meta"


@pytest.fixture
def conformance_api(tmp_path: Path) -> Iterator[KubeApiPeer]:
    """The stand-in serving Fluent Bit's conformance ``.meta`` files."""
    if not META.is_dir():
        pytest.skip(f"shared conformance data not found ({META})")
    with kube_api_peer(tmp_path / "kube-api", META) as peer:
        yield peer
