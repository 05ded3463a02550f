"""pytest fixtures for the peers: import them in a conftest.py.

``moto_server`` is session-scoped (one moto process for the whole run; tests use unique names).
``fault_proxy`` is per test, in front of that moto server, with no rules: add them.
``aws_env`` sets static test credentials and disables the EC2 metadata lookup, so nothing ever
leaves loopback.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.fault_proxy import FaultProxy
from tests.peers.moto_server import TEST_ENV, MotoServer


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def fault_proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.url) as proxy:
        yield proxy


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("aws-home")
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_SESSION_TOKEN",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
