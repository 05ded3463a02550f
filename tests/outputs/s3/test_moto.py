"""s3 against moto's server (through the fault proxy): objects read back and parsed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rillet.aws.client import Response
from rillet.engine.plugin import Partial, Status
from rillet.outputs.s3.upload import UploadError
from tests.outputs.s3.helpers import (
    T0,
    lines,
    make,
    new_bucket,
    objects,
    only,
    records,
    run,
    stream,
)
from tests.peers.fault_proxy import FaultProxy, Rule
from tests.peers.moto_server import MotoServer
from tests.plugin_kit import make_chunk


def part_count(etag: str) -> int:
    """The number of parts of a multipart object (its ETag ends with -N), 0 for PutObject."""
    _, dash, n = etag.strip('"').rpartition("-")
    return int(n) if dash else 0


def staged_files(store: Path) -> list[Path]:
    return sorted(p for p in store.rglob("objects/*") if p.is_file())


def test_put_object_round_trip(aws_env: None, moto_server: MotoServer,
                               fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M")
    bodies: list[Any] = [b'{"log":"one","stream":"stdout"}', {"log": "tw\u00f6", "n": 2}]
    results = run(plugin, [("kube.a", bodies), ("kube.b", [{"x": 1}])])
    assert results == [Status.OK, Status.OK]
    got = objects(moto_server, bucket)
    assert len(got) == 2
    by_tag = {k.split("/")[1]: v for k, v in got.items()}
    a = by_tag["kube.a"]
    # Default key: /fluent-bit-logs/$TAG/%Y/%m/%d/%H/%M/%S, PutObject adds "-<8 random>".
    key_a = next(k for k in got if "/kube.a/" in k)
    assert key_a.startswith("fluent-bit-logs/kube.a/2023/11/14/22/13/20-")
    assert len(key_a.rsplit("-", 1)[1]) == 8
    recs = lines(a["body"])
    assert [r["log"] for r in recs] == ["one", "tw\u00f6"]
    assert next(iter(recs[0])) == "date" and recs[0]["date"] == pytest.approx(T0 / 1e9)
    assert recs[1]["n"] == 2
    assert lines(by_tag["kube.b"]["body"])[0]["x"] == 1
    assert plugin.counters["s3_objects_uploaded"] == 2
    assert staged_files(tmp_path) == []


def test_multipart_several_parts_streamed(aws_env: None, moto_server: MotoServer,
                                          fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, total_file_size="12M",
                  upload_chunk_size="5M", s3_key_format="/mp/$TAG/$UUID.log")
    chunks = [("app", records(2000, 100, i * 2000)) for i in range(50)]  # ~14 MB
    assert stream(plugin, chunks, parts=2) >= 2  # parts go out while the object is open
    got = objects(moto_server, bucket)
    # ~14 MB: a first object of 12 MB in 2 or 3 parts (parts hold what was staged when the
    # uploader ran, at least 5 MiB), then a second object with the rest (PutObject).
    assert len(got) == 2
    first = [k for k, v in got.items() if part_count(v["etag"]) >= 2]
    assert len(first) == 1
    ordered = first + [k for k in got if k not in first]
    all_lines = [r for k in ordered for r in lines(got[k]["body"])]
    assert [r["n"] for r in all_lines] == list(range(100_000))


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compression_put_object(aws_env: None, moto_server: MotoServer,
                                fault_proxy: FaultProxy, tmp_path: Path,
                                compression: str) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", compression=compression,
                  s3_key_format="/c/$TAG/$UUID.gz", json_date_key="off")
    run(plugin, [("t", records(500))])
    ((key, obj),) = objects(moto_server, bucket).items()
    assert key.startswith("c/t/") and key.endswith(".gz")  # $UUID: no suffix after .gz
    assert obj["encoding"] == compression
    recs = lines(obj["body"], compression)
    assert [r["n"] for r in recs] == list(range(500))
    assert "date" not in recs[0]


def test_gzip_multipart_waits_for_big_enough_parts(aws_env: None, moto_server: MotoServer,
                                                   fault_proxy: FaultProxy,
                                                   tmp_path: Path) -> None:
    """Parts are compressed one by one: a part that compresses below 5 MiB waits for more
    records; the object is one valid gzip stream of several members."""
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, total_file_size="16M",
                  upload_chunk_size="5M", compression="gzip",
                  s3_key_format="/gz/$TAG/$UUID.gz")
    rnd = os.urandom(8_000_000)
    bodies = [b'{"log":"%s","n":%d}' % (base64.b64encode(rnd[i * 600:(i + 1) * 600]), i)
              for i in range(13_000)]  # ~10.5 MB, compresses to ~78 %

    async def go() -> list[int]:
        hints = []
        await plugin.start()
        for i in range(0, len(bodies), 1000):  # the uploader keeps up with every flush
            await plugin.flush(make_chunk(bodies[i:i + 1000], tag="g"))
            await plugin._upload_pass(final=False)
            hints += [o.part_hint for o in plugin.objects.values() if o.part_hint]
        await plugin.stop()
        return hints

    hints = asyncio.run(go())
    assert hints and hints[0] > 5_242_880  # the first try compressed below 5 MiB: waited
    obj = only(moto_server, bucket)
    assert part_count(obj["etag"]) == 2
    assert [r["n"] for r in lines(obj["body"], "gzip")] == list(range(13_000))


def test_key_format_tag_parts_index_and_static_path(aws_env: None, moto_server: MotoServer,
                                                    fault_proxy: FaultProxy,
                                                    tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    settings = {"use_put_object": "on", "total_file_size": "1M", "static_file_path": "on",
                "s3_key_format": "/$TAG[2]/$TAG[0]/%Y/%m/%d/$INDEX.log",
                "s3_key_format_tag_delimiters": ".-"}
    run(make(fault_proxy.url, tmp_path, bucket, **settings),
        [("my_app_name-logs.prod", records(3)), ("a-b.c", records(2))])
    # $INDEX is saved in store_dir: a new instance on the same store_dir continues from it.
    run(make(fault_proxy.url, tmp_path, bucket, **settings), [("x.y.z", records(1))])
    assert sorted(objects(moto_server, bucket)) == [
        "c/a/2023/11/14/1.log", "prod/my_app_name/2023/11/14/0.log", "z/x/2023/11/14/2.log"]


def test_restart_uploads_staged_records(aws_env: None, moto_server: MotoServer,
                                        fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    first = make(fault_proxy.url, tmp_path, bucket, s3_key_format="/r/$TAG/$UUID")
    assert run(first, [("t", records(300))], stop=False) == [Status.OK]
    assert objects(moto_server, bucket) == {}  # acknowledged, staged, not uploaded
    assert len(staged_files(tmp_path)) == 2
    second = make(fault_proxy.url, tmp_path, bucket, s3_key_format="/r/$TAG/$UUID")
    run(second, [])
    obj = only(moto_server, bucket)
    assert [r["n"] for r in lines(obj["body"])] == list(range(300))
    assert second.counters["s3_recovered_objects"] == 1
    assert staged_files(tmp_path) == []


def test_restart_resumes_multipart_upload(aws_env: None, moto_server: MotoServer,
                                          fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    settings = {"total_file_size": "20M", "upload_chunk_size": "5M",
                "s3_key_format": "/resume/$UUID"}
    first = make(fault_proxy.url, tmp_path, bucket, **settings)
    chunks = [("t", records(2000, 100, i * 2000)) for i in range(45)]  # ~13 MB
    sent = stream(first, chunks, parts=2, stop=False)
    assert sent >= 2
    uploads = moto_server.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert len(uploads) == 1
    second = make(fault_proxy.url, tmp_path, bucket, **settings)
    run(second, [])
    obj = only(moto_server, bucket)
    assert part_count(obj["etag"]) == sent + 1
    assert second.counters["s3_parts_uploaded"] == 1  # only the last part was sent again
    assert [r["n"] for r in lines(obj["body"])] == list(range(90_000))
    assert moto_server.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads",
                                                                              []) == []


def test_restart_after_upload_vanished_starts_again(aws_env: None, moto_server: MotoServer,
                                                    fault_proxy: FaultProxy,
                                                    tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    settings = {"total_file_size": "20M", "upload_chunk_size": "5M",
                "s3_key_format": "/gone/$UUID"}
    first = make(fault_proxy.url, tmp_path, bucket, **settings)
    chunks = [("t", records(2000, 100, i * 2000)) for i in range(30)]
    assert stream(first, chunks, parts=1, stop=False) >= 1
    s3 = moto_server.client("s3")
    (upload,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    # S3 answers 404 NoSuchUpload for an aborted or expired upload (moto answers 500).
    fault_proxy.add(Rule("respond", status=404, limit=1, body=(
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchUpload</Code><Message>"
        b"The specified upload does not exist.</Message></Error>")))
    second = make(fault_proxy.url, tmp_path, bucket, **settings)
    run(second, [], settle=0.5)
    ((key, obj),) = objects(moto_server, bucket).items()
    assert key == upload["Key"]  # the same key: a second copy is never made
    assert [r["n"] for r in lines(obj["body"])] == list(range(60_000))
    assert second.counters["s3_upload_failures"] >= 1


def test_restart_aborts_unrecorded_upload(aws_env: None, moto_server: MotoServer,
                                          fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """CreateMultipartUpload answered, then a crash before the id was saved: the next start
    finds the upload with ListMultipartUploads and aborts it."""
    bucket = new_bucket(moto_server)
    first = make(fault_proxy.url, tmp_path, bucket, s3_key_format="/orphan/$UUID")
    run(first, [("t", records(10))], stop=False)
    (obj,) = first.objects.values()
    s3 = moto_server.client("s3")
    s3.create_multipart_upload(Bucket=bucket, Key=obj.key.lstrip("/"))
    obj.creating = True
    first.store.save(obj)
    second = make(fault_proxy.url, tmp_path, bucket, s3_key_format="/orphan/$UUID")
    run(second, [])
    assert second.counters["s3_aborted_uploads"] == 1
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    got = only(moto_server, bucket)
    assert len(lines(got["body"])) == 10


def test_store_dir_limit_answers_retry(aws_env: None, moto_server: MotoServer,
                                       fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, store_dir_limit_size="3000",
                  json_date_key="false")
    small = records(10)  # ~1.3 KB
    results = run(plugin, [("t", small), ("t", small), ("t", small)], stop=False)
    assert results == [Status.OK, Status.OK, Status.RETRY]
    assert plugin.counters["s3_store_full"] == 1
    assert plugin.store.used == 2 * len(b"\n".join(small) + b"\n")


def test_server_errors_and_throttling_retried(aws_env: None, moto_server: MotoServer,
                                              fault_proxy: FaultProxy,
                                              tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    fault_proxy.add(Rule("error", status=503, error_code="ServiceUnavailable", limit=2))
    fault_proxy.add(Rule("throttle", error_code="SlowDown", limit=2))
    fault_proxy.add(Rule("drop", limit=1))
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", s3_key_format="/f/$UUID")
    run(plugin, [("t", records(50))], settle=0.2)
    obj = only(moto_server, bucket)
    assert [r["n"] for r in lines(obj["body"])] == list(range(50))
    assert plugin.counters["aws_transient_errors"] >= 2
    assert plugin.counters["aws_throttled"] == 2
    puts = [s for s in fault_proxy.requests if s.action == "forward" and s.status == 200]
    assert len(puts) == 1  # delivered once


def test_permanent_error_quarantines_then_next_start_delivers(
        aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy,
        tmp_path: Path) -> None:
    bucket = f"rillet-missing-{os.getpid()}-{time.time_ns() % 10**6}"
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", retry_limit="2", upload_timeout="0.1s",
                  s3_key_format="/q/$UUID")
    run(plugin, [("t", records(20))], settle=1.0)
    assert plugin.counters["s3_quarantined_objects"] == 1
    assert plugin.counters["s3_upload_failures"] == 3
    assert len(staged_files(tmp_path)) == 2  # kept on disk
    moto_server.client("s3").create_bucket(Bucket=bucket)
    again = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                 total_file_size="1M", s3_key_format="/q/$UUID")
    run(again, [])
    obj = only(moto_server, bucket)
    assert len(lines(obj["body"])) == 20
    assert staged_files(tmp_path) == []


def test_object_settings_headers(aws_env: None, moto_server: MotoServer,
                                 fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", content_type="application/x-ndjson",
                  canned_acl="public-read", storage_class="STANDARD_IA",
                  send_content_md5="on", s3_key_format="/h/$UUID")
    run(plugin, [("t", records(5))])
    ((key, obj),) = objects(moto_server, bucket).items()
    assert obj["type"] == "application/x-ndjson"
    assert obj["class"] == "STANDARD_IA"
    grants = moto_server.client("s3").get_object_acl(Bucket=bucket, Key=key)["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)
    (put,) = [s for s in fault_proxy.requests if s.body]
    assert put.headers["content-md5"] == base64.b64encode(
        hashlib.md5(put.body).digest()).decode()
    assert put.headers["x-amz-content-sha256"] == hashlib.sha256(put.body).hexdigest()


def test_multipart_headers_and_md5(aws_env: None, moto_server: MotoServer,
                                   fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, total_file_size="11M",
                  upload_chunk_size="5M", send_content_md5="on",
                  content_type="text/plain", s3_key_format="/mh/$UUID")
    run(plugin, [("t", records(2000, 100, i * 2000)) for i in range(34)], settle=0.5)
    obj = only(moto_server, bucket)  # ~10.2 MB
    assert obj["type"] == "text/plain" and part_count(obj["etag"]) >= 2
    parts = [s for s in fault_proxy.requests
             if s.body and not s.body.startswith(b"<CompleteMultipartUpload>")]
    assert len(parts) == part_count(obj["etag"])
    assert all(s.headers["content-md5"] == base64.b64encode(
        hashlib.md5(s.body).digest()).decode() for s in parts)


def test_log_key_and_skipped_records(aws_env: None, moto_server: MotoServer,
                                     fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", log_key="log", s3_key_format="/lk/$UUID")
    bodies: list[Any] = [b'{"log":"plain text","a":1}', {"other": 1}, {"log": {"k": [1]}}]
    (result,) = run(plugin, [("t", bodies)])
    assert isinstance(result, Partial)
    assert result.segments == [(1, 2, Status.ERROR, "could not find log_key 'log' in record")]
    obj = only(moto_server, bucket)
    assert obj["body"] == b'plain text\n{"k":[1]}\n'
    assert plugin.counters["s3_skipped_records"] == 1


@pytest.mark.parametrize(("fmt", "expected"), [
    ("iso8601", "2023-11-14T22:13:20.123456Z"),
    ("epoch", 1700000000),
    ("java_sql_timestamp", "2023-11-14 22:13:20.123456"),
])
def test_json_date_format(aws_env: None, moto_server: MotoServer, fault_proxy: FaultProxy,
                          tmp_path: Path, fmt: str, expected: Any) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", json_date_key="ts", json_date_format=fmt,
                  s3_key_format="/d/$UUID")
    run(plugin, [("t", [{"a": 1}])])
    obj = only(moto_server, bucket)
    assert lines(obj["body"]) == [{"ts": expected, "a": 1}]


def test_upload_timeout_completes_small_objects(aws_env: None, moto_server: MotoServer,
                                                fault_proxy: FaultProxy,
                                                tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, upload_timeout="0.2s",
                  s3_key_format="/to/$UUID")
    run(plugin, [("t", records(7))], stop=False, settle=1.5)
    obj = only(moto_server, bucket)  # uploaded without a stop
    assert len(lines(obj["body"])) == 7


def test_total_file_size_starts_new_objects(aws_env: None, moto_server: MotoServer,
                                            fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", s3_key_format="/sz/$UUID",
                  json_date_key="off")
    chunk = records(2500, 100)  # ~300 KB
    run(plugin, [("t", chunk)] * 7)
    got = objects(moto_server, bucket)
    assert len(got) == 3  # 3 + 3 + 1 chunks, never more than 1 MB each
    assert all(len(v["body"]) <= 1_000_000 for v in got.values())
    assert sum(len(lines(v["body"])) for v in got.values()) == 7 * 2500


def test_preserve_data_ordering(aws_env: None, moto_server: MotoServer,
                                fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """The first object's upload fails for a while: the second one does not overtake it."""
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", s3_key_format="/o/$TAG/$UUID", retry_limit="5",
                  upload_timeout="0.1s", json_date_key="off")
    fault_proxy.add(Rule("error", status=500, error_code="InternalError", limit=4))
    run(plugin, [("first", records(3)), ("second", records(3, 10, 100))], settle=2.0)
    delivered = [lines(s.body) for s in fault_proxy.requests if s.status == 200 and s.body]
    assert [[r["n"] for r in d] for d in delivered] == [[0, 1, 2], [100, 101, 102]]
    assert plugin.counters["s3_upload_failures"] == 1
    assert plugin.counters["s3_objects_uploaded"] == 2


def test_sigkill_loses_no_staged_record(aws_env: None, moto_server: MotoServer,
                                        fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """A real rillet process killed with SIGKILL: every record it had staged (and so
    acknowledged) reaches S3 after the next start."""
    bucket = new_bucket(moto_server)
    store = tmp_path / "store"
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(f"""
[SERVICE]
    flush 0.1
    log_level warn
[INPUT]
    name dummy
    tag app.kill
    rate 50
    copies 20
    dummy {{"message":"staged","n":1}}
[OUTPUT]
    name s3
    match *
    bucket {bucket}
    endpoint {fault_proxy.url}
    store_dir {store}
    s3_key_format /kill/$TAG/$UUID
""")
    proc = subprocess.Popen([sys.executable, "-m", "rillet", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            data = [p for p in store.rglob("*.ndjson") if p.stat().st_size > 20_000]
            if data or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    staged = sum(p.read_bytes().count(b"\n") for p in store.rglob("*.ndjson"))
    assert staged > 100
    assert objects(moto_server, bucket) == {}
    after = make(fault_proxy.url, store, bucket, s3_key_format="/kill/$TAG/$UUID")
    run(after, [])
    got = objects(moto_server, bucket)
    uploaded = [r for v in got.values() for r in lines(v["body"])]
    assert len(uploaded) == staged  # a torn last line was never acknowledged
    assert all(r["message"] == "staged" for r in uploaded)


@pytest.mark.parametrize(("preserve", "expected"), [("on", ["first", "second"]),
                                                    ("off", ["second", "first"])])
def test_ordering_option_with_a_failing_object(aws_env: None, moto_server: MotoServer,
                                               fault_proxy: FaultProxy, tmp_path: Path,
                                               preserve: str, expected: list[str]) -> None:
    """The older object's uploads fail twice: with preserve_data_ordering off the newer one
    goes first."""
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", s3_key_format="/$TAG/$UUID", retry_limit="5",
                  upload_timeout="0.1s", preserve_data_ordering=preserve)
    real_put = plugin.api.put_object
    order: list[str] = []
    failures = [2]

    async def put(key: str, body: bytes) -> None:
        if key.startswith("/first/") and failures[0]:
            failures[0] -= 1
            raise UploadError("PutObject", Response(503, b"", "ServiceUnavailable"))
        await real_put(key, body)
        order.append(key.split("/")[1])

    plugin.api.put_object = put  # type: ignore[method-assign]
    run(plugin, [("first", records(2)), ("second", records(2))], settle=1.5)
    assert order == expected
    assert len(objects(moto_server, bucket)) == 2


def test_key_with_special_characters_arrives_as_rendered(aws_env: None, moto_server: MotoServer,
                                                         fault_proxy: FaultProxy,
                                                         tmp_path: Path) -> None:
    bucket = new_bucket(moto_server)
    plugin = make(fault_proxy.url, tmp_path, bucket, use_put_object="on",
                  total_file_size="1M", static_file_path="on",
                  s3_key_format="/odd/$TAG/%H:%M:%S/a+b c~d/x=1&y;z.log")
    run(plugin, [("app-1.v2", records(2))])
    assert list(objects(moto_server, bucket)) == ["odd/app-1.v2/22:13:20/a+b c~d/x=1&y;z.log"]
