"""http output against a loopback aiohttp server the test owns: bodies byte for byte in every
format, headers, compression, authentication, TLS, and what each answer means."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
from aiohttp import web

from rillet.engine.chunk import Chunk
from rillet.engine.plugin import FlushResult, Status
from rillet.outputs import formats
from rillet.outputs.compress import decompress
from rillet.outputs.gelf import GelfError, GelfFields, encode_record
from rillet.outputs.http import Http, parse_header
from tests.outputs.es.helpers import deliver, reasons, segments
from tests.outputs.es.test_options import build
from tests.plugin_kit import T0, make_chunk, make_plugin


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Peer:
    """What the server saw, and the answers it gives (status, body), 200 when none is left."""

    answers: list[tuple[int, bytes]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    delay: float = 0.0

    def header(self, k: int, name: str) -> list[str]:
        return [v for n, v in self.seen[k].headers if n.lower() == name.lower()]


def run(make: Callable[[int], Http], chunks: list[Chunk], peer: Peer | None = None,
        tls: ssl.SSLContext | None = None) -> tuple[list[FlushResult], Peer]:
    peer = peer or Peer()

    async def handle(request: web.Request) -> web.Response:
        raw = await request.content.read()
        peer.seen.append(Seen(request.method, request.path_qs, list(request.headers.items()),
                              raw))
        status, text = peer.answers.pop(0) if peer.answers else (200, b"")
        if peer.delay:
            await asyncio.sleep(peer.delay)
        return web.Response(status=status, body=text)

    async def main() -> list[FlushResult]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        plugin = make(port)
        await plugin.start()
        try:
            return [await plugin.flush(c) for c in chunks]
        finally:
            await plugin.stop()
            await runner.cleanup()

    return asyncio.run(main()), peer


def http(**settings: str) -> Callable[[int], Http]:
    return lambda port: make_plugin(Http, port=str(port), **settings)


RECORDS = [{"message": "hi"}, b'{"n":1,"s":"caf\xc3\xa9"}']


@pytest.mark.parametrize("fmt,date_format,expected", [
    ("json", "epoch", b'[{"date":1700000000,"message":"hi"},'
                      b'{"date":1700000000,"n":1,"s":"caf\\u00e9"}]'),
    ("json_lines", "iso8601", b'{"date":"2023-11-14T22:13:20.123456Z","message":"hi"}\n'
                              b'{"date":"2023-11-14T22:13:20.123456Z","n":1,"s":"caf\\u00e9"}\n'),
    ("json_stream", "double", b'{"date":1700000000.123457,"message":"hi"}'
                              b'{"date":1700000000.123457,"n":1,"s":"caf\\u00e9"}'),
    ("json", "epoch_ms", b'[{"date":1700000000123,"message":"hi"},'
                         b'{"date":1700000000123,"n":1,"s":"caf\\u00e9"}]'),
])
def test_json_formats_byte_exact(fmt: str, date_format: str, expected: bytes) -> None:
    [res], peer = run(http(format=fmt, json_date_format=date_format), [make_chunk(RECORDS)])
    assert res is Status.OK
    assert peer.seen[0].body == expected
    assert peer.header(0, "Content-Type") == ["application/json"]
    assert peer.seen[0].method == "POST" and peer.seen[0].path == "/"


def test_json_without_date_key() -> None:
    [_], peer = run(http(json_date_key="false"), [make_chunk([{"a": 1}])])
    assert peer.seen[0].body == b'[{"a":1}]'


def test_msgpack_is_fluent_bits_chunk_format() -> None:
    times = [T0, T0 + 5]
    [res], peer = run(http(format="msgpack"), [make_chunk(RECORDS, times=times)])
    assert res is Status.OK
    body = peer.seen[0].body
    assert peer.header(0, "Content-Type") == ["application/msgpack"]
    assert body == formats.pack_records(times, RECORDS)
    up = msgpack.Unpacker(raw=False)
    up.feed(body)
    events = list(up)
    assert events[1][1] == {"n": 1, "s": "café"}
    ext = events[0][0][0]
    assert ext.code == 0 and int.from_bytes(ext.data[:4], "big") == T0 // 10**9
    assert int.from_bytes(ext.data[4:], "big") == T0 % 10**9
    assert events[0][0][1] == {}


GELF_RECORD = {"short_message": "hi", "host": "h", "level": "err", "k": {"a": 1, "b": {"c": "d"}},
               "l": [1, "x", {"m": 2}], "f": 1.5, "b": True, "id": "dropped", "nil": None,
               "bad key!": "v"}


def test_gelf_byte_exact_and_per_record_errors() -> None:
    chunk = make_chunk([GELF_RECORD, {"message": "no short message"}, {"short_message": "2"}])
    [res], peer = run(http(format="gelf"), [chunk])
    assert segments(res) == [(1, 2, Status.ERROR)]
    assert "missing short_message" in reasons(res)[0]
    first, second = peer.seen[0].body.split(b"\n")[:2]
    assert first == (b'{"version":"1.1", "short_message":"hi", "host":"h", "level":3, '
                     b'"_k_a":1, "_k_b_c":"d", "_l":"1, x, m=2", "_f":1.500000, "_b":"true", '
                     b'"_bad_key_":"v", "timestamp":1700000000.123457}')
    assert second == b'{"version":"1.1", "short_message":"2", "timestamp":1700000000.123457}'
    assert peer.seen[0].body.endswith(b"\n")


def test_gelf_keys_and_levels() -> None:
    fields = GelfFields(short_message_key="log", host_key="node", level_key="sev",
                        timestamp_key="ts", full_message_key="trace")
    out = encode_record({"log": "m", "node": "n1", "sev": "5", "ts": 12.5, "trace": "t",
                         "log2": "x"}, T0, fields)
    assert out == (b'{"version":"1.1", "short_message":"m", "host":"n1", "level":5, '
                   b'"timestamp":12.500000, "full_message":"t", "_log2":"x"}')
    for bad in (9, "loud"):
        with pytest.raises(GelfError, match="level"):
            encode_record({"short_message": "m", "level": bad}, T0, GelfFields())


def test_gelf_settings_reach_the_encoder() -> None:
    [res], peer = run(http(format="gelf", gelf_short_message_key="log",
                           gelf_timestamp_key="t", gelf_host_key="h", gelf_level_key="lv",
                           gelf_full_message_key="full"),
                      [make_chunk([{"log": "x", "t": 1, "h": "a", "lv": 1, "full": "y"}])])
    assert res is Status.OK
    assert peer.seen[0].body == (b'{"version":"1.1", "short_message":"x", "timestamp":1, '
                                 b'"host":"a", "level":1, "full_message":"y"}\n')


def test_headers_tag_auth_uri_and_method() -> None:
    [res], peer = run(http(uri="/ingest?x=1", http_method="PUT", header_tag="FLUENT-TAG",
                           http_user="u", http_passwd="p",
                           header="X-Key-A Value A"),
                      [make_chunk([{"a": 1}], tag="app.web")])
    assert res is Status.OK
    seen = peer.seen[0]
    assert (seen.method, seen.path) == ("PUT", "/ingest?x=1")
    assert peer.header(0, "FLUENT-TAG") == ["app.web"]
    assert peer.header(0, "X-Key-A") == ["Value A"]
    assert peer.header(0, "Authorization") == ["Basic " + base64.b64encode(b"u:p").decode()]
    assert peer.header(0, "User-Agent") == ["Fluent-Bit"]


def test_repeated_and_duplicated_headers() -> None:
    plugin = build(Http, header="X-A 1")
    assert plugin.user_headers == [("X-A", "1")]

    def factory(dup: str, extra: list[tuple[str, str]]) -> Callable[[int], Http]:
        def make(port: int) -> Http:
            p = make_plugin(Http, port=str(port), allow_duplicated_headers=dup)
            p.user_headers = extra
            return p
        return make

    repeated = [("X-B", "1"), ("X-B", "2")]
    [_], peer = run(factory("on", repeated), [make_chunk([{"a": 1}])])
    assert peer.header(0, "X-B") == ["1", "2"]
    [_], peer = run(factory("off", [parse_header("Content-Type text/plain"), *repeated]),
                    [make_chunk([{"a": 1}])])
    assert peer.header(0, "Content-Type") == ["text/plain"]
    assert peer.header(0, "X-B") == ["2"]
    # allowed duplicates really are sent twice: aiohttp's server refuses two Content-Types
    [res], peer = run(factory("on", [("Content-Type", "text/plain")]), [make_chunk([{"a": 1}])])
    assert res is Status.ERROR and peer.seen == []


@pytest.mark.parametrize("algo", ["gzip", "zstd"])
def test_compression(algo: str) -> None:
    [res], peer = run(http(compress=algo, format="json_lines", json_date_key="off"),
                      [make_chunk([{"a": 1}])])
    assert res is Status.OK
    assert peer.header(0, "Content-Encoding") == [{"gzip": "gzip", "zstd": "zstd"}[algo]]
    body = peer.seen[0].body
    assert decompress(algo, body) == b'{"a":1}\n'
    if algo == "gzip":
        assert gzip.decompress(body) == b'{"a":1}\n'


@pytest.mark.parametrize("status,expected", [(200, Status.OK), (204, Status.OK),
                                             (500, Status.RETRY), (503, Status.RETRY),
                                             (429, Status.RETRY), (408, Status.RETRY),
                                             (400, Status.ERROR), (404, Status.ERROR),
                                             (301, Status.ERROR)])
def test_answers(status: int, expected: Status) -> None:
    peer = Peer(answers=[(status, b"the reason")])
    [res], _ = run(http(), [make_chunk([{"a": 1}])], peer)
    assert res is expected


def test_error_reason_and_log_response_payload() -> None:
    peer = Peer(answers=[(400, b"bad field"), (400, b"bad field")])
    results, _ = run(http(), [make_chunk([{"a": 1}])], peer)
    assert results[0] is Status.ERROR
    gelf_peer = Peer(answers=[(422, b"unprocessable")])
    [res], _ = run(http(format="gelf"), [make_chunk([{"x": 1}, {"short_message": "m"}])],
                   gelf_peer)
    assert segments(res) == [(1, 2, Status.ERROR), (0, 1, Status.ERROR)]
    assert "unprocessable" in reasons(res)[0]
    quiet = Peer(answers=[(422, b"secret body")])
    [res], _ = run(http(format="gelf", log_response_payload="off"),
                   [make_chunk([{"x": 1}, {"short_message": "m"}])], quiet)
    assert "secret" not in " ".join(reasons(res))


def test_connection_refused_is_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [res] = deliver(make_plugin(Http, port=str(port)), make_chunk([{"a": 1}]))
    assert res is Status.RETRY


def test_tls(tmp_path: Any) -> None:
    import trustme
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    [ok], peer = run(lambda port: make_plugin(Http, port=str(port), tls="on",
                                              **{"tls.ca_file": str(ca_file),
                                                 "tls.verify_hostname": "on"}),
                     [make_chunk([{"a": 1}])], tls=ctx)
    assert ok is Status.OK and peer.header(0, "Host") == [f"127.0.0.1:{_port(peer)}"]
    [bad], _ = run(lambda port: make_plugin(Http, port=str(port), tls="on"),
                   [make_chunk([{"a": 1}])], tls=ctx)
    assert bad is Status.RETRY


def _port(peer: Peer) -> str:
    return peer.header(0, "Host")[0].rsplit(":", 1)[1]


@pytest.mark.parametrize("settings,message", [
    ({"format": "xml"}, "unrecognized 'format'"),
    ({"json_date_format": "weird"}, "json_date_format"),
    ({"header": "NoValue"}, "Name Value"),
    ({"aws_auth": "on"}, "aws_region"),
    ({"compress": "snappy"}, "unknown compression"),
    ({"http_method": "GET"}, "invalid value"),
])
def test_startup_errors(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(Http, **settings)


def test_defaults() -> None:
    p = make_plugin(Http)
    assert (p.client.host, p.client.port, p.uri, p.format, p.method) == \
        ("127.0.0.1", 80, "/", "json", "POST")
    assert Http.default_workers == 2


@pytest.mark.usefixtures("aws_env")
def test_aws_sigv4() -> None:
    [res], peer = run(http(aws_auth="on", aws_region="us-east-1", aws_service="xray"),
                      [make_chunk([{"a": 1}])])
    assert res is Status.OK
    [auth] = peer.header(0, "Authorization")
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTESTTESTTEST/")
    assert "/us-east-1/xray/aws4_request" in auth
    assert peer.header(0, "x-amz-content-sha256")


def test_response_timeout_is_retried() -> None:
    [res], peer = run(http(**{"http.response_timeout": "0.2"}), [make_chunk([{"a": 1}])],
                      Peer(delay=0.5))
    assert res is Status.RETRY and len(peer.seen) == 1


def test_proxy() -> None:
    def make(port: int) -> Http:
        return make_plugin(Http, host="logs.example.invalid", port="8080",
                           proxy=f"http://127.0.0.1:{port}")
    [res], peer = run(make, [make_chunk([{"a": 1}])])
    assert res is Status.OK
    assert peer.header(0, "Host") == ["logs.example.invalid:8080"]
