"""Signed requests over pooled HTTP against moto through the fault proxy."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from rillet.aws.client import AwsClient, Response, resolve_endpoint
from rillet.aws.credentials import CredentialsProvider
from tests.peers.fault_proxy import FaultProxy, Rule

LOG = logging.getLogger("rillet.test.aws")


@pytest.mark.parametrize("region, url, partition", [
    ("us-east-2", "https://logs.us-east-2.amazonaws.com", "aws"),
    ("cn-north-1", "https://logs.cn-north-1.amazonaws.com.cn", "aws-cn"),
    ("us-gov-west-1", "https://logs.us-gov-west-1.amazonaws.com", "aws-us-gov"),
    ("us-iso-east-1", "https://logs.us-iso-east-1.c2s.ic.gov", "aws-iso"),
])
def test_endpoints_by_partition(region: str, url: str, partition: str) -> None:
    info = resolve_endpoint("logs", region)
    assert (info.url, info.partition) == (url, partition)
    assert info.target_prefix == "Logs_20140328" and info.signing_name == "logs"


def test_endpoint_override_forms() -> None:
    assert resolve_endpoint("logs", "us-east-1", "localhost:4566").url == "https://localhost:4566"
    assert resolve_endpoint("logs", "us-east-1", "http://127.0.0.1:1/").url == "http://127.0.0.1:1"
    assert resolve_endpoint("kinesis", "eu-west-1").target_prefix == "Kinesis_20131202"
    assert resolve_endpoint("firehose", "eu-west-1").target_prefix == "Firehose_20150804"


def test_sdk_endpoint_variables_apply_without_an_endpoint_option(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL, as every AWS SDK reads them; the
    plugin's own `endpoint` option still wins."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "http://127.0.0.1:4566")
    assert resolve_endpoint("logs", "us-east-2").url == "http://127.0.0.1:4566"
    assert resolve_endpoint("logs", "us-east-2", "http://127.0.0.1:1").url == "http://127.0.0.1:1"
    assert resolve_endpoint("kinesis", "us-east-2").url == "https://kinesis.us-east-2.amazonaws.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4567")
    assert resolve_endpoint("firehose", "us-east-2").url == "http://127.0.0.1:4567"


def client(url: str, auto_retry: bool = True) -> AwsClient:
    creds = CredentialsProvider(LOG, region="us-east-1")
    return AwsClient("logs", "us-east-1", creds, LOG, endpoint=url, auto_retry=auto_retry,
                     extra_user_agent="test/1")


def run(c: AwsClient, *calls: tuple[str, dict[str, object]]) -> list[Response]:
    async def go() -> list[Response]:
        await c.start()
        try:
            return [await c.call_json(op, orjson.dumps(body)) for op, body in calls]
        finally:
            await c.close()
    return asyncio.run(go())


def test_signed_json_call_and_error_parsing(aws_env: None, fault_proxy: FaultProxy) -> None:
    c = client(fault_proxy.url)
    created, dup, missing = run(
        c, ("CreateLogGroup", {"logGroupName": "client-test"}),
        ("CreateLogGroup", {"logGroupName": "client-test"}),
        ("PutLogEvents", {"logGroupName": "nope", "logStreamName": "x", "logEvents": []}))
    assert created.ok and created.status == 200 and created.request_id
    assert (dup.status, dup.error_code) == (400, "ResourceAlreadyExistsException")
    assert missing.error_code == "ResourceNotFoundException"
    seen = fault_proxy.requests[0]
    assert seen.operation == "CreateLogGroup" and seen.key_id == "AKIDTESTTESTTEST"
    assert seen.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST")
    assert "/us-east-1/logs/aws4_request" in seen.headers["authorization"]
    assert seen.headers["x-amz-target"] == "Logs_20140328.CreateLogGroup"
    assert seen.headers["content-type"] == "application/x-amz-json-1.1"
    assert seen.headers["user-agent"].endswith("aws-fluent-bit-plugin test/1")


def test_injected_errors_are_parsed(aws_env: None, fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Rule("throttle", "DescribeLogGroups", limit=1))
    fault_proxy.add(Rule("error", "DescribeLogGroups", limit=1, status=500,
                         error_code="InternalFailure"))
    throttled, failed, ok = run(client(fault_proxy.url), *[("DescribeLogGroups", {})] * 3)
    assert (throttled.status, throttled.error_code) == (400, "ThrottlingException")
    assert throttled.message == "Rate exceeded"
    assert (failed.status, failed.error_code) == (500, "InternalFailure")
    assert ok.ok


def test_dropped_connection_is_retried_once_when_auto_retry(aws_env: None,
                                                            fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Rule("drop", "DescribeLogGroups", limit=1))
    (resp,) = run(client(fault_proxy.url), ("DescribeLogGroups", {}))
    assert resp.ok
    assert fault_proxy.count("DescribeLogGroups") == 2


def test_dropped_connection_without_auto_retry(aws_env: None, fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Rule("drop", "DescribeLogGroups"))
    (resp,) = run(client(fault_proxy.url, auto_retry=False), ("DescribeLogGroups", {}))
    assert resp.status == 0 and resp.error_code == "NetworkError"
    assert fault_proxy.count("DescribeLogGroups") == 1


def test_connection_refused(aws_env: None) -> None:
    from tests.peers.moto_server import free_port
    (resp,) = run(client(f"http://127.0.0.1:{free_port()}"), ("DescribeLogGroups", {}))
    assert resp.status == 0 and resp.error_code == "NetworkError"


def test_no_credentials_is_a_response_not_a_crash(aws_env: None,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  fault_proxy: FaultProxy) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    (resp,) = run(client(fault_proxy.url), ("DescribeLogGroups", {}))
    assert resp.status == 0 and resp.error_code == "CredentialsError"
    assert fault_proxy.requests == []


def test_connection_dropped_after_the_call_happened(aws_env: None,
                                                    fault_proxy: FaultProxy) -> None:
    """The answer is lost but the call went through: the automatic retry sees its effect
    (at-least-once, which is why outputs treat 'already exists' as success)."""
    fault_proxy.add(Rule("drop_after", "CreateLogGroup", limit=1))
    (resp,) = run(client(fault_proxy.url), ("CreateLogGroup", {"logGroupName": "dropped-after"}))
    assert resp.error_code == "ResourceAlreadyExistsException"
    assert fault_proxy.count("CreateLogGroup") == 2
