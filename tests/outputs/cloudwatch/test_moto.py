"""cloudwatch_logs against moto's server (through the fault proxy), read back with
GetLogEvents. moto does not enforce the request limits, so every request the proxy saw is
checked against them here."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from rillet.engine.chunk import Batch
from rillet.engine.plugin import Partial, Status
from rillet.outputs.cloudwatch_logs import CloudWatchLogs
from tests.engine.harness import make_pipeline, running, wait_for
from tests.engine.plugins import STATE, Feed
from tests.outputs.cloudwatch.test_encode import check_request
from tests.peers.fault_proxy import FaultProxy, Rule
from tests.peers.moto_server import MotoServer, read_log_events
from tests.plugin_kit import flush_all, make_chunk, make_plugin

NOW = time.time_ns()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make(proxy: FaultProxy, **settings: str) -> CloudWatchLogs:
    return make_plugin(CloudWatchLogs, region="us-east-1", endpoint=proxy.url, **settings)


def messages(moto: MotoServer, group: str, stream: str) -> list[str]:
    return [e["message"] for e in read_log_events(moto.client("logs"), group, stream)]


def puts(proxy: FaultProxy) -> list[list[dict[str, object]]]:
    """Every PutLogEvents request that reached moto, checked against the API limits."""
    return [check_request(s.body) for s in proxy.requests
            if s.operation == "PutLogEvents" and s.action == "forward" and s.status == 200]


def test_round_trip_creates_group_with_settings(aws_env: None, moto_server: MotoServer,
                                                fault_proxy: FaultProxy) -> None:
    group = unique("/rillet/rt")
    plugin = make(fault_proxy, log_group_name=group, log_stream_prefix="fluentbit-",
                  auto_create_group="on", log_retention_days="7",
                  log_group_class="infrequent_access", new_log_group_tags="team=logs,env=ci")
    bodies: list[Any] = [b'{"log":"one","stream":"stdout"}', {"log": "tw\u00f6", "n": 2}]
    (result,) = flush_all(plugin, make_chunk(bodies, [NOW, NOW + 1_000_000], tag="kube.a"))
    assert result is Status.OK
    assert messages(moto_server, group, "fluentbit-kube.a") == [
        '{"log":"one","stream":"stdout"}', '{"log":"tw\u00f6","n":2}']
    logs = moto_server.client("logs")
    (desc,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert desc["retentionInDays"] == 7
    assert desc.get("logGroupClass", "INFREQUENT_ACCESS") == "INFREQUENT_ACCESS"
    assert logs.list_tags_for_resource(resourceArn=desc["arn"].rstrip(":*"))["tags"] == {
        "team": "logs", "env": "ci"}
    create = next(s for s in fault_proxy.requests if s.operation == "CreateLogGroup")
    assert orjson.loads(create.body)["logGroupClass"] == "INFREQUENT_ACCESS"
    assert plugin.counters["cloudwatch_groups_created"] == 1
    assert plugin.counters["cloudwatch_streams_created"] == 1
    assert [s.operation for s in fault_proxy.requests].count("PutRetentionPolicy") == 1


def test_existing_group_keeps_its_retention(aws_env: None, moto_server: MotoServer,
                                            fault_proxy: FaultProxy) -> None:
    group = unique("existing")
    moto_server.client("logs").create_log_group(logGroupName=group)
    plugin = make(fault_proxy, log_group_name=group, log_stream_name="s",
                  auto_create_group="true", log_retention_days="30")
    assert flush_all(plugin, make_chunk([{"a": 1}], [NOW])) == [Status.OK]
    assert fault_proxy.count("PutRetentionPolicy") == 0
    assert fault_proxy.count("CreateLogGroup") == 0
    assert messages(moto_server, group, "s") == ['{"a":1}']


def test_log_key_and_log_format_header(aws_env: None, moto_server: MotoServer,
                                       fault_proxy: FaultProxy) -> None:
    group = unique("logkey")
    plugin = make(fault_proxy, log_group_name=group, log_stream_name="s",
                  auto_create_group="true", log_key="log", log_format="json/emf")
    chunk = make_chunk([{"log": "raw text"}, {"log": {"k": [1]}}, {"nolog": 1}, {"log": ""}],
                       [NOW] * 4)
    (result,) = flush_all(plugin, chunk)
    assert isinstance(result, Partial)
    assert sorted((s[0], s[1], s[2]) for s in result.segments) == [
        (2, 3, Status.ERROR), (3, 4, Status.ERROR)]
    assert messages(moto_server, group, "s") == ["raw text", '{"k":[1]}']
    put = next(s for s in fault_proxy.requests if s.operation == "PutLogEvents")
    assert put.headers["x-amzn-logs-format"] == "json/emf"


def test_missing_group_without_auto_create_is_retried_not_dropped(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy,
        caplog: pytest.LogCaptureFixture) -> None:
    group = unique("nogroup")
    plugin = make(fault_proxy, log_group_name=group, log_stream_prefix="p-")
    (result,) = flush_all(plugin, make_chunk([{"a": 1}, {"a": 2}], [NOW] * 2))
    assert isinstance(result, Partial)
    assert [(s[0], s[1], s[2]) for s in result.segments] == [(0, 2, Status.RETRY)]
    assert "auto_create_group is off" in caplog.text
    # Once the group exists, the same records go through.
    moto_server.client("logs").create_log_group(logGroupName=group)
    assert flush_all(plugin, make_chunk([{"a": 1}], [NOW])) == [Status.OK]


def test_auto_create_stream_off_uses_existing_streams_only(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    group = unique("nostream")
    logs = moto_server.client("logs")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="there")
    ok = make(fault_proxy, log_group_name=group, log_stream_name="there",
              auto_create_stream="false")
    assert flush_all(ok, make_chunk([{"a": 1}], [NOW])) == [Status.OK]
    missing = make(fault_proxy, log_group_name=group, log_stream_name="absent",
                   auto_create_stream="false")
    (result,) = flush_all(missing, make_chunk([{"a": 1}], [NOW]))
    assert isinstance(result, Partial)
    assert [(s[0], s[1], s[2]) for s in result.segments] == [(0, 1, Status.RETRY)]
    assert fault_proxy.count("CreateLogStream") == 0
    assert messages(moto_server, group, "there") == ['{"a":1}']


def test_stream_and_group_deleted_between_calls_are_recreated(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    group = unique("deleted")
    logs = moto_server.client("logs")
    plugin = make(fault_proxy, log_group_name=group, log_stream_prefix="p-",
                  auto_create_group="true")
    fault_proxy.add(Rule("forward", "PutLogEvents", limit=1,
                         before=lambda _: logs.delete_log_stream(logGroupName=group,
                                                                 logStreamName="p-t")))
    first = make_chunk([{"n": 1}, {"n": 2}], [NOW] * 2, tag="t")
    assert flush_all(plugin, first) == [Status.OK]
    assert messages(moto_server, group, "p-t") == ['{"n":1}', '{"n":2}']
    assert plugin.counters["cloudwatch_recreated"] == 1
    # Now the whole group disappears mid-run.
    fault_proxy.add(Rule("forward", "PutLogEvents", limit=1,
                         before=lambda _: logs.delete_log_group(logGroupName=group)))
    second = make_chunk([{"n": 3}], [NOW], tag="t")
    assert flush_all(plugin, second) == [Status.OK]
    assert messages(moto_server, group, "p-t") == ['{"n":3}']
    assert plugin.counters["cloudwatch_recreated"] == 2
    assert plugin.counters["cloudwatch_groups_created"] == 2


def test_role_arn_requests_signed_with_assumed_role(aws_env: None, moto_server: MotoServer,
                                                    fault_proxy: FaultProxy,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    group = unique("role")
    plugin = make(fault_proxy, log_group_name=group, log_stream_prefix="p-",
                  auto_create_group="true", role_arn="arn:aws:iam::123456789012:role/cw",
                  external_id="x1", sts_endpoint=fault_proxy.url)
    assert flush_all(plugin, make_chunk([{"a": 1}], [NOW])) == [Status.OK]
    assume = [s for s in fault_proxy.requests if s.operation == "AssumeRole"]
    assert len(assume) == 1 and assume[0].key_id == "AKIDTESTTESTTEST"
    put = next(s for s in fault_proxy.requests if s.operation == "PutLogEvents")
    assert put.key_id.startswith("ASIA")
    assert "supplied by provider: assume-role arn:aws:iam::123456789012:role/cw" in caplog.text


def test_irsa_web_identity_end_to_end(aws_env: None, moto_server: MotoServer,
                                     fault_proxy: FaultProxy, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.e30.sig")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/fluentbit")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", fault_proxy.url)
    group = unique("irsa")
    plugin = make(fault_proxy, log_group_name=group, log_stream_prefix="p-",
                  auto_create_group="true")
    assert flush_all(plugin, make_chunk([{"a": 1}], [NOW])) == [Status.OK]
    assert fault_proxy.count("AssumeRoleWithWebIdentity") == 1
    put = next(s for s in fault_proxy.requests if s.operation == "PutLogEvents")
    assert put.key_id.startswith("ASIA")
    assert "supplied by provider: assume-role-with-web-identity" in caplog.text
    assert messages(moto_server, group, "p-dummy.0") == ['{"a":1}']


def test_permanent_error_drops_with_reason(aws_env: None, moto_server: MotoServer,
                                           fault_proxy: FaultProxy) -> None:
    group = unique("perm")
    fault_proxy.add(Rule("respond", "PutLogEvents", status=400,
                         body=b'{"__type":"AccessDeniedException","message":"no way"}'))
    plugin = make(fault_proxy, log_group_name=group, log_stream_prefix="p-",
                  auto_create_group="true")
    (result,) = flush_all(plugin, make_chunk([{"a": 1}, {"a": 2}], [NOW] * 2))
    assert isinstance(result, Partial)
    assert result.segments == [(0, 2, Status.ERROR, "AccessDeniedException: no way")]
    assert fault_proxy.count("PutLogEvents") == 1  # not retried
    assert plugin.counters["aws_permanent_errors"] == 1


def test_rejected_events_are_counted_and_reported(aws_env: None, moto_server: MotoServer,
                                                  fault_proxy: FaultProxy) -> None:
    group = unique("rejected")
    plugin = make(fault_proxy, log_group_name=group, log_stream_name="s",
                  auto_create_group="true")
    future = NOW + 3 * 3600 * 1_000_000_000  # CloudWatch refuses events > 2 h ahead
    (result,) = flush_all(plugin, make_chunk([{"n": 0}, {"n": 1}, {"n": 2}],
                                             [future, NOW, NOW]))
    assert isinstance(result, Partial)
    assert [(s[0], s[1], s[2]) for s in result.segments] == [(0, 1, Status.ERROR)]
    assert "more than 2 hours in the future" in result.segments[0][3]
    assert plugin.counters["cloudwatch_rejected_events"] == 1
    assert messages(moto_server, group, "s") == ['{"n":1}', '{"n":2}']


def test_rejected_index_semantics_follow_the_api_reference(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    """tooOldLogEventEndIndex is exclusive, tooNewLogEventStartIndex inclusive (API reference;
    moto reports the last too-old index instead), indexes into the time-sorted batch."""
    group = unique("rejidx")
    fault_proxy.add(Rule("respond", "PutLogEvents", body=orjson.dumps(
        {"rejectedLogEventsInfo": {"tooOldLogEventEndIndex": 2,
                                   "tooNewLogEventStartIndex": 4}})))
    plugin = make(fault_proxy, log_group_name=group, log_stream_name="s",
                  auto_create_group="true")
    # Records 4,3,2,1,0 in time order: sorted batch index k is record 4 - k.
    times = [NOW + (4 - i) * 1_000_000 for i in range(5)]
    (result,) = flush_all(plugin, make_chunk([{"i": i} for i in range(5)], times))
    assert isinstance(result, Partial)
    assert sorted((s[0], s[1], s[3]) for s in result.segments) == [
        (0, 1, "rejected by CloudWatch Logs: more than 2 hours in the future"),
        (3, 5, "rejected by CloudWatch Logs: too old")]
    assert plugin.counters["cloudwatch_rejected_events"] == 3


def test_large_chunk_split_within_limits(aws_env: None, moto_server: MotoServer,
                                         fault_proxy: FaultProxy) -> None:
    group = unique("split")
    plugin = make(fault_proxy, log_group_name=group, log_stream_name="s",
                  auto_create_group="true")
    day_ns = 24 * 3600 * 1_000_000_000
    n = 12_000
    # Out of order, spanning more than a day (within the 14 days CloudWatch accepts), with a
    # few big records that push the byte limit.
    times = [NOW - (i % 3) * day_ns // 2 - (n - i) * 1_000_000 for i in range(n)]
    bodies: list[Any] = [{"i": i, "pad": "x" * (300_000 if i % 2000 == 7 else 10)}
                         for i in range(n)]
    (result,) = flush_all(plugin, make_chunk(bodies, times))
    assert result is Status.OK
    requests = puts(fault_proxy)
    assert len(requests) >= 3
    assert sum(len(r) for r in requests) == n
    got = sorted(orjson.loads(m)["i"] for m in messages(moto_server, group, "s"))
    assert got == list(range(n))


def test_templates_route_records_to_streams(aws_env: None, moto_server: MotoServer,
                                            fault_proxy: FaultProxy) -> None:
    group = unique("tpl")
    plugin = make(fault_proxy, log_group_name=group, auto_create_group="true",
                  log_stream_prefix="other-",
                  log_stream_template="$kubernetes['namespace_name'].$kubernetes['pod_name']")
    bodies: list[Any] = [{"kubernetes": {"namespace_name": "a", "pod_name": "p1"}, "i": 0},
                         {"kubernetes": {"namespace_name": "b", "pod_name": "p2"}, "i": 1},
                         {"i": 2}]
    assert flush_all(plugin, make_chunk(bodies, [NOW] * 3, tag="kube")) == [Status.OK]
    assert len(messages(moto_server, group, "a.p1")) == 1
    assert len(messages(moto_server, group, "b.p2")) == 1
    assert messages(moto_server, group, "other-kube") == ['{"i":2}']


def _run_engine_with_faults(proxy: FaultProxy, group: str, n: int, batches: int,
                            workers: str = "2") -> dict[str, int]:
    feed = Feed()
    key = unique("feed")
    STATE[key] = feed
    pipeline = make_pipeline(
        service={"flush": 0.02, "scheduler.base": 0.01, "scheduler.cap": 0.05},
        inputs=[{"name": "test_feed", "id": key, "tag": "app"}],
        outputs=[{"name": "cloudwatch_logs", "match": "*", "region": "us-east-1",
                  "endpoint": proxy.url, "log_group_name": group, "log_stream_prefix": "x-",
                  "auto_create_group": "true", "retry_limit": "no_limits",
                  "workers": workers}])
    per = n // batches

    async def go() -> dict[str, int]:
        async with running(pipeline) as engine:
            for b in range(batches):
                ids = range(b * per, (b + 1) * per)
                feed.put(Batch("app", [NOW + i for i in ids],
                               [orjson.dumps({"id": i, "msg": "hello"}) for i in ids],
                               per * 30, ack=b))
                await asyncio.sleep(0.04)  # a few flush ticks: one chunk per batch
            await wait_for(lambda: len(feed.acks) == batches, timeout=40)
            counters = dict(engine.pipeline.metrics.counters("output", "cloudwatch_logs.0"))
        STATE.pop(key, None)
        return counters

    return asyncio.run(go())


def _assert_exactly_once(moto: MotoServer, group: str, n: int) -> None:
    ids = [orjson.loads(m)["id"] for m in messages(moto, group, "x-app")]
    assert len(ids) == n, f"{len(ids)} events for {n} records"
    assert sorted(ids) == list(range(n))


def test_throttling_half_the_calls_every_record_exactly_once(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    group = unique("throttle")
    fault_proxy.add(Rule("throttle", "PutLogEvents", ratio=0.5,
                         until=time.monotonic() + 3.0))
    counters = _run_engine_with_faults(fault_proxy, group, n=6000, batches=30)
    _assert_exactly_once(moto_server, group, 6000)
    assert fault_proxy.count("PutLogEvents", "throttle") >= 5
    assert counters["aws_throttled"] >= 5
    assert counters["dropped_records"] == 0
    assert counters["proc_records"] == 6000


def test_server_errors_and_dropped_connections_exactly_once(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    group = unique("faults")
    until = time.monotonic() + 3.0
    fault_proxy.add(Rule("error", "PutLogEvents", ratio=0.2, until=until))
    fault_proxy.add(Rule("drop", "PutLogEvents", ratio=0.25, until=until))
    fault_proxy.add(Rule("throttle", "CreateLogStream", limit=2))
    counters = _run_engine_with_faults(fault_proxy, group, n=4000, batches=20)
    _assert_exactly_once(moto_server, group, 4000)
    assert fault_proxy.count("PutLogEvents", "error") >= 1
    assert fault_proxy.count("PutLogEvents", "drop") >= 1
    assert counters["dropped_records"] == 0


def test_seed_output_section_with_endpoint_runs_unchanged(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy,
        tmp_path: Path) -> None:
    """The seed's [OUTPUT] (seed-pipeline.md §2) plus `endpoint`, in a real rillet process."""
    group = "fluentbit-cloudwatch"
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(f"""[SERVICE]
    Flush 0.2
    Grace 5

[INPUT]
    Name    dummy
    Tag     kube.var.log.containers.nginx_default_nginx-b90a.log
    Dummy   {{"log":"GET / 200","stream":"stdout"}}
    Rate    50
    Samples 20

[OUTPUT]
    Name cloudwatch
    Match   **
    region us-east-2
    log_group_name fluentbit-cloudwatch
    log_stream_prefix fluentbit-
    auto_create_group true
    endpoint {fault_proxy.url}
""")
    proc = subprocess.Popen([sys.executable, "-m", "rillet", "-c", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ})
    logs = moto_server.client("logs", region="us-east-2")
    stream = "fluentbit-kube.var.log.containers.nginx_default_nginx-b90a.log"
    deadline = time.monotonic() + 20
    got: list[dict[str, Any]] = []
    try:
        while time.monotonic() < deadline:
            try:
                got = read_log_events(logs, group, stream)
            except logs.exceptions.ResourceNotFoundException:
                got = []
            if len(got) >= 20:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert len(got) == 20
    assert orjson.loads(got[0]["message"]) == {"log": "GET / 200", "stream": "stdout"}
    assert "AWS credentials supplied by provider: env" in err.decode()
    signed = next(s for s in fault_proxy.requests if s.operation == "PutLogEvents")
    assert "/us-east-2/logs/aws4_request" in signed.headers["authorization"]
