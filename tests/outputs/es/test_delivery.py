"""es / opensearch against a loopback bulk-API server: per-item outcomes, retries of exactly the
failed records, whole-request failures, compression, authentication, TLS, SigV4."""

from __future__ import annotations

import base64
import datetime
import gzip
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from rillet.engine.chunk import Chunk
from rillet.engine.plugin import Partial, Status
from rillet.outputs.es import Elasticsearch
from rillet.outputs.opensearch import OpenSearch
from tests.outputs.es.helpers import deliver, reasons, segments
from tests.peers.bulk_server import BulkServer
from tests.plugin_kit import make_chunk, make_plugin


@pytest.fixture
def server() -> Iterator[BulkServer]:
    with BulkServer() as srv:
        yield srv


def es(server: BulkServer, cls: type = Elasticsearch, attempts: int = 1,
       **settings: str) -> Any:
    """An output for ``server``; one try per flush unless asked (the in-place retries have
    their own test)."""
    plugin = make_plugin(cls, host="127.0.0.1", port=str(server.port), **settings)
    plugin.attempts = attempts
    return plugin


def items_sent(server: BulkServer, k: int) -> list[dict[str, Any]]:
    lines = [orjson.loads(x) for x in server.requests[k].body.split(b"\n") if x]
    return lines[1::2]


def test_happy_path(server: BulkServer) -> None:
    plugin = es(server)
    [res] = deliver(plugin, make_chunk([{"n": 1}, b'{"n":2}', {"n": 3}]))
    assert res is Status.OK
    assert sorted(d["n"] for d in server.all_docs()) == [1, 2, 3]
    req = server.requests[0]
    assert req.path == "/_bulk"
    assert req.headers["Content-Type"] == "application/x-ndjson"
    assert "Authorization" not in req.headers


def test_item_429_retried_alone_without_resending_accepted_records(server: BulkServer) -> None:
    busy = {"left": 1}

    def rule(op: str, meta: dict[str, Any], doc: Any) -> tuple[int, str] | None:
        if doc.get("n") == 2 and busy["left"]:
            busy["left"] -= 1
            return 429, "es_rejected_execution_exception"
        return None

    server.item_rule = rule
    plugin = es(server)
    chunk = make_chunk([{"n": 1}, {"n": 2}, {"n": 3}])
    [first] = deliver(plugin, chunk)
    assert segments(first) == [(1, 2, Status.RETRY)]
    retry = chunk.subset([(1, 2)])
    [second] = deliver(plugin, retry)
    assert second is Status.OK
    assert [d["n"] for d in items_sent(server, 1)] == [2]
    assert sorted(d["n"] for d in server.all_docs()) == [1, 2, 3]
    assert plugin.counters["es_item_retries"] == 1


def test_mapping_conflict_is_an_error_with_its_reason(server: BulkServer) -> None:
    plugin = es(server)
    [res] = deliver(plugin, make_chunk([{"n": 1}, {"n": "text"}, {"n": {"x": 1}}, {"n": 4}]))
    assert segments(res) == [(1, 3, Status.ERROR)]
    assert "mapper_parsing_exception" in reasons(res)[0]
    assert "HTTP 400" in reasons(res)[0]
    assert plugin.counters["es_item_errors"] == 2
    assert sorted(d["n"] for d in server.all_docs()) == [1, 4]


def test_conflict_on_create_counts_as_delivered(server: BulkServer) -> None:
    plugin = es(server, generate_id="on")
    chunk = make_chunk([{"n": 1}, {"n": 2}])
    first, again = deliver(plugin, chunk, chunk)
    assert first is Status.OK and again is Status.OK
    assert plugin.counters["es_duplicates"] == 2
    assert len(server.all_docs()) == 2


def test_conflict_on_index_is_retried(server: BulkServer) -> None:
    server.item_rule = lambda op, meta, doc: (409, "version_conflict_engine_exception")
    [res] = deliver(es(server, write_operation="index"), make_chunk([{"n": 1}]))
    assert segments(res) == [(0, 1, Status.RETRY)]


def test_skipped_records_keep_the_index_mapping(server: BulkServer) -> None:
    server.item_rule = lambda op, meta, doc: (503, "unavailable") if doc.get("n") == 3 \
        else None
    [res] = deliver(es(server), make_chunk([{"n": 1}, {2: "bad key"}, {"n": 3}, {"n": 4}]))
    assert sorted(segments(res)) == [(1, 2, Status.ERROR), (2, 3, Status.RETRY)]


@pytest.mark.parametrize("status,expected", [(503, Status.RETRY), (429, Status.RETRY),
                                             (500, Status.RETRY), (400, Status.ERROR),
                                             (403, Status.ERROR)])
def test_whole_request_statuses(server: BulkServer, status: int, expected: Status) -> None:
    server.answers.append((status, b'{"error":{"type":"x","reason":"nope"},"status":%d}'
                           % status))
    [res] = deliver(es(server), make_chunk([{"n": 1}, {"n": 2}]))
    assert segments(res) == [(0, 2, expected)]
    if expected is Status.ERROR:
        assert f"HTTP {status}" in reasons(res)[0] and "nope" in reasons(res)[0]


def test_unreadable_answer_and_dropped_connection_are_retried(server: BulkServer) -> None:
    server.answers.extend([(200, b"not json"), None])
    plugin = es(server)
    a, b = deliver(plugin, make_chunk([{"n": 1}]), make_chunk([{"n": 2}]))
    assert segments(a) == [(0, 1, Status.RETRY)]
    assert segments(b) == [(0, 1, Status.RETRY)]


def test_connection_refused_is_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plugin = make_plugin(Elasticsearch, port=str(port))
    plugin.base_delay = plugin.max_delay = 0.01
    [res] = deliver(plugin, make_chunk([{"n": 1}]))
    assert segments(res) == [(0, 1, Status.RETRY)]


def test_gzip_path_pipeline_and_basic_auth(server: BulkServer) -> None:
    plugin = es(server, compress="gzip", path="/proxy/", pipeline="geo",
                http_user="elastic", http_passwd="s3cret")
    [res] = deliver(plugin, make_chunk([{"n": 1}]))
    assert res is Status.OK
    req = server.requests[0]
    assert req.path == "/proxy/_bulk/?pipeline=geo"
    assert req.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(req.raw) == req.body
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"elastic:s3cret").decode()


def test_api_key_and_cloud_id(server: BulkServer) -> None:
    deliver(es(server, http_api_key="a2V5OnNlY3JldA=="), make_chunk([{"n": 1}]))
    assert server.requests[0].headers["Authorization"] == "ApiKey a2V5OnNlY3JldA=="
    # region "0.1" + host "127.0" = 127.0.0.1, with the port inside the cloud id
    cid = "dep:" + base64.b64encode(f"0.1$127.0:{server.port}$kibana".encode()).decode()
    plugin = make_plugin(Elasticsearch, cloud_id=cid, cloud_auth="elastic:pw",
                         http_api_key="ignored")
    [res] = deliver(plugin, make_chunk([{"n": 2}]))
    assert res is Status.OK
    assert server.requests[1].headers["Authorization"] == \
        "Basic " + base64.b64encode(b"elastic:pw").decode()


def test_trace_output_prints_the_request(server: BulkServer,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    deliver(es(server, trace_output="on"), make_chunk([{"n": 1}]))
    assert '{"create":{"_index":"fluent-bit","_type":"_doc"}}' in capfd.readouterr().out


def test_trace_error_logs_the_answer(server: BulkServer, caplog: pytest.LogCaptureFixture) -> None:
    deliver(es(server, trace_error="on"), make_chunk([{"n": 1}, {"n": "x"}]))
    assert any("error: Output" in r.getMessage() for r in caplog.records)


def test_opensearch_plugin_delivers_with_its_index_template(server: BulkServer) -> None:
    plugin = es(server, OpenSearch, index="logs-$app", suppress_type_name="on")
    [res] = deliver(plugin, make_chunk([{"app": "web"}, {"x": 1}]))
    assert res is Status.OK
    assert set(server.docs) == {"logs-web", "logs-$app"}


def test_tls_with_a_private_ca(tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with BulkServer(tls=ctx) as srv:
        ok = make_plugin(Elasticsearch, port=str(srv.port), tls="on",
                         **{"tls.ca_file": str(ca_file), "tls.verify_hostname": "on",
                            "tls.vhost": "localhost"})
        unknown_ca = make_plugin(Elasticsearch, port=str(srv.port), tls="on")
        no_verify = make_plugin(Elasticsearch, port=str(srv.port), tls="on",
                                **{"tls.verify": "off"})
        assert deliver(ok, make_chunk([{"n": 1}])) == [Status.OK]
        assert segments(deliver(unknown_ca, make_chunk([{"n": 2}]))[0]) == \
            [(0, 1, Status.RETRY)]
        assert deliver(no_verify, make_chunk([{"n": 3}])) == [Status.OK]
        assert sorted(d["n"] for d in srv.all_docs()) == [1, 3]


@pytest.mark.usefixtures("aws_env")
def test_sigv4_signature_verifies(server: BulkServer) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tests.peers.moto_server import TEST_ENV

    plugin = es(server, aws_auth="on", aws_region="eu-west-1", aws_service_name="aoss",
                compress="gzip")
    [res] = deliver(plugin, make_chunk([{"n": 1}]))
    assert res is Status.OK
    req = server.requests[0]
    auth = req.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={TEST_ENV['AWS_ACCESS_KEY_ID']}/")
    assert "/eu-west-1/aoss/aws4_request" in auth
    assert req.headers["Host"] == "127.0.0.1"  # no port, as Fluent Bit signs it
    # Recompute the signature over what the server received.
    signed_names = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {k: v for k, v in req.headers.items() if k.lower() in signed_names}
    check = AWSRequest(method="POST", url=f"http://127.0.0.1{req.path}", data=req.raw,
                       headers=headers)
    stamp = req.headers["X-Amz-Date"]
    check.context["timestamp"] = stamp
    creds = Credentials(TEST_ENV["AWS_ACCESS_KEY_ID"], TEST_ENV["AWS_SECRET_ACCESS_KEY"],
                        TEST_ENV.get("AWS_SESSION_TOKEN"))
    signer = SigV4Auth(creds, "aoss", "eu-west-1")
    canonical = signer.canonical_request(check)
    signature = signer.signature(signer.string_to_sign(check, canonical), check)
    assert auth.endswith("Signature=" + signature)
    assert datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")


def test_empty_and_fully_skipped_chunks(server: BulkServer) -> None:
    plugin = es(server)
    empty, bad = deliver(plugin, Chunk("t", "i"), make_chunk([{3: "x"}]))
    assert empty is Status.OK
    assert isinstance(bad, Partial) and segments(bad) == [(0, 1, Status.ERROR)]
    assert server.requests == []


def test_too_large_requests_are_split(server: BulkServer) -> None:
    # The server refuses any request of more than 2 records (413), and a single record once.
    def answer_for(body: bytes) -> tuple[int, bytes]:
        n = body.count(b"\n") // 2
        return (413, b"too large") if n > 2 else server.bulk(body)

    server.bulk_hook = answer_for
    plugin = es(server)
    [res] = deliver(plugin, make_chunk([{"n": i} for i in range(5)]))
    assert res is Status.OK
    assert sorted(d["n"] for d in server.all_docs()) == [0, 1, 2, 3, 4]
    assert plugin.counters["es_split_requests"] == 2  # 5 -> 2 + 3, then 3 -> 1 + 2
    server.bulk_hook = lambda body: (413, b"too large")
    [res] = deliver(plugin, make_chunk([{"n": 9}]))
    assert segments(res) == [(0, 1, Status.ERROR)] and "413" in reasons(res)[0]


def test_in_place_retries_carry_only_the_retryable_records(server: BulkServer) -> None:
    rejections = {2: 2, 4: 5}  # record 2 is rejected twice, record 4 every time

    def rule(op: str, meta: dict[str, Any], doc: Any) -> tuple[int, str] | None:
        left = rejections.get(doc.get("n"), 0)
        if left:
            rejections[doc["n"]] = left - 1
            return (429, "es_rejected_execution_exception") if doc["n"] == 2 \
                else (503, "unavailable_shards_exception")
        return None

    server.item_rule = rule
    plugin = es(server, attempts=3)
    plugin.base_delay = plugin.max_delay = 0.01
    [res] = deliver(plugin, make_chunk([{"n": i} for i in range(5)]))
    assert segments(res) == [(4, 5, Status.RETRY)]
    assert [[d["n"] for d in items_sent(server, k)] for k in range(3)] == \
        [[0, 1, 2, 3, 4], [2, 4], [2, 4]]
    assert sorted(d["n"] for d in server.all_docs()) == [0, 1, 2, 3]
    # a whole-request failure is tried again in place too
    server.answers.append((503, b"busy"))
    [res] = deliver(plugin, make_chunk([{"n": 7}]))
    assert res is Status.OK
    assert Elasticsearch.attempts == 3
