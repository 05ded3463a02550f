"""Fixtures of the kubernetes filter tests."""

from tests.peers.kube_api import kube_api  # noqa: F401
