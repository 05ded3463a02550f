"""The ``aws`` filter against the IMDS stand-in on loopback: v1/v2, keys and their order, tags,
IMDS down at start and coming back, v2-only instances, configuration errors."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rillet.devtools.imds import ACCOUNT_ID, ENDPOINT_VARIABLE, INSTANCE_ID, ImdsStandIn
from rillet.engine.chunk import body_dict
from rillet.filters.aws import AwsFilter
from tests.filters.filter_kit import batch, configure
from tests.plugin_kit import config_error

ALL_KEYS = ["az", "ec2_instance_id", "ec2_instance_type", "private_ip", "vpc_id", "ami_id",
            "account_id", "hostname"]
EVERYTHING = {k: "on" for k in ALL_KEYS} | {"tags_enabled": "on"}
META = {"az": "us-east-1a", "ec2_instance_id": INSTANCE_ID, "ec2_instance_type": "m5.large",
        "private_ip": "10.0.12.34", "vpc_id": "vpc-0123456789abcdef0",
        "ami_id": "ami-0fedcba9876543210", "account_id": ACCOUNT_ID,
        "hostname": "ip-10-0-12-34.ec2.internal"}
REC = {"log": "hello", "stream": "stdout"}


@pytest.fixture
def imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[ImdsStandIn]:
    with ImdsStandIn() as server:
        monkeypatch.setenv(ENDPOINT_VARIABLE, server.url)
        yield server


def started(**settings: str) -> tuple[AwsFilter, Any]:
    """A filter, started on a fresh loop (returned so that the test can stop it there)."""
    f = configure(AwsFilter, **settings)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(f.start())
    return f, loop


def stop(f: AwsFilter, loop: Any) -> None:
    loop.run_until_complete(f.stop())
    loop.close()


def through(f: AwsFilter, records: list[dict[str, Any]], as_bytes: bool) -> list[Any]:
    out = f.filter(batch(records, as_bytes=as_bytes))
    return out.bodies


@pytest.mark.parametrize("as_bytes", [True, False])
def test_engine_v2_adds_az_and_instance_id_by_default(imds: ImdsStandIn,
                                                      as_bytes: bool) -> None:
    from tests.engine import plugins
    from tests.engine.harness import make_pipeline, running, wait_for
    from tests.engine.plugins import Feed, Sink

    plugins.STATE["in-aws"] = feed = Feed()
    plugins.STATE["out-aws"] = sink = Sink()
    pipeline = make_pipeline(
        inputs=[{"name": "test_feed", "id": "in-aws", "tag": "app"}],
        filters=[{"name": "aws", "match": "*"}],
        outputs=[{"name": "test_sink", "id": "out-aws", "match": "*"}])

    async def go() -> None:
        async with running(pipeline):
            feed.put(batch([REC, {"n": 2}], tag="app", as_bytes=as_bytes, ack="a"))
            await wait_for(lambda: len(sink.delivered) == 2)
        got = [body_dict(b) for b in sink.delivered]
        assert got == [REC | {"az": "us-east-1a", "ec2_instance_id": INSTANCE_ID},
                       {"n": 2, "az": "us-east-1a", "ec2_instance_id": INSTANCE_ID}]
        assert list(got[0]) == ["log", "stream", "az", "ec2_instance_id"]

    asyncio.run(go())
    # IMDSv2: one token, then every GET carries it.
    assert imds.count("/latest/api/token", method="PUT", status=200) == 1
    gets = [r for r in imds.requests() if r.method == "GET"]
    assert len(gets) == 2 and all(r.token and r.status == 200 for r in gets)


@pytest.mark.parametrize("as_bytes", [True, False])
def test_v1_every_key_in_fluent_bit_order_with_tags_and_entity(imds: ImdsStandIn,
                                                               as_bytes: bool) -> None:
    f, loop = started(imds_version="v1", enable_entity="on", **EVERYTHING)
    try:
        (out,) = [body_dict(b) for b in through(f, [REC], as_bytes)]
    finally:
        stop(f, loop)
    assert list(out) == ["log", "stream", *ALL_KEYS, "Name", "team",
                         "aws_entity_ec2_instance_id", "aws_entity_account_id"]
    assert out == REC | META | {"Name": "node-1", "team": "logs",
                                "aws_entity_ec2_instance_id": INSTANCE_ID,
                                "aws_entity_account_id": ACCOUNT_ID}
    assert imds.count("/latest/api/token") == 0
    assert not any(r.token for r in imds.requests())
    assert f.counters["aws_unenriched_records"] == 0


def test_each_optional_key_alone(imds: ImdsStandIn) -> None:
    for key in ALL_KEYS[2:]:
        f, loop = started(az="off", ec2_instance_id="off", **{key: "on"})
        try:
            (out,) = [body_dict(b) for b in through(f, [{"a": 1}], True)]
        finally:
            stop(f, loop)
        assert out == {"a": 1, key: META[key]}, key


def test_entity_keys_alone_fetch_what_they_need(imds: ImdsStandIn) -> None:
    f, loop = started(az="off", ec2_instance_id="off", enable_entity="on")
    try:
        (out,) = [body_dict(b) for b in through(f, [{"a": 1}], False)]
    finally:
        stop(f, loop)
    assert out == {"a": 1, "aws_entity_ec2_instance_id": INSTANCE_ID,
                   "aws_entity_account_id": ACCOUNT_ID}


@pytest.mark.parametrize(("setting", "expected"), [
    ({}, {"Name": "node-1", "team": "logs", "cost center": "42"}),
    ({"tags_include": "team, cost center"}, {"team": "logs", "cost center": "42"}),
    ({"tags_exclude": "Name"}, {"team": "logs", "cost center": "42"}),
])
def test_tags_include_and_exclude(imds: ImdsStandIn, setting: dict[str, str],
                                  expected: dict[str, str]) -> None:
    imds.tags["cost center"] = "42"
    f, loop = started(az="off", ec2_instance_id="off", tags_enabled="on", **setting)
    try:
        (out,) = [body_dict(b) for b in through(f, [{"a": 1}], True)]
    finally:
        stop(f, loop)
    assert out == {"a": 1, **expected} and list(out)[1:] == list(expected)


def test_tags_off_in_metadata_warns_and_adds_the_rest(imds: ImdsStandIn,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    imds.tags_in_metadata = False
    with caplog.at_level(logging.WARNING):
        f, loop = started(tags_enabled="on")
    try:
        (out,) = [body_dict(b) for b in through(f, [{"a": 1}], True)]
    finally:
        stop(f, loop)
    assert out == {"a": 1, "az": "us-east-1a", "ec2_instance_id": INSTANCE_ID}
    assert "tag request returned 404" in caplog.text and f.complete


def test_key_collisions_the_appended_value_wins(imds: ImdsStandIn) -> None:
    f, loop = started()
    try:
        raw, as_dict = through(f, [{"az": "mine", "x": 1}], True)[0], \
            through(f, [{"az": "mine", "x": 1}], False)[0]
    finally:
        stop(f, loop)
    # Serialized: appended like Fluent Bit (two "az"); every JSON reader keeps the last.
    assert raw.count(b'"az"') == 2 and orjson.loads(raw)["az"] == "us-east-1a"
    assert list(as_dict) == ["x", "az", "ec2_instance_id"] and as_dict["az"] == "us-east-1a"


def test_odd_bodies(imds: ImdsStandIn) -> None:
    f, loop = started()
    try:
        b = batch([{}])
        b.bodies = [b"{}", b"[1,2]", b"not json", b'{"a":1 }\n', b'{"a":1}']
        b.times = [1, 2, 3, 4, 5]
        out = f.filter(b).bodies
    finally:
        stop(f, loop)
    meta = {"az": "us-east-1a", "ec2_instance_id": INSTANCE_ID}
    assert body_dict(out[0]) == meta
    assert out[1:3] == [b"[1,2]", b"not json"]
    assert body_dict(out[3]) == {"a": 1} | meta == body_dict(out[4])


def test_imds_down_at_start_then_up(imds: ImdsStandIn,
                                    caplog: pytest.LogCaptureFixture) -> None:
    imds.stop()
    f = configure(AwsFilter, retry_interval_s="1")

    async def go() -> None:
        with caplog.at_level(logging.INFO):
            t0 = time.monotonic()
            await f.start()
            assert time.monotonic() - t0 < 2.5
            recs = [{"n": i} for i in range(3)]
            out = f.filter(batch(recs, as_bytes=True))
            assert [body_dict(b) for b in out.bodies] == recs
            assert f.counters["aws_unenriched_records"] == 3
            assert f.counters["aws_imds_errors"] >= 1
            await asyncio.sleep(1.3)  # a failed retry: no new warning
            imds.start()
            deadline = time.monotonic() + 5
            while not f.complete and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            out = f.filter(batch([{"n": 9}]))
            assert body_dict(out.bodies[0]) == {"n": 9, "az": "us-east-1a",
                                                "ec2_instance_id": INSTANCE_ID}
            assert f.counters["aws_unenriched_records"] == 3
            await f.stop()

    asyncio.run(go())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "EC2 metadata not available" in warnings[0].getMessage()
    assert "EC2 metadata retrieved" in caplog.text


def test_unreachable_endpoint_does_not_delay_startup_much(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An IMDS that answers too slowly: start() gives up waiting after ~2 s.
    with ImdsStandIn() as slow:
        slow.delay = 5.0
        monkeypatch.setenv(ENDPOINT_VARIABLE, slow.url)
        f = configure(AwsFilter)

        async def go() -> float:
            t0 = time.monotonic()
            await f.start()
            took = time.monotonic() - t0
            await f.stop()
            return took

        took = asyncio.run(go())
        slow.delay = 0
    assert took < 2.6 and not f.complete


def test_v2_required_rejects_v1(imds: ImdsStandIn, caplog: pytest.LogCaptureFixture) -> None:
    imds.http_tokens = "required"
    with caplog.at_level(logging.WARNING):
        f, loop = started(imds_version="v1", retry_interval_s="1")
    try:
        out = through(f, [REC], True)
    finally:
        stop(f, loop)
    assert [body_dict(b) for b in out] == [REC]
    assert imds.count("/latest/meta-data", status=401) >= 1
    assert "401" in caplog.text and "use imds_version v2" in caplog.text
    assert f.counters["aws_unenriched_records"] == 1


def test_v2_required_accepts_v2_and_renews_an_expired_token(imds: ImdsStandIn) -> None:
    imds.http_tokens = "required"
    del imds.metadata["hostname"]  # 404: the hostname group is retried
    f = configure(AwsFilter, hostname="on", retry_interval_s="1")

    async def go() -> None:
        await f.start()
        assert not f.complete and "404" in f.reason
        imds.expire_tokens()
        imds.metadata["hostname"] = "ip-10-0-12-34.ec2.internal"
        deadline = time.monotonic() + 5
        while not f.complete and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await f.stop()

    asyncio.run(go())
    assert f.complete and f.fields["hostname"] == "ip-10-0-12-34.ec2.internal"
    assert imds.count("/latest/api/token", status=200) == 2
    assert imds.count("/latest/meta-data/hostname", status=401) == 1


def test_token_request_needs_a_ttl(imds: ImdsStandIn) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(imds.url + "latest/api/token", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 400


def test_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "exclusive" in config_error(AwsFilter, tags_enabled="on", tags_include="a",
                                       tags_exclude="b")
    assert "expected one of: v1, v2" in config_error(AwsFilter, imds_version="v3")
    assert "must not be negative" in config_error(AwsFilter, retry_interval_s="-1")
    monkeypatch.setenv(ENDPOINT_VARIABLE, "https://imds.example")
    assert ENDPOINT_VARIABLE in config_error(AwsFilter)


def dry_run(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rillet", "-c", str(conf), "--dry-run"],
                          capture_output=True, text=True, timeout=30)


def test_dry_run_reports_bad_values_with_file_line_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text("[INPUT]\n    Name dummy\n\n[FILTER]\n    Name aws\n    Match *\n"
                    "    imds_version v3\n    az maybe\n\n[OUTPUT]\n    Name null\n"
                    "    Match *\n")
    res = dry_run(conf)
    assert res.returncode != 0
    assert f"{conf}:7: [FILTER] aws: imds_version: invalid value 'v3'" in res.stderr
    assert f"{conf}:8: [FILTER] aws: az:" in res.stderr


# The [FILTER] sections for `aws` in AWS's Container Insights Fluent Bit configuration
# (fluent-bit-config ConfigMap: dataplane-log.conf, host-log.conf; application-log.conf of the
# CloudWatch observability add-on sets Enable_Entity).
CONTAINER_INSIGHTS = """\
[SERVICE]
    Flush                     5
    Grace                     30
    Log_Level                 error
    Daemon                    off

[INPUT]
    Name                dummy
    Tag                 dataplane.systemd.kubelet

[INPUT]
    Name                dummy
    Tag                 host.dmesg

[FILTER]
    Name                aws
    Match               dataplane.*
    imds_version        v2

[FILTER]
    Name                aws
    Match               host.*
    imds_version        v2

[FILTER]
    Name                aws
    Match               application.*
    az                  false
    ec2_instance_id     false
    Enable_Entity       true

[OUTPUT]
    Name                null
    Match               *
"""


def test_container_insights_config_passes_dry_run(tmp_path: Path) -> None:
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(CONTAINER_INSIGHTS)
    res = dry_run(conf)
    assert res.returncode == 0, res.stderr
    assert "configuration test is successful" in res.stdout
