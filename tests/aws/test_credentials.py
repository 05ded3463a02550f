"""Credentials through botocore's chain, logged once, against real local peers (moto's STS,
a container-credentials endpoint on loopback, a credential_process script)."""

from __future__ import annotations

import asyncio
import http.server
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rillet.aws.credentials import CredentialsError, CredentialsProvider, normalize_url
from tests.peers.fault_proxy import FaultProxy

LOG = logging.getLogger("rillet.test.aws")


def resolve(provider: CredentialsProvider) -> object:
    return asyncio.run(provider.frozen())


def test_environment(aws_env: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "rillet.test.aws")
    provider = CredentialsProvider(LOG, region="us-east-1")

    async def twice() -> object:
        await provider.start()
        return await provider.frozen()

    frozen = asyncio.run(twice())
    assert frozen.access_key == "AKIDTESTTESTTEST"  # type: ignore[attr-defined]
    assert provider.method == "env"
    lines = [r.getMessage() for r in caplog.records if "supplied by provider" in r.getMessage()]
    assert lines == ["AWS credentials supplied by provider: env"]


def test_profile_from_shared_credentials_file(aws_env: None, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s\n"
                     "[team]\naws_access_key_id = AKIDTEAM\naws_secret_access_key = s2\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    provider = CredentialsProvider(LOG, region="us-east-1", profile="team")
    assert resolve(provider).access_key == "AKIDTEAM"  # type: ignore[attr-defined]
    assert provider.method == "shared-credentials-file"


def test_credential_process(aws_env: None, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    script = tmp_path / "creds.py"
    script.write_text('import json\nprint(json.dumps({"Version": 1, "AccessKeyId": "AKIDPROC", '
                      '"SecretAccessKey": "p", "SessionToken": "t"}))\n')
    config = tmp_path / "config"
    config.write_text(f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    provider = CredentialsProvider(LOG, region="us-east-1", profile="proc")
    frozen = resolve(provider)
    assert frozen.access_key == "AKIDPROC" and frozen.token == "t"  # type: ignore[attr-defined]
    assert provider.method == "custom-process"


def test_no_credentials_is_a_clear_error(aws_env: None,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    provider = CredentialsProvider(LOG, region="us-east-1")
    with pytest.raises(CredentialsError, match="no AWS credentials found"):
        resolve(provider)


def test_irsa_web_identity_against_moto_sts(aws_env: None, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            fault_proxy: FaultProxy) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.sig")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/fluentbit")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", fault_proxy.url)
    provider = CredentialsProvider(LOG, region="us-east-1")
    frozen = resolve(provider)
    assert provider.method == "assume-role-with-web-identity"
    assert frozen.access_key.startswith("ASIA") and frozen.token  # type: ignore[attr-defined]
    assert fault_proxy.count("AssumeRoleWithWebIdentity") == 1


def test_role_arn_assume_role_through_sts_endpoint(aws_env: None,
                                                   fault_proxy: FaultProxy) -> None:
    provider = CredentialsProvider(LOG, region="us-east-1",
                                   role_arn="arn:aws:iam::123456789012:role/writer",
                                   external_id="ext-42", sts_endpoint=fault_proxy.url)
    frozen = resolve(provider)
    assert frozen.access_key.startswith("ASIA")  # type: ignore[attr-defined]
    assert provider.method is not None and provider.method.startswith(
        "assume-role arn:aws:iam::123456789012:role/writer (source credentials: env)")
    calls = [s for s in fault_proxy.requests if s.operation == "AssumeRole"]
    assert len(calls) == 1
    assert b"ExternalId=ext-42" in calls[0].body
    assert calls[0].key_id == "AKIDTESTTESTTEST"  # signed with the source credentials


class _JsonHandler(http.server.BaseHTTPRequestHandler):
    """A credentials endpoint stand-in: answers JSON, logs nothing."""

    def send_json(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _ContainerCreds(_JsonHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "pod-identity-token":
            self.send_response(401)
            self.end_headers()
            return
        body = (b'{"AccessKeyId":"AKIDPOD","SecretAccessKey":"c","Token":"tok",'
                b'"Expiration":"2099-01-01T00:00:00Z"}')
        self.send_json(body)


@pytest.fixture
def container_endpoint() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _ContainerCreds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/credentials"
    server.shutdown()
    server.server_close()


def test_container_credentials_eks_pod_identity(aws_env: None, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                container_endpoint: str) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    token = tmp_path / "eks-pod-identity-token"
    token.write_text("pod-identity-token")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", container_endpoint)
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token))
    provider = CredentialsProvider(LOG, region="us-east-1")
    frozen = resolve(provider)
    assert provider.method == "container-role"
    assert frozen.access_key == "AKIDPOD" and frozen.token == "tok"  # type: ignore[attr-defined]


@pytest.mark.parametrize("raw, url", [
    ("sts.us-east-1.amazonaws.com", "https://sts.us-east-1.amazonaws.com"),
    ("http://127.0.0.1:4566/", "http://127.0.0.1:4566"),
    ("localhost:9000", "https://localhost:9000"),
])
def test_normalize_url(raw: str, url: str) -> None:
    assert normalize_url(raw) == url


class _ShortLivedCreds(_JsonHandler):
    served = 0

    def do_GET(self) -> None:
        cls = type(self)
        cls.served += 1
        # Expires in 5 minutes: inside botocore's mandatory refresh window, so every use
        # fetches again.
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))
        body = orjson.dumps({"AccessKeyId": f"AKIDSHORT{cls.served}", "SecretAccessKey": "s",
                             "Token": "t", "Expiration": expiry})
        self.send_json(body)


def test_credentials_close_to_expiry_are_refreshed(aws_env: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _ShortLivedCreds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
                           f"http://127.0.0.1:{server.server_address[1]}/creds")
        provider = CredentialsProvider(LOG, region="us-east-1")

        async def twice() -> tuple[str, str]:
            first = await provider.frozen()
            second = await provider.frozen()
            return first.access_key, second.access_key

        first, second = asyncio.run(twice())
        assert first.startswith("AKIDSHORT") and second.startswith("AKIDSHORT")
        assert first != second
        assert _ShortLivedCreds.served >= 2
    finally:
        server.shutdown()
        server.server_close()
