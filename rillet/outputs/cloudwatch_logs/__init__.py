"""``cloudwatch_logs`` output (also named ``cloudwatch``): records to Amazon CloudWatch Logs.

One plugin under both Fluent Bit names, accepting both dialects' options: the C plugin's
(``log_group_template``, ``log_stream_template`` with record-accessor templates such as
``$kubernetes['namespace_name']``, ``log_group_class``...) and the Go plugin's (``$(...)``
templates inside ``log_group_name`` / ``log_stream_name``, ``default_log_group_name``,
``default_log_stream_name``, ``new_log_group_tags``, ``auto_create_stream``).

Stages (as Vector splits a sink): the destination of each record (:meth:`destinations`), encoding
and batching under the PutLogEvents limits (:mod:`.encode`), the requests and group/stream
management (:mod:`.api`), and the shared AWS delivery policy (:mod:`rillet.aws.policy`). A flush
answers per record: delivered batches are OK, batches that are still throttled or failing are
RETRY (only they are retried, so no duplicates), and events that can never be accepted are ERROR
with the reason (counted in ``dropped_records``).

Destinations: the log group is ``log_group_template`` (falling back to ``log_group_name``), or
``log_group_name`` (a ``$(...)`` template falls back to ``default_log_group_name``); the stream is
``log_stream_template``, else ``log_stream_name``, else ``log_stream_prefix`` + the tag.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rillet.aws.client import AwsClient
from rillet.aws.options import AWS_OPTIONS, connect
from rillet.aws.policy import DeliveryPolicy
from rillet.config.options import Option, T
from rillet.engine.chunk import Chunk, body_dict
from rillet.engine.plugin import FlushResult, Output, Partial, Status, register
from rillet.engine.record_accessor import Template, TemplateError
from rillet.outputs.cloudwatch_logs import encode as enc
from rillet.outputs.cloudwatch_logs.api import (
    BatchResult,
    CloudWatchLogsApi,
    Dest,
    GroupSettings,
    Result,
)

RETENTION_DAYS = (0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                  1827, 2192, 2557, 2922, 3288, 3653)


def _check_retention(value: int) -> str | None:
    if value not in RETENTION_DAYS:
        return (f"invalid log_retention_days {value}; allowed: "
                + ", ".join(str(d) for d in RETENTION_DAYS[1:]))
    return None


def parse_tags(text: str | None) -> tuple[tuple[str, str], ...]:
    """``k=v,k2=v2`` (the Go plugin's ``new_log_group_tags``)."""
    if not text:
        return ()
    out: list[tuple[str, str]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"new_log_group_tags: '{item}' is not key=value")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def _template(option: str, text: str) -> Template:
    try:
        return Template.compile(text)
    except TemplateError as exc:
        raise ValueError(f"{option}: {exc}") from exc


@register
class CloudWatchLogs(Output):
    name = "cloudwatch_logs"
    aliases = ("cloudwatch",)
    description = "Send logs to Amazon CloudWatch Logs"
    default_workers = 1
    options = (
        Option("region", T.STR, None, "AWS region of the log group (required)"),
        Option("log_group_name", T.STR, None, "log group; may hold $(...) templates (Go "
               "dialect)"),
        Option("log_group_template", T.STR, None, "record-accessor template for the log group, "
               "e.g. $kubernetes['namespace_name']; falls back to log_group_name"),
        Option("log_stream_name", T.STR, None, "log stream; may hold $(...) templates"),
        Option("log_stream_prefix", T.STR, None, "the stream is this prefix + the record tag"),
        Option("log_stream_template", T.STR, None, "record-accessor template for the log "
               "stream; falls back to log_stream_name or log_stream_prefix + tag"),
        Option("default_log_group_name", T.STR, "fluentbit-default", "log group when a "
               "template in log_group_name has no value"),
        Option("default_log_stream_name", T.STR, "/fluentbit-default", "log stream when a "
               "template has no value and there is no other name"),
        Option("log_key", T.STR, None, "send only this key's value (strings raw, other values "
               "as JSON) instead of the whole record"),
        Option("log_format", T.STR, None, "x-amzn-logs-format header, e.g. json/emf"),
        Option("auto_create_group", T.BOOL, "false", "create the log group when it does not "
               "exist"),
        Option("auto_create_stream", T.BOOL, "true", "create log streams (off: they must "
               "exist)"),
        Option("log_retention_days", T.INT, "0", "retention set on log groups this output "
               "creates (0 = never expire)", check=_check_retention),
        Option("log_group_class", T.STR, None, "class of created log groups",
               choices=("standard", "infrequent_access")),
        Option("new_log_group_tags", T.STR, None, "tags of created log groups: k=v,k2=v2"),
        Option("endpoint", T.STR, None, "CloudWatch Logs endpoint: host, host:port or URL"),
        *AWS_OPTIONS,
        Option("metric_namespace", T.STR, None, "EMF conversion of metrics (not supported)"),
        Option("metric_dimensions", T.STR, None, "EMF dimensions (not supported)"),
        Option("add_entity", T.BOOL, "false", "Application Signals entity (not supported)"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        if not o["region"]:
            raise ValueError("'region' is a required field")
        for key in ("metric_namespace", "metric_dimensions"):
            if o[key]:
                raise ValueError(f"{key}: EMF conversion of metrics is not supported in this "
                                 "version")
        if o["add_entity"]:
            raise ValueError("add_entity: Application Signals entities are not supported in "
                             "this version")
        if not o["log_group_name"] and not o["log_group_template"]:
            raise ValueError("'log_group_name' is a required field")
        if o["log_stream_name"] and o["log_stream_prefix"]:
            raise ValueError("either log_stream_name or log_stream_prefix can be set, not both")
        if not (o["log_stream_name"] or o["log_stream_prefix"] or o["log_stream_template"]):
            raise ValueError("either log_stream_name or log_stream_prefix is required")
        self.log_key: str | None = o["log_key"] or None

        # Destination templates and their fallbacks.
        group_name: str | None = o["log_group_name"] or None
        self.group_tpl: Template | None = None
        self.group_fallback: str = o["default_log_group_name"] or "fluentbit-default"
        static_group = group_name
        if group_name is not None and "$(" in group_name:
            self.group_tpl = _template("log_group_name", group_name)
            static_group = None
        if o["log_group_template"]:
            self.group_tpl = _template("log_group_template", o["log_group_template"])
        if static_group is not None:
            self.group_fallback = static_group
        self.static_group = static_group if self.group_tpl is None else None

        stream_name: str | None = o["log_stream_name"] or None
        self.prefix: str | None = o["log_stream_prefix"]
        self.stream_tpl: Template | None = None
        self.stream_fallback: str | None = None  # None: prefix + tag
        if stream_name is not None and "$(" in stream_name:
            self.stream_tpl = _template("log_stream_name", stream_name)
            self.stream_fallback = o["default_log_stream_name"] or "/fluentbit-default"
        elif stream_name is not None:
            self.stream_fallback = stream_name
        if o["log_stream_template"]:
            self.stream_tpl = _template("log_stream_template", o["log_stream_template"])
        if self.stream_fallback is None and self.prefix is None:
            self.stream_fallback = o["default_log_stream_name"] or "/fluentbit-default"
        self.per_record = bool((self.group_tpl and self.group_tpl.uses_record)
                               or (self.stream_tpl and self.stream_tpl.uses_record))

        group_class = o["log_group_class"]
        self.group_settings = GroupSettings(
            auto_create=o["auto_create_group"], retention_days=o["log_retention_days"],
            group_class=group_class.upper() if group_class else None,
            tags=parse_tags(o["new_log_group_tags"]))

        region: str = o["region"]
        self.credentials, self.client = connect(o, AwsClient, "logs", region, self.log,
                                                endpoint=o["endpoint"])
        workers = o["workers"] if o["workers"] is not None else self.default_workers
        self.policy = DeliveryPolicy(self.log, self.counters,
                                     max_concurrency=max(8, 4 * max(1, workers)))
        self.api = CloudWatchLogsApi(self.client, self.policy, self.log, self.counters,
                                     self.group_settings,
                                     auto_create_stream=o["auto_create_stream"],
                                     log_format=o["log_format"])
        for name in ("cloudwatch_truncated_events", "cloudwatch_skipped_events",
                     "cloudwatch_template_fallbacks"):
            self.counters.setdefault(name, 0)
        self._warned_fallback = False

    async def start(self) -> None:
        await self.client.start()
        await self.credentials.start()

    async def stop(self) -> None:
        await self.client.close()

    # -- destinations -------------------------------------------------------------------------
    def _fallback(self, what: str, template: Template, tag: str) -> None:
        self.counters["cloudwatch_template_fallbacks"] += 1
        if not self._warned_fallback:
            self._warned_fallback = True
            self.log.warning("[record accessor] translation failed for %s template '%s' "
                             "(tag %s): using the fallback name (logged once, counted in "
                             "cloudwatch_template_fallbacks)", what, template.source, tag)

    def destination(self, tag: str, record: dict[str, Any] | None) -> Dest:
        """The (log group, log stream) of one record."""
        tpl = self.group_tpl
        if tpl is None:
            group = self.static_group or self.group_fallback
        else:
            group = tpl.render(tag, record) or ""
            if not group:
                self._fallback("log group", tpl, tag)
                group = self.group_fallback
        stpl = self.stream_tpl
        stream = ""
        if stpl is not None:
            stream = stpl.render(tag, record) or ""
            if not stream:
                self._fallback("log stream", stpl, tag)
        if not stream:
            fb = self.stream_fallback
            stream = fb if fb is not None else (self.prefix or "") + tag
        return group, stream

    def destinations(self, chunk: Chunk) -> dict[Dest, list[int] | None]:
        """Destinations of a chunk's records: record indices per destination (None = all)."""
        tag = chunk.tag
        if not self.per_record:
            return {self.destination(tag, None): None}
        out: dict[Dest, list[int] | None] = {}
        dest_of = self.destination
        for i, body in enumerate(chunk.bodies):
            try:
                record = body_dict(body)
            except ValueError:
                record = {}
            dest = dest_of(tag, record)
            lst = out.get(dest)
            if lst is None:
                out[dest] = [i]
            else:
                lst.append(i)
        return out

    # -- delivery -----------------------------------------------------------------------------
    async def flush(self, chunk: Chunk) -> FlushResult:
        partial = Partial()
        # Records answered ERROR, by reason: one segment per run of records, not per record.
        errors: dict[str, list[int]] = {}
        jobs = []
        plans: list[tuple[enc.Events, list[tuple[int, int]]]] = []
        counters = self.counters
        for dest, indices in self.destinations(chunk).items():
            events = enc.encode(chunk.times, chunk.bodies, indices, self.log_key)
            if events.truncated:
                counters["cloudwatch_truncated_events"] += events.truncated
                self.log.warning("Truncating %d events larger than the %d bytes CloudWatch "
                                 "allows", events.truncated, enc.MAX_EVENT_BYTES)
            if events.skipped:
                counters["cloudwatch_skipped_events"] += len(events.skipped)
                for i, reason in events.skipped:
                    errors.setdefault(reason, []).append(i)
            batches = enc.split(events)
            plans.append((events, batches))
            group, stream = dest
            for start, stop in batches:
                body = enc.request_body(group, stream, events, start, stop)
                jobs.append(self.api.put(dest, body, stop - start))
        results: list[BatchResult] = await asyncio.gather(*jobs) if jobs else []
        k = 0
        for events, batches in plans:
            for start, stop in batches:
                res = results[k]
                k += 1
                if res.result is Result.OK:
                    for a, b, why in res.rejected:
                        errors.setdefault(f"rejected by CloudWatch Logs: {why}", []).extend(
                            events.idx[start + a:start + b])
                    continue
                status = Status.RETRY if res.result is Result.RETRY else Status.ERROR
                for s, e in enc.index_ranges(events.idx[start:stop]):
                    partial.add(s, e, status, res.reason)
        for reason, indices in errors.items():
            for s, e in enc.index_ranges(indices):
                partial.add(s, e, Status.ERROR, reason)
        if not partial.segments:
            return Status.OK
        return partial
