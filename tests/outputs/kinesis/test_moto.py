"""kinesis_streams / kinesis_firehose against moto's server (through the fault proxy): Kinesis
read back with GetShardIterator + GetRecords, Firehose through the S3 objects moto's Firehose
writes. moto checks the PutRecords limits; PutRecordBatch limits are checked here on every
request the proxy saw."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import orjson
import pytest

from rillet.aws.policy import AdaptiveConcurrency
from rillet.engine.chunk import Batch
from rillet.engine.plugin import Partial, Status
from rillet.outputs import kpl
from rillet.outputs.compress import decompress
from rillet.outputs.kinesis_firehose import KinesisFirehose
from rillet.outputs.kinesis_streams import Kinesis, KinesisStreams
from tests.engine.harness import make_pipeline, running, wait_for
from tests.engine.plugins import STATE, Feed
from tests.peers.fault_proxy import FaultProxy, Rule
from tests.peers.moto_server import MotoServer
from tests.plugin_kit import flush_all, make_chunk, make_plugin

NOW = time.time_ns()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_stream(moto: MotoServer, shards: int = 1) -> str:
    name = unique("ks")
    moto.client("kinesis").create_stream(StreamName=name, ShardCount=shards)
    return name


def read_stream(moto: MotoServer, name: str) -> list[tuple[str, bytes]]:
    """Every (partition key, data) of a stream, shard by shard, in sequence order."""
    kinesis = moto.client("kinesis")
    out: list[tuple[str, bytes]] = []
    shards = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    for shard in shards:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            page = kinesis.get_records(ShardIterator=it, Limit=10000)
            out.extend((r["PartitionKey"], r["Data"]) for r in page["Records"])
            if not page["Records"]:
                break
            it = page.get("NextShardIterator")
    return out


def user_records(records: list[tuple[str, bytes]],
                 compression: str | None = None) -> list[tuple[str, bytes]]:
    """KPL aggregates opened and payloads decompressed."""
    out: list[tuple[str, bytes]] = []
    for key, data in records:
        for k, d in kpl.deaggregate(data):
            out.append((k or key, decompress(compression, d) if compression else d))
    return out


def new_delivery_stream(moto: MotoServer) -> tuple[str, str]:
    bucket = unique("fh-bucket")
    moto.client("s3").create_bucket(Bucket=bucket)
    name = unique("fh")
    moto.client("firehose").create_delivery_stream(
        DeliveryStreamName=name,
        S3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/fh",
                                    "BucketARN": f"arn:aws:s3:::{bucket}"})
    return name, bucket


def s3_objects(moto: MotoServer, bucket: str) -> list[bytes]:
    s3 = moto.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return [s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys]


def requests(proxy: FaultProxy, operation: str) -> list[list[dict[str, Any]]]:
    """The records of every request that reached moto, checked against the API limits."""
    out = []
    for seen in proxy.requests:
        if seen.operation != operation or seen.status != 200:
            continue
        entries = orjson.loads(seen.body)["Records"]
        sizes = [len(base64.b64decode(e["Data"])) + len(e.get("PartitionKey", "").encode())
                 for e in entries]
        assert len(entries) <= 500
        if operation == "PutRecords":
            assert sum(sizes) <= 5 * 1024 * 1024 and max(sizes) <= 1024 * 1024
        else:
            assert sum(sizes) <= 4 * 1024 * 1024 and max(sizes) <= 1_024_000
        out.append(entries)
    return out


def one_at_a_time(plugin: KinesisStreams) -> KinesisStreams:
    """moto's Kinesis numbers a shard's records without a lock ("not safe for concurrency"):
    two PutRecords at once can overwrite each other's records there. Tests that would send
    requests concurrently (random keys) keep one in flight."""
    plugin.policy.limiter = AdaptiveConcurrency(1, 1)
    return plugin


def pod_records(n: int, pods: tuple[str, ...] = ("pod-a", "pod-b", "pod-c"),
                pad: int = 0) -> list[Any]:
    return [{"seq": i, "log": "x" * pad, "kubernetes": {"pod_name": pods[i % len(pods)]}}
            for i in range(n)]


# --- Kinesis ------------------------------------------------------------------------------------


def test_kinesis_round_trip_nested_partition_key_and_time_key(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server, shards=2)
    plugin = make_plugin(KinesisStreams, region="us-east-1", endpoint=fault_proxy.url,
                         stream=stream, partition_key="kubernetes->pod_name",
                         time_key="@ts", time_key_format="%Y-%m-%dT%H:%M:%S.%3NZ")
    bodies: list[Any] = [{"log": "one", "kubernetes": {"pod_name": "web-1"}},
                         b'{"log":"two","kubernetes":{"pod_name":"web-2"}}',
                         {"log": "no pod"}]
    (result,) = flush_all(plugin, make_chunk(bodies, [1_700_000_000_250_000_000] * 3))
    assert result is Status.OK
    got = read_stream(moto_server, stream)
    assert len(got) == 3
    by_log = {orjson.loads(d)["log"]: (k, d) for k, d in got}
    assert by_log["one"][0] == "web-1" and by_log["two"][0] == "web-2"
    assert len(by_log["no pod"][0]) == 16  # random key
    assert by_log["two"][1] == (b'{"log":"two","kubernetes":{"pod_name":"web-2"},'
                                b'"@ts":"2023-11-14T22:13:20.250Z"}\n')
    assert plugin.counters["kinesis_random_partition_keys"] == 1
    assert requests(fault_proxy, "PutRecords")


def test_kinesis_kpl_aggregation_with_zlib_round_trip(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server)
    plugin = make_plugin(Kinesis, region="us-east-1", endpoint=fault_proxy.url, stream=stream,
                         aggregation="true", compression="zlib", append_newline="true")
    bodies = [orjson.dumps(r) for r in pod_records(1200, pad=50)]
    (result,) = flush_all(plugin, make_chunk(list(bodies), [NOW] * 1200))
    assert result is Status.OK
    raw = read_stream(moto_server, stream)
    assert 1 <= len(raw) < 10  # aggregated: few Kinesis records
    got = user_records(raw, "zlib")
    assert [d for _, d in got] == [b + b"\n" for b in bodies]


def test_kinesis_simple_aggregation_gzip_and_data_keys(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server)
    plugin = make_plugin(KinesisStreams, region="us-east-1", endpoint=fault_proxy.url,
                         stream=stream, simple_aggregation="on", compression="gzip",
                         data_keys="seq,kubernetes", replace_dots="_")
    bodies = [{"seq": i, "drop": 1, "kubernetes": {"pod.name": "p"}} for i in range(300)]
    (result,) = flush_all(plugin, make_chunk(list(bodies), [NOW] * 300))
    assert result is Status.OK
    raw = read_stream(moto_server, stream)
    assert len(raw) == 1
    lines = decompress("gzip", raw[0][1]).splitlines()
    assert [orjson.loads(x) for x in lines] == [{"seq": i, "kubernetes": {"pod_name": "p"}}
                                                for i in range(300)]


def test_kinesis_log_key_and_limits_split_requests(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server, shards=2)
    plugin = one_at_a_time(make_plugin(Kinesis, region="us-east-1", endpoint=fault_proxy.url,
                                       stream=stream, log_key="log"))
    n = 700
    bodies = [{"log": f"{i:05d}" + "z" * 9000} for i in range(n)]  # 6.3 MB: > 5 MiB, > 500
    (result,) = flush_all(plugin, make_chunk(list(bodies), [NOW] * n))
    assert result is Status.OK
    reqs = requests(fault_proxy, "PutRecords")
    assert len(reqs) >= 2 and sum(map(len, reqs)) == n
    # Random keys: no order to keep between the requests.
    got = sorted(d for _, d in read_stream(moto_server, stream))
    assert got == [b["log"].encode() for b in bodies]


def test_kinesis_zstd_records(aws_env: None, moto_server: MotoServer,
                              fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server)
    plugin = make_plugin(KinesisStreams, region="us-east-1", endpoint=fault_proxy.url,
                         stream=stream, compression="zstd")
    (result,) = flush_all(plugin, make_chunk([{"k": "v" * 100}], [NOW]))
    assert result is Status.OK
    assert user_records(read_stream(moto_server, stream), "zstd")[0][1] == \
        b'{"k":"' + b"v" * 100 + b'"}\n'


def test_kinesis_oversize_record_is_dropped_with_a_reason(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server)
    plugin = make_plugin(KinesisStreams, region="us-east-1", endpoint=fault_proxy.url,
                         stream=stream)
    bodies: list[Any] = [{"n": 0}, {"n": 1, "big": "b" * (1024 * 1024)}, {"n": 2}]
    (result,) = flush_all(plugin, make_chunk(bodies, [NOW] * 3))
    assert isinstance(result, Partial)
    ((start, stop, status, reason),) = result.segments
    assert (start, stop, status) == (1, 2, Status.ERROR)
    assert "larger than the 1048576 bytes Kinesis accepts per record" in reason
    assert plugin.counters["kinesis_oversize_records"] == 1
    assert [orjson.loads(d)["n"] for _, d in read_stream(moto_server, stream)] == [0, 2]


def test_kinesis_partial_failures_resend_only_the_failed_records(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server, shards=2)
    fault_proxy.add(Rule("fail_records", "PutRecords", limit=2,
                         fail_record=lambda pos, entry: pos % 3 == 0))
    plugin = one_at_a_time(make_plugin(KinesisStreams, region="us-east-1",
                                       endpoint=fault_proxy.url, stream=stream))
    n = 800
    (result,) = flush_all(plugin, make_chunk([{"seq": i} for i in range(n)], [NOW] * n))
    assert result is Status.OK
    seqs = [orjson.loads(d)["seq"] for _, d in read_stream(moto_server, stream)]
    assert sorted(seqs) == list(range(n))  # every record exactly once
    assert plugin.counters["kinesis_failed_records"] == 167 + 100
    assert plugin.counters["aws_throttled"] >= 1
    # The resends carried only the failed records.
    sent = sum(len(r) for r in requests(fault_proxy, "PutRecords"))
    assert sent == n + 267


def test_kinesis_failed_record_is_not_overtaken_by_a_later_one_with_its_key(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server)
    # The first request fails pod-a's records from position 300 on; pod-a's later records
    # (in the second and third requests) must wait for them.
    fault_proxy.add(Rule("fail_records", "PutRecords", limit=1,
                         fail_record=lambda pos, e: e["PartitionKey"] == "pod-a" and pos >= 300))
    plugin = make_plugin(KinesisStreams, region="us-east-1", endpoint=fault_proxy.url,
                         stream=stream, partition_key="kubernetes->pod_name")
    n = 1200
    bodies = pod_records(n)
    (result,) = flush_all(plugin, make_chunk(list(bodies), [NOW] * n))
    assert result is Status.OK
    got = read_stream(moto_server, stream)
    assert len(got) == n
    for pod in ("pod-a", "pod-b", "pod-c"):
        seqs = [orjson.loads(d)["seq"] for k, d in got if k == pod]
        assert seqs == [b["seq"] for b in bodies if b["kubernetes"]["pod_name"] == pod]
    # pod-b and pod-c went on while pod-a waited.
    reqs = requests(fault_proxy, "PutRecords")
    assert any(all(e["PartitionKey"] != "pod-a" for e in r) for r in reqs)


def test_kinesis_key_going_back_to_the_engine_takes_its_later_records_along(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server)
    plugin = make_plugin(KinesisStreams, region="us-east-1", endpoint=fault_proxy.url,
                         stream=stream, partition_key="kubernetes->pod_name")
    plugin.policy.base_delay = plugin.policy.max_delay = 0.001
    # The first request (pod-a only) fails through all the policy's tries.
    fault_proxy.add(Rule("error", "PutRecords", limit=plugin.policy.attempts))
    bodies = pod_records(500, ("pod-a",)) + [
        {"seq": 500 + i, "kubernetes": {"pod_name": ("pod-a", "pod-b")[i % 2]}}
        for i in range(500)]
    (result,) = flush_all(plugin, make_chunk(list(bodies), [NOW] * 1000))
    assert isinstance(result, Partial)
    retry = {i for s, e, st, _ in result.segments if st is Status.RETRY for i in range(s, e)}
    pod_a = {b["seq"] for b in bodies if b["kubernetes"]["pod_name"] == "pod-a"}
    assert retry == pod_a
    delivered = [orjson.loads(d)["seq"] for _, d in read_stream(moto_server, stream)]
    assert delivered == [b["seq"] for b in bodies if b["kubernetes"]["pod_name"] == "pod-b"]


def test_kinesis_records_still_failing_go_back_to_the_engine(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server)
    fault_proxy.add(Rule("fail_records", "PutRecords",
                         fail_record=lambda pos, e: e["PartitionKey"] == "pod-a"))
    plugin = make_plugin(KinesisStreams, region="us-east-1", endpoint=fault_proxy.url,
                         stream=stream, partition_key="kubernetes->pod_name")
    plugin.sender.round_delay = lambda rnd: 0.01
    bodies = pod_records(6)
    (result,) = flush_all(plugin, make_chunk(list(bodies), [NOW] * 6))
    assert isinstance(result, Partial)
    retry = sorted(i for s, e, st, _ in result.segments if st is Status.RETRY
                   for i in range(s, e))
    assert retry == [0, 3]
    assert all("ProvisionedThroughputExceededException" in r for *_, r in result.segments)
    assert sorted(orjson.loads(d)["seq"] for _, d in read_stream(moto_server, stream)) == [
        1, 2, 4, 5]


def test_kinesis_missing_stream_keeps_records_for_a_retry(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    plugin = make_plugin(KinesisStreams, region="us-east-1", endpoint=fault_proxy.url,
                         stream=unique("absent"))
    (result,) = flush_all(plugin, make_chunk([{"a": 1}], [NOW]))
    assert isinstance(result, Partial)
    assert [(s, e, st) for s, e, st, _ in result.segments] == [(0, 1, Status.RETRY)]
    assert "ResourceNotFoundException" in result.segments[0][3]


def test_kinesis_through_the_engine_with_throttling(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    stream = new_stream(moto_server)
    fault_proxy.add(Rule("throttle", "PutRecords", ratio=0.4,
                         error_code="ProvisionedThroughputExceededException"))
    fault_proxy.add(Rule("fail_records", "PutRecords", ratio=0.5,
                         fail_record=lambda pos, e: pos % 2 == 1))
    feed = Feed()
    key = unique("feed")
    STATE[key] = feed
    pipeline = make_pipeline(
        service={"flush": 0.02},
        inputs=[{"name": "test_feed", "id": key, "tag": "kube.app"}],
        outputs=[{"name": "kinesis", "match": "*", "region": "us-east-1",
                  "endpoint": fault_proxy.url, "stream": stream,
                  "partition_key": "kubernetes->pod_name", "retry_limit": "no_limits"}])
    n, batches = 900, 6
    per = n // batches
    bodies = pod_records(n)

    async def go() -> dict[str, int]:
        async with running(pipeline) as engine:
            for b in range(batches):
                part = bodies[b * per:(b + 1) * per]
                feed.put(Batch("kube.app", [NOW] * per, [orjson.dumps(x) for x in part],
                               per * 60, ack=b))
                await asyncio.sleep(0.04)
            await wait_for(lambda: len(feed.acks) == batches, timeout=40)
            return dict(engine.pipeline.metrics.counters("output", "kinesis.0"))

    try:
        counters = asyncio.run(go())
    finally:
        STATE.pop(key, None)
    assert all(complete for _, complete in feed.acks)
    assert counters["dropped_records"] == 0
    seqs = sorted(orjson.loads(d)["seq"] for _, d in read_stream(moto_server, stream))
    assert seqs == list(range(n))
    assert counters["aws_throttled"] > 0 and counters["kinesis_failed_records"] > 0


# --- Firehose -----------------------------------------------------------------------------------


def test_firehose_round_trip_to_s3(aws_env: None, moto_server: MotoServer,
                                   fault_proxy: FaultProxy) -> None:
    name, bucket = new_delivery_stream(moto_server)
    plugin = make_plugin(KinesisFirehose, region="us-east-1", endpoint=fault_proxy.url,
                         delivery_stream=name, time_key="time",
                         time_key_format="%Y-%m-%dT%H:%M:%S.%9N")
    bodies: list[Any] = [b'{"log":"a"}', {"log": "b\u00e9", "n": [1, 2]}]
    (result,) = flush_all(plugin, make_chunk(bodies, [1_700_000_000_000_000_042] * 2))
    assert result is Status.OK
    (obj,) = s3_objects(moto_server, bucket)
    assert obj == ('{"log":"a","time":"2023-11-14T22:13:20.000000042"}\n'
                   '{"log":"b\u00e9","n":[1,2],"time":"2023-11-14T22:13:20.000000042"}\n'
                   ).encode()


def test_firehose_partial_failures_every_record_exactly_once(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    name, bucket = new_delivery_stream(moto_server)
    fault_proxy.add(Rule("fail_records", "PutRecordBatch", limit=3,
                         fail_record=lambda pos, e: pos % 4 == 1))
    plugin = make_plugin(KinesisFirehose, region="us-east-1", endpoint=fault_proxy.url,
                         delivery_stream=name, workers="2")
    n = 1100
    (result,) = flush_all(plugin, make_chunk([{"seq": i} for i in range(n)], [NOW] * n))
    assert result is Status.OK
    lines = b"".join(s3_objects(moto_server, bucket)).splitlines()
    assert sorted(orjson.loads(x)["seq"] for x in lines) == list(range(n))
    assert plugin.counters["firehose_failed_records"] > 0
    requests(fault_proxy, "PutRecordBatch")


def test_firehose_simple_aggregation_gzip_objects_decompress(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy) -> None:
    name, bucket = new_delivery_stream(moto_server)
    plugin = make_plugin(KinesisFirehose, region="us-east-1", endpoint=fault_proxy.url,
                         delivery_stream=name, simple_aggregation="true",
                         compression="gzip", log_key="log")
    n = 2000
    bodies = [{"log": f"line {i} " + "q" * 900} for i in range(n)]  # ~1.8 MB: 2 records
    (result,) = flush_all(plugin, make_chunk(list(bodies), [NOW] * n))
    assert result is Status.OK
    (put,) = requests(fault_proxy, "PutRecordBatch")
    assert len(put) >= 2
    (obj,) = s3_objects(moto_server, bucket)
    assert decompress("gzip", obj).splitlines() == [b["log"].encode() for b in bodies]


@pytest.mark.parametrize("code", ["ServiceUnavailableException", "AccessDeniedException"])
def test_firehose_whole_request_errors(aws_env: None, moto_server: MotoServer,
                                       fault_proxy: FaultProxy, code: str) -> None:
    name, _ = new_delivery_stream(moto_server)
    fault_proxy.add(Rule("error", "PutRecordBatch", status=400 if "Denied" in code else 503,
                         error_code=code))
    plugin = make_plugin(KinesisFirehose, region="us-east-1", endpoint=fault_proxy.url,
                         delivery_stream=name)
    plugin.policy.base_delay = plugin.policy.max_delay = 0.001
    (result,) = flush_all(plugin, make_chunk([{"a": 1}, {"a": 2}], [NOW] * 2))
    assert isinstance(result, Partial)
    ((s, e, status, reason),) = result.segments
    assert (s, e) == (0, 2) and code in reason
    assert status is (Status.ERROR if "Denied" in code else Status.RETRY)


def test_role_arn_profile_and_port_options(aws_env: None, moto_server: MotoServer,
                                           fault_proxy: FaultProxy, tmp_path: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    stream = new_stream(moto_server)
    name, bucket = new_delivery_stream(moto_server)
    kinesis = make_plugin(Kinesis, region="us-east-1", stream=stream,
                          endpoint="http://127.0.0.1", port=str(fault_proxy.port),
                          role_arn="arn:aws:iam::123456789012:role/ks", external_id="x1",
                          sts_endpoint=fault_proxy.url, extra_user_agent="bench/1")
    assert flush_all(kinesis, make_chunk([{"a": 1}], [NOW])) == [Status.OK]
    (assume,) = [s for s in fault_proxy.requests if s.operation == "AssumeRole"]
    assert assume.key_id == "AKIDTESTTESTTEST" and b"ExternalId=x1" in assume.body
    put = next(s for s in fault_proxy.requests if s.operation == "PutRecords")
    assert put.key_id.startswith("ASIA") and put.headers["user-agent"].endswith("bench/1")
    # A named profile from the shared credentials file signs the Firehose requests.
    creds = tmp_path / "credentials"
    creds.write_text("[fh]\naws_access_key_id = AKIDPROFILEFH\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    firehose = make_plugin(KinesisFirehose, region="us-east-1", endpoint=fault_proxy.url,
                           delivery_stream=name, profile="fh")
    assert flush_all(firehose, make_chunk([{"b": 2}], [NOW])) == [Status.OK]
    batch = next(s for s in fault_proxy.requests if s.operation == "PutRecordBatch")
    assert batch.key_id == "AKIDPROFILEFH"
    assert s3_objects(moto_server, bucket) == [b'{"b":2}\n']
