"""``es`` output (also ``elasticsearch``): records to Elasticsearch / OpenSearch's ``_bulk`` API.

Stages: :class:`~rillet.outputs.es.bulk.BulkEncoder` builds one NDJSON body per chunk from the
records' bytes (index naming, time and tag keys, ids, write operation); the body is gzipped when
``Compress gzip``; one POST goes to ``Path/_bulk`` (``/?pipeline=`` with ``Pipeline``) over a
pooled keep-alive connection (:mod:`rillet.net.http`, ``tls.*``), signed with SigV4 when
``AWS_Auth`` is on (:mod:`rillet.net.sigv4`); the answer is read item by item.

Outcomes, per record (Fluent Bit retries the whole chunk on any item error, forever for mapping
conflicts, and duplicates what was already indexed):

- item 2xx, or 409 on ``create`` (the document already exists): delivered;
- item 429 or 5xx (and 409 on the other operations): RETRY for exactly those records;
- any other item error (``mapper_parsing_exception``, ``illegal_argument_exception``...): ERROR
  with the item's reason, which the engine hands to the dead letters;
- whole request: network error, timeout, 408, 429 or 5xx -> RETRY; another 4xx -> ERROR with
  the answer's text; an answer that cannot be read -> RETRY.

``opensearch`` (:mod:`rillet.outputs.opensearch`) is this class with OpenSearch's option set.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import sys
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Any, ClassVar

from rillet.config.options import Option, T
from rillet.engine.chunk import Chunk
from rillet.engine.plugin import FlushResult, Output, Partial, Status, register
from rillet.engine.record_accessor import Template, TemplateError
from rillet.net.http import HttpClient, HttpResponse, host_header
from rillet.net.sigv4 import AWS_OPTIONS, Signer
from rillet.net.tls import TLS_OPTIONS, client_tls
from rillet.outputs.compress import compressor
from rillet.outputs.es.bulk import BulkEncoder, BulkSettings, read_answer

__all__ = ["BulkOutput", "Elasticsearch", "parse_cloud_id", "record_runs"]

WRITE_OPERATIONS = ("create", "index", "update", "upsert")
_RETRYABLE_HTTP = frozenset({408, 429})
# A request answered 413 is split in halves at most this many times over.
MAX_SPLITS = 10
_USER_AGENT = "rillet/0.1.0"

# Options both plugins take, in Fluent Bit's names and defaults.
BULK_OPTIONS: tuple[Option, ...] = (
    Option("host", T.STR, "127.0.0.1", "IP address or host name of the server"),
    Option("port", T.INT, "9200", "TCP port of the server"),
    Option("path", T.STR, None, "path prefix of the bulk URI (reverse proxies): "
           "<path>/_bulk"),
    Option("pipeline", T.STR, None, "ingest pipeline: <path>/_bulk/?pipeline=<name>"),
    Option("index", T.STR, "fluent-bit", "index name (strftime conversions use the flush "
           "time)"),
    Option("type", T.STR, "_doc", "document type (left out with suppress_type_name)"),
    Option("suppress_type_name", T.BOOL, "off", "leave _type out of the action lines "
           "(Elasticsearch 8, OpenSearch 2)"),
    Option("logstash_format", T.BOOL, "off", "index <logstash_prefix><separator><date>"),
    Option("logstash_prefix", T.STR, "logstash", "index prefix with logstash_format"),
    Option("logstash_prefix_key", T.STR, None, "record accessor whose value replaces "
           "logstash_prefix (falls back to it when missing)"),
    Option("logstash_prefix_separator", T.STR, "-", "between the prefix and the date"),
    Option("logstash_dateformat", T.STR, "%Y.%m.%d", "strftime format of the index date "
           "(record time, UTC)"),
    Option("time_key", T.STR, "@timestamp", "key of the timestamp added to every document"),
    Option("time_key_format", T.STR, "%Y-%m-%dT%H:%M:%S", "strftime format of the "
           "timestamp (milliseconds and 'Z' follow)"),
    Option("time_key_nanos", T.BOOL, "off", "nanoseconds instead of milliseconds in the "
           "timestamp"),
    Option("include_tag_key", T.BOOL, "off", "add the tag to every document"),
    Option("tag_key", T.STR, "flb-key", "key of the tag with include_tag_key"),
    Option("replace_dots", T.BOOL, "off", "replace '.' with '_' in key names"),
    Option("generate_id", T.BOOL, "off", "give every document an _id hashed from its "
           "content, so a resent record is not indexed twice"),
    Option("id_key", T.STR, None, "record accessor whose string value is the _id "
           "(generate_id is then ignored)"),
    Option("write_operation", T.STR, "create", "bulk operation: create, index, update or "
           "upsert", choices=WRITE_OPERATIONS),
    Option("current_time_index", T.BOOL, "off", "use the flush time instead of the record "
           "time for the index and the timestamp"),
    Option("buffer_size", T.SIZE, "512k", "response buffer (false = unlimited); the answer "
           "is always read whole, see docs/opensearch.md"),
    Option("trace_output", T.BOOL, "off", "print every bulk request body to stdout"),
    Option("trace_error", T.BOOL, "off", "log the request and the answer when items fail"),
    Option("http_user", T.STR, None, "basic authentication user"),
    Option("http_passwd", T.STR, "", "basic authentication password"),
    Option("compress", T.STR, None, "payload compression: gzip"),
    *AWS_OPTIONS,
    Option("aws_service_name", T.STR, "es", "SigV4 service name: es, or aoss for "
           "OpenSearch Serverless"),
    *TLS_OPTIONS,
)


def parse_cloud_id(cloud_id: str) -> tuple[str, int]:
    """Elastic Cloud ID ``name:base64(region$es_host[:port]$kibana_host)`` -> (host, port)."""
    _, sep, encoded = cloud_id.partition(":")
    if not sep or not encoded:
        raise ValueError("cloud_id: expected <deployment_name>:<base64_info>")
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4),
                                   validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"cloud_id: cannot decode the base64 part: {exc}") from exc
    parts = [p for p in decoded.split("$") if p]
    if len(parts) < 2:
        raise ValueError("cloud_id: the decoded value is not <region>$<es_host>$<kibana_host>")
    region, host = parts[0], parts[1]
    port = 443
    if ":" in host:
        host, _, port_text = host.partition(":")
        try:
            port = int(port_text) or 443
        except ValueError as exc:
            raise ValueError(f"cloud_id: invalid port '{port_text}'") from exc
    return f"{host}.{region}", port


def record_runs(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted record indexes -> ``(start, stop)`` runs of consecutive indexes."""
    runs: list[tuple[int, int]] = []
    for _, grp in groupby(enumerate(sorted(indices)), key=lambda p: p[1] - p[0]):
        members = [i for _, i in grp]
        runs.append((members[0], members[-1] + 1))
    return runs


def compile_accessor(option: str, text: str) -> Template:
    """A record accessor option (``$a['b']``; a bare key name gets its ``$``)."""
    source = text if text.startswith("$") else "$" + text
    try:
        tpl = Template.compile(source)
    except TemplateError as exc:
        raise ValueError(f"{option}: {exc}") from exc
    if not tpl.uses_record and not tpl.uses_tag:
        raise ValueError(f"{option}: '{text}' is not a record accessor")
    return tpl


class BulkOutput(Output):
    """What ``es`` and ``opensearch`` share: everything but the option table's differences."""

    default_workers = 2
    # Generated ids in upper-case hex (opensearch) or lower-case (es).
    upper_case_ids: ClassVar[bool] = False
    # Index may be a record-accessor template (opensearch); es has target_index for that.
    index_is_template: ClassVar[bool] = False
    # Tries per flush for records answered retryable (429, 5xx, network errors), with a
    # full-jitter pause between them, before the engine's own retry (Retry_Limit) takes over.
    attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 1.0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        host: str = o["host"] or "127.0.0.1"
        port: int = o["port"]
        if o.get("cloud_id"):
            host, port = parse_cloud_id(o["cloud_id"])
        self.host, self.port = host, port
        self.tls = client_tls(o)

        # authentication: http_user, else cloud_auth, else the API key (Fluent Bit's order)
        self.auth: str | None = None
        user = o["http_user"]
        if user:
            self.auth = _basic(user, o["http_passwd"] or "")
        elif o.get("cloud_auth"):
            cloud_user, _, cloud_pass = o["cloud_auth"].partition(":")
            self.auth = _basic(cloud_user, cloud_pass)
        elif o.get("http_api_key"):
            self.auth = "ApiKey " + o["http_api_key"]

        self.compress = compressor(o["compress"], ("gzip",))
        path = (o["path"] or "").rstrip("/")
        self.uri = f"{path}/_bulk/?pipeline={o['pipeline']}" if o["pipeline"] \
            else f"{path}/_bulk"

        index: str = o["index"] if o["index"] is not None else "fluent-bit"
        index_tpl: Template | None = None
        target = o.get("target_index")
        source = index if self.index_is_template and "$" in index else target
        if source:
            try:
                index_tpl = Template.compile(source)
            except TemplateError as exc:
                raise ValueError(f"{'index' if source is index else 'target_index'}: "
                                 f"{exc}") from exc
        prefix_key = compile_accessor("logstash_prefix_key", o["logstash_prefix_key"]) \
            if o["logstash_prefix_key"] else None
        id_key = compile_accessor("id_key", o["id_key"]) if o["id_key"] else None
        if id_key is not None and len(id_key.keys) != 1:
            raise ValueError(f"id_key: '{o['id_key']}' must name one key")
        generate_id: bool = o["generate_id"]
        if id_key is not None and generate_id:
            self.log.warning("Generate_ID is ignored when ID_key is set")
            generate_id = False
        op: str = o["write_operation"]
        if op in ("update", "upsert") and id_key is None and not generate_id:
            raise ValueError("Id_Key or Generate_Id must be set when Write_Operation update "
                             "or upsert")
        self.settings = BulkSettings(
            index=index, type=o["type"] or "_doc", suppress_type_name=o["suppress_type_name"],
            write_operation=op, logstash_format=o["logstash_format"],
            logstash_prefix=o["logstash_prefix"] or "",
            logstash_prefix_separator=o["logstash_prefix_separator"] or "",
            logstash_dateformat=o["logstash_dateformat"] or "",
            prefix_key=prefix_key, index_template=index_tpl,
            time_key=o["time_key"] or "@timestamp",
            time_key_format=o["time_key_format"] or "", time_key_nanos=o["time_key_nanos"],
            include_tag_key=o["include_tag_key"], tag_key=o["tag_key"] or "flb-key",
            replace_dots=o["replace_dots"], generate_id=generate_id, id_key=id_key,
            current_time_index=o["current_time_index"], upper_case_ids=self.upper_case_ids)
        self.encoder = BulkEncoder(self.settings)
        self.trace_output: bool = o["trace_output"]
        self.trace_error: bool = o["trace_error"]

        self.signer: Signer | None = None
        if o["aws_auth"]:
            region = o["aws_region"]
            if not region:
                raise ValueError("aws_auth enabled but aws_region not set")
            self.signer = Signer(self.log, region=region,
                                 service=o["aws_service_name"] or "es",
                                 profile=o["aws_profile"] if o.was_set("aws_profile") else None,
                                 role_arn=o["aws_role_arn"],
                                 external_id=o["aws_external_id"],
                                 sts_endpoint=o["aws_sts_endpoint"])
        workers = o["workers"] if o["workers"] is not None else self.default_workers
        self.client = HttpClient(host, port, self.tls, max_connections=max(4, 2 * workers),
                                 signer=self.signer)
        # Amazon OpenSearch's SigV4 wants the Host header without a port (as Fluent Bit).
        self.headers: list[tuple[str, str]] = [
            ("Host", host_header(host, port, self.tls.enabled, with_port=self.signer is None)),
            ("Content-Type", "application/x-ndjson"),
            ("User-Agent", _USER_AGENT if self.signer is None
             else _USER_AGENT + " aws-fluent-bit-plugin")]
        if self.compress is not None:
            self.headers.append(("Content-Encoding", "gzip"))
        if self.auth:
            self.headers.append(("Authorization", self.auth))
        for name in ("es_duplicates", "es_item_retries", "es_item_errors", "es_missing_ids",
                     "es_skipped_records", "es_split_requests"):
            self.counters.setdefault(name, 0)

    async def start(self) -> None:
        await self.client.start()

    async def stop(self) -> None:
        await self.client.close()

    # -- delivery ---------------------------------------------------------------------------
    async def flush(self, chunk: Chunk) -> FlushResult:
        errors: dict[str, list[int]] = {}
        retry: list[int] = []
        pending: list[int] | None = None  # None: every record
        for attempt in range(self.attempts):
            retry = []
            await self._deliver(chunk, pending, errors, retry, 0)
            if not retry or attempt + 1 >= self.attempts:
                break
            # In place, after a short jittered pause: only what was answered retryable.
            top = min(self.max_delay, self.base_delay * 2 ** attempt)
            await asyncio.sleep(random.uniform(self.base_delay, max(self.base_delay, top)))
            pending = sorted(retry)
        partial = Partial()
        for start, stop in record_runs(retry):
            partial.add(start, stop, Status.RETRY, "retryable bulk error")
        for reason, indices in errors.items():
            for start, stop in record_runs(indices):
                partial.add(start, stop, Status.ERROR, reason)
        return partial if partial.segments else Status.OK

    async def _deliver(self, chunk: Chunk, idx: list[int] | None,
                       errors: dict[str, list[int]], retry: list[int], depth: int) -> None:
        """Send the records ``idx`` (None: all) in one request; a request the server finds too
        large (413) is sent again as two halves."""
        if idx is None:
            enc = self.encoder.encode(chunk.tag, chunk.times, chunk.bodies)
            sent, skipped = enc.sent, enc.skipped
        else:
            enc = self.encoder.encode(chunk.tag, [chunk.times[i] for i in idx],
                                      [chunk.bodies[i] for i in idx])
            sent = [idx[j] for j in enc.sent]
            skipped = [(idx[j], why) for j, why in enc.skipped]
        counters = self.counters
        for i, reason in skipped:
            errors.setdefault(reason, []).append(i)
        if skipped:
            counters["es_skipped_records"] += len(skipped)
            self.log.error("%d record(s) skipped: %s", len(skipped), skipped[0][1])
        if enc.missing_ids:
            counters["es_missing_ids"] += enc.missing_ids
            self.log.warning("the value of %s is missing or not a string in %d record(s): "
                             "sent without _id", self.opts["id_key"], enc.missing_ids)
        if not sent:
            return
        if self.trace_output:
            _trace(enc.body)
        resp = await self._post(enc.body)
        if resp.status == 413 and len(sent) > 1 and depth < MAX_SPLITS:
            counters["es_split_requests"] += 1
            self.log.warning("bulk request of %d bytes (%d records) too large for the server "
                             "(HTTP 413): sending it in two halves", len(enc.body), len(sent))
            half = len(sent) // 2
            await self._deliver(chunk, sent[:half], errors, retry, depth + 1)
            await self._deliver(chunk, sent[half:], errors, retry, depth + 1)
            return
        retry.extend(self._outcomes(resp, enc.body, sent, errors))

    async def _post(self, payload: bytes) -> HttpResponse:
        data = self.compress(payload) if self.compress is not None else payload
        return await self.client.request("POST", self.uri, data, self.headers)

    def _outcomes(self, resp: HttpResponse, payload: bytes, sent: Sequence[int],
                  errors: dict[str, list[int]]) -> list[int]:
        """Sort the sent records by the answer; ERROR ones go into ``errors``; returns the
        records to retry."""
        log = self.log
        status = resp.status
        if status == 0:
            log.warning("http_do=-1 URI=%s: %s", self.uri, resp.error)
            return list(sent)
        if status not in (200, 201):
            log.error("HTTP status=%d URI=%s, response:\n%s", status, self.uri,
                      resp.describe(4000))
            if status in _RETRYABLE_HTTP or status >= 500 or self._expired(resp):
                return list(sent)
            errors.setdefault(f"bulk request rejected: {resp.describe()}", []).extend(sent)
            return []
        answer = read_answer(resp.body)
        if answer.all_ok:
            return []
        if answer.problem or len(answer.items) != len(sent):
            log.error("%s", answer.problem or f"bulk answer has {len(answer.items)} items for "
                      f"{len(sent)} requests")
            return list(sent)
        create = self.settings.action == "create"
        retry: list[int] = []
        failed = 0
        first = ""
        for idx, item in zip(sent, answer.items, strict=True):
            code = item.status
            if code < 300:
                continue
            if code == 409 and create:
                self.counters["es_duplicates"] += 1
                continue
            if code == 429 or code >= 500 or code == 409:
                retry.append(idx)
                continue
            failed += 1
            first = first or item.reason
            errors.setdefault(f"HTTP {code}: {item.reason}", []).append(idx)
        counters = self.counters
        counters["es_item_retries"] += len(retry)
        counters["es_item_errors"] += failed
        if failed or retry:
            log.error("bulk items failed: %d retryable, %d rejected%s", len(retry), failed,
                      f" (first: {first})" if first else "")
            if self.trace_error:
                if len(payload) < 4000:
                    log.debug("error caused by: Input\n%s",
                              payload.decode("utf-8", "replace"))
                log.error("error: Output\n%s", resp.body.decode("utf-8", "replace"))
        return retry

    def _expired(self, resp: HttpResponse) -> bool:
        """A 403 from AWS for an expired token or a clock skew: new credentials may fix it."""
        if self.signer is None or resp.status != 403:
            return False
        text = resp.body[:500].lower()
        if b"expired" in text or b"signature" in text:
            self.signer.invalidate()
            return True
        return False


def _basic(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _trace(body: bytes) -> None:
    stream = getattr(sys.stdout, "buffer", None)
    if stream is not None:
        stream.write(body)
        stream.flush()


@register
class Elasticsearch(BulkOutput):
    name = "es"
    aliases = ("elasticsearch",)
    description = "Elasticsearch"
    options = (
        *BULK_OPTIONS,
        Option("target_index", T.STR, None, "record-accessor template of the index; falls "
               "back to index when a key is missing"),
        Option("http_api_key", T.STR, None, "base64 API key (Authorization: ApiKey); ignored "
               "when http_user or cloud_auth is set"),
        Option("cloud_id", T.STR, None, "Elastic Cloud ID: sets host and port"),
        Option("cloud_auth", T.STR, None, "Elastic Cloud credentials user:password"),
    )

