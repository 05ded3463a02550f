"""``http`` output: records POSTed (or PUT) to an HTTP endpoint (Fluent Bit's out_http).

One request per chunk, body by ``Format``:

- ``json`` (default): ``[{"date":1700000000.123457,...},...]``; ``json_lines``: one object per
  line; ``json_stream``: objects back to back (``flb_pack_msgpack_to_json_format``, with
  ``json_date_key`` / ``json_date_format``; the same encoder as ``stdout``);
- ``msgpack``: the records as Fluent Bit's chunk format, ``[[EventTime, {}], {record}]`` each;
- ``gelf``: one GELF message per line (:mod:`rillet.outputs.gelf`, ``gelf_*_key``).

Headers: ``Content-Type`` (``application/json``, or ``application/msgpack``), ``User-Agent``,
basic authentication (``http_user`` / ``http_passwd``), the tag under ``header_tag``, every
``header Name Value`` in order; with ``allow_duplicated_headers off`` a later header replaces an
earlier one of the same name (so ``header Content-Type ...`` overrides the default).
``compress gzip`` (or ``zstd``) sets ``Content-Encoding``; ``aws_auth`` signs with SigV4.

Outcomes: 2xx delivered; 5xx, 429, 408 and network errors or timeouts RETRY; any other status
(4xx, 3xx) is ERROR with the status and the start of the answer (Fluent Bit retries every
non-2xx, so a request the server will never accept is retried until ``Retry_Limit``). A record
that cannot be encoded (GELF without a short message, an invalid level) is ERROR alone; the
others are sent.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import msgpack

from rillet.config.options import Option, T
from rillet.engine.chunk import Chunk, body_dict
from rillet.engine.plugin import FlushResult, Output, Partial, Status, register
from rillet.net.http import HttpClient, HttpResponse, host_header
from rillet.net.sigv4 import Signer
from rillet.net.tls import TLS_OPTIONS, client_tls
from rillet.outputs import formats
from rillet.outputs.compress import CONTENT_ENCODING, compressor
from rillet.outputs.es import record_runs
from rillet.outputs.gelf import GelfError, GelfFields, encode_record

_NS = 1_000_000_000
_USER_AGENT = "Fluent-Bit"
_RETRYABLE = frozenset({408, 429})
FORMATS = ("json", "json_lines", "json_stream", "msgpack", "gelf")


def _check_format(value: str) -> str | None:
    return None if value.strip().lower() in FORMATS else \
        f"unrecognized 'format' option '{value}': expected one of {', '.join(FORMATS)}"


def parse_header(text: str) -> tuple[str, str]:
    """``Name Value with spaces`` (Fluent Bit's SLIST_1: the first space splits)."""
    name, _, value = text.strip().partition(" ")
    if not name or not value.strip():
        raise ValueError(f"header: '{text}' is not 'Name Value'")
    return name, value.strip()


def pack_msgpack(times: list[int], bodies: list[Any]) -> bytes:
    """Records as Fluent Bit's chunk msgpack: ``[[ext(0, sec, nsec), {}], body]`` each."""
    packer = msgpack.Packer()
    pack = packer.pack
    ext = msgpack.ExtType
    be = struct.Struct(">II").pack
    out: list[bytes] = []
    append = out.append
    for t, body in zip(times, bodies, strict=True):
        sec, nsec = divmod(t, _NS)
        append(pack([[ext(0, be(sec & 0xFFFFFFFF, nsec)), {}], body_dict(body)]))
    return b"".join(out)


@register
class Http(Output):
    name = "http"
    description = "HTTP Output"
    default_workers = 2
    options = (
        Option("host", T.STR, "127.0.0.1", "IP address or host name of the server"),
        Option("port", T.INT, "80", "TCP port of the server"),
        Option("uri", T.STR, "/", "path of the request, e.g. /something"),
        Option("http_method", T.STR, "POST", "POST or PUT", choices=("post", "put")),
        Option("format", T.STR, "json", "body format: json, json_lines, json_stream, "
               "msgpack or gelf", check=_check_format),
        Option("json_date_key", T.STR, "date", "key of the date in JSON formats; false "
               "leaves it out"),
        Option("json_date_format", T.STR, None, formats.DATE_FORMAT_DOC + " (default: "
               "double)"),
        Option("header", T.STR, None, "a header 'Name Value' (repeat the key for more)",
               multiple=True),
        Option("header_tag", T.STR, None, "header that carries the record tag"),
        Option("allow_duplicated_headers", T.BOOL, "true", "send every header as given; "
               "off: a later header replaces an earlier one of the same name"),
        Option("log_response_payload", T.BOOL, "true", "include the answer's body in logs"),
        Option("http_user", T.STR, None, "basic authentication user"),
        Option("http_passwd", T.STR, "", "basic authentication password"),
        Option("compress", T.STR, None, "payload compression: gzip or zstd"),
        Option("proxy", T.STR, None, "HTTP proxy, http://host:port"),
        Option("http.response_timeout", T.TIME, "60s", "longest wait for an answer"),
        Option("gelf_timestamp_key", T.STR, None, "record key of the GELF timestamp"),
        Option("gelf_host_key", T.STR, None, "record key of the GELF host"),
        Option("gelf_short_message_key", T.STR, None, "record key of the GELF short message"),
        Option("gelf_full_message_key", T.STR, None, "record key of the GELF full message"),
        Option("gelf_level_key", T.STR, None, "record key of the GELF level"),
        Option("aws_auth", T.BOOL, "false", "sign requests with AWS SigV4"),
        Option("aws_service", T.STR, None, "SigV4 service code (es, xray...)"),
        Option("aws_region", T.STR, None, "AWS region for SigV4"),
        Option("aws_sts_endpoint", T.STR, None, "STS endpoint used with aws_role_arn"),
        Option("aws_role_arn", T.STR, None, "IAM role to assume"),
        Option("aws_external_id", T.STR, None, "external ID for aws_role_arn"),
        Option("aws_profile", T.STR, None, "profile of the shared AWS files"),
        *TLS_OPTIONS,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        self.format: str = o["format"].strip().lower()
        self.encoder: formats.JsonEncoder | None = None
        if self.format in ("json", "json_lines", "json_stream"):
            self.encoder = formats.JsonEncoder(
                self.format, formats.date_key_option(o["json_date_key"]),
                formats.date_format_option(o["json_date_format"]))
        self.gelf = GelfFields(
            host_key=o["gelf_host_key"] or "host",
            short_message_key=o["gelf_short_message_key"] or "short_message",
            full_message_key=o["gelf_full_message_key"] or "full_message",
            timestamp_key=o["gelf_timestamp_key"] or "timestamp",
            level_key=o["gelf_level_key"] or "level")
        self.method: str = o["http_method"].upper()
        uri: str = o["uri"] or "/"
        self.uri = uri if uri.startswith("/") else "/" + uri
        self.tls = client_tls(o)
        self.compress = compressor(o["compress"], ("gzip", "zstd"))
        self.header_tag: str | None = o["header_tag"] or None
        self.allow_dup: bool = o["allow_duplicated_headers"]
        self.log_payload: bool = o["log_response_payload"]
        host: str = o["host"] or "127.0.0.1"
        port: int = o["port"]
        self.signer: Signer | None = None
        if o["aws_auth"]:
            if not o["aws_region"] or not o["aws_service"]:
                raise ValueError("aws_auth requires aws_region and aws_service")
            self.signer = Signer(self.log, region=o["aws_region"], service=o["aws_service"],
                                 profile=o["aws_profile"], role_arn=o["aws_role_arn"],
                                 external_id=o["aws_external_id"],
                                 sts_endpoint=o["aws_sts_endpoint"])
        content_type = "application/msgpack" if self.format == "msgpack" \
            else "application/json"
        base: list[tuple[str, str]] = [
            ("Host", host_header(host, port, self.tls.enabled)),
            ("Content-Type", content_type), ("User-Agent", _USER_AGENT)]
        if o["compress"] and self.compress is not None:
            base.append(("Content-Encoding",
                         CONTENT_ENCODING[o["compress"].strip().lower()]))
        if o["http_user"]:
            token = f"{o['http_user']}:{o['http_passwd'] or ''}".encode()
            base.append(("Authorization", "Basic " + base64.b64encode(token).decode()))
        self.user_headers = [parse_header(h) for h in o["header"]]
        self.base_headers = base
        workers = o["workers"] if o["workers"] is not None else self.default_workers
        self.client = HttpClient(host, port, self.tls, timeout=o["http.response_timeout"],
                                 max_connections=max(4, 2 * workers), proxy=o["proxy"],
                                 signer=self.signer)
        self.counters.setdefault("http_skipped_records", 0)

    async def start(self) -> None:
        await self.client.start()

    async def stop(self) -> None:
        await self.client.close()

    def headers(self, tag: str) -> list[tuple[str, str]]:
        """The request's headers, in order (duplicates merged unless allowed)."""
        headers = list(self.base_headers)
        if self.header_tag:
            if any(c in tag for c in "\r\n\0"):
                self.log.warning("tag not sent in %s: it holds a line break or NUL",
                                 self.header_tag)
            else:
                headers.append((self.header_tag, tag))
        headers.extend(self.user_headers)
        if self.allow_dup:
            return headers
        last = {name.lower(): i for i, (name, _) in enumerate(headers)}
        return [h for i, h in enumerate(headers) if last[h[0].lower()] == i]

    def body(self, chunk: Chunk, errors: dict[str, list[int]]) -> tuple[bytes, int]:
        """The request body and the number of records in it (bad ones go to ``errors``)."""
        if self.encoder is not None:
            return self.encoder.encode(chunk.times, chunk.bodies), len(chunk)
        if self.format == "msgpack":
            return pack_msgpack(chunk.times, chunk.bodies), len(chunk)
        lines: list[bytes] = []
        fields = self.gelf
        for i, (t, body) in enumerate(zip(chunk.times, chunk.bodies, strict=True)):
            try:
                lines.append(encode_record(body_dict(body), t, fields) + b"\n")
            except (GelfError, ValueError) as exc:
                errors.setdefault(f"error encoding to GELF: {exc}", []).append(i)
        return b"".join(lines), len(lines)

    async def flush(self, chunk: Chunk) -> FlushResult:
        errors: dict[str, list[int]] = {}
        try:
            payload, count = self.body(chunk, errors)
        except (TypeError, ValueError) as exc:
            self.log.error("failed to convert records: %s", exc)
            return Partial().add(0, len(chunk), Status.ERROR, f"cannot encode records: {exc}")
        status = Status.OK
        reason = ""
        if count:
            resp = await self._send(payload, chunk.tag)
            status, reason = self._judge(resp)
        if errors:
            self.counters["http_skipped_records"] += sum(len(v) for v in errors.values())
            self.log.error("%s", next(iter(errors)))
        if not errors:
            return status
        failed = {i for v in errors.values() for i in v}
        partial = Partial()
        if status is not Status.OK:
            sent = [i for i in range(len(chunk)) if i not in failed]
            for start, stop in record_runs(sent):
                partial.add(start, stop, status, reason)
        for why, indices in errors.items():
            for start, stop in record_runs(indices):
                partial.add(start, stop, Status.ERROR, why)
        return partial

    async def _send(self, payload: bytes, tag: str) -> HttpResponse:
        data = self.compress(payload) if self.compress is not None else payload
        return await self.client.request(self.method, self.uri, data, self.headers(tag))

    def _judge(self, resp: HttpResponse) -> tuple[Status, str]:
        where = f"{self.client.host}:{self.client.port}"
        if resp.status == 0:
            self.log.error("could not flush records to %s: %s", where, resp.error)
            return Status.RETRY, resp.error
        text = resp.describe() if self.log_payload else f"HTTP {resp.status}"
        if resp.ok:
            self.log.debug("%s, %s", where, text)
            return Status.OK, ""
        self.log.error("%s, HTTP status=%d%s", where, resp.status,
                       "\n" + resp.body.decode("utf-8", "replace")
                       if self.log_payload and resp.body else "")
        if resp.status >= 500 or resp.status in _RETRYABLE:
            return Status.RETRY, text
        return Status.ERROR, f"rejected by {where}: {text}"
