"""s3 and the shared AWS options: role_arn / external_id / sts_endpoint, profile,
auto_retry_requests (against moto through the fault proxy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.outputs.s3.helpers import lines, make, new_bucket, only, records, run
from tests.peers.fault_proxy import FaultProxy, Rule
from tests.peers.moto_server import MotoServer

PUT = {"use_put_object": "on", "total_file_size": "1M", "s3_key_format": "/c/$UUID"}


def uploads(proxy: FaultProxy) -> list[str]:
    """Signing key ids of the S3 requests that carried records."""
    return [s.key_id for s in proxy.requests if s.operation == "" and s.body]


def test_role_arn_signs_with_assumed_role(aws_env: None, moto_server: MotoServer,
                                          fault_proxy: FaultProxy, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, role_arn="arn:aws:iam::123456789012:role/s3",
                  external_id="ext-1", sts_endpoint=fault_proxy.url, **PUT)
    run(plugin, [("t", records(3))])
    assume = [s for s in fault_proxy.requests if s.operation == "AssumeRole"]
    assert len(assume) == 1 and assume[0].key_id == "AKIDTESTTESTTEST"
    assert b"ExternalId=ext-1" in assume[0].body
    (key_id,) = uploads(fault_proxy)
    assert key_id.startswith("ASIA")
    assert len(lines(only(moto_server, bucket)["body"])) == 3
    assert "assume-role arn:aws:iam::123456789012:role/s3" in caplog.text


def test_profile_credentials(aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy,
                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("[archive]\naws_access_key_id = AKIDPROFILEARCHIVE\n"
                     "aws_secret_access_key = secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    bucket = new_bucket(moto_server)
    run(make(fault_proxy.url, tmp_path / "store", bucket, profile="archive", **PUT),
        [("t", records(2))])
    assert uploads(fault_proxy) == ["AKIDPROFILEARCHIVE"]


@pytest.mark.parametrize(("auto_retry", "transient"), [("on", 0), ("off", 1)])
def test_auto_retry_requests(aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy,
                             tmp_path: Path, auto_retry: str, transient: int) -> None:
    """A dropped connection is retried at once with auto_retry_requests on (not even seen by
    the delivery policy); off, the policy's own retry takes it. aiohttp itself resends an
    idempotent request (PUT) once on a dropped connection, so two drops are injected."""
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, auto_retry_requests=auto_retry, **PUT)
    fault_proxy.add(Rule("drop", limit=2))
    run(plugin, [("t", records(4))])
    assert len(lines(only(moto_server, bucket)["body"])) == 4
    assert plugin.counters["aws_transient_errors"] == transient
