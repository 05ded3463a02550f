"""``kubernetes`` filter: pod metadata on every record (Fluent Bit's filter_kubernetes).

Per batch (one tag, i.e. one container's file) the filter decides everything once, outside the
record loop: the container's identity from the tag (tag.py), the pod and namespace objects from
the metadata source (source.py: files, the API server or the kubelet), the serialized
``kubernetes`` / ``kubernetes_namespace`` blocks (render.py) and the annotation parser and
exclusion decisions (merge.py). The loop then only merges ``log`` when asked and splices the
cached block bytes into each record.

When the source does not know a pod yet (the first line of a pod the watch has not reported),
the tag's batches are held, in order, until it answers or ``kube_meta_wait`` passes; then they
go on enriched, or without metadata (counted in ``kube_unenriched_records``). Records are never
dropped or blocked because the API is unreachable. See docs/kubernetes.md.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import AckList, Batch, Body
from rillet.engine.plugin import Filter, register
from rillet.filters.kubernetes import merge as mg
from rillet.filters.kubernetes import render as rd
from rillet.filters.kubernetes.preload import ChainSource, PreloadSource
from rillet.filters.kubernetes.source import Entry, MetaSource
from rillet.filters.kubernetes.tag import (
    DEFAULT_TAG_REGEX,
    JOURNAL_REGEX,
    Identity,
    TagResolver,
    identity_of,
)
from rillet.parsers.parser import Parser, RegexPlan

try:  # part A's module: the API server / kubelet source and its option rows
    from rillet.filters.kubernetes.api import API_OPTIONS, check_api_options
except ImportError:  # pragma: no cover - only while the API module is absent
    API_OPTIONS = ()
    check_api_options = None  # type: ignore[assignment]

_dumps = orjson.dumps
_loads = orjson.loads
_monotonic = time.monotonic

# After a tag's wait for metadata expired, its later batches are not held again for this long
# (the source keeps trying; records flow without metadata meanwhile).
NO_HOLD_AFTER_TIMEOUT = 30.0

OWN_OPTIONS: tuple[Option, ...] = (
    Option("kube_tag_prefix", T.STR, "kube.var.log.containers.", "prefix of the tag before the "
           "log file name; a tag without it passes without metadata (warned once)"),
    Option("regex_parser", T.STR, None, "regex parser extracting pod_name, namespace_name, "
           "container_name, docker_id from the tag (after the prefix)"),
    Option("merge_log", T.BOOL, "false", "parse the 'log' key (JSON or a parser) and merge "
           "its keys into the record"),
    Option("merge_log_key", T.STR, None, "put the merged keys under this key"),
    Option("merge_log_trim", T.BOOL, "true", "remove trailing newlines from merged string "
           "values"),
    Option("merge_parser", T.STR, None, "parser for 'log' instead of JSON"),
    Option("keep_log", T.BOOL, "true", "keep 'log' after a successful merge"),
    Option("labels", T.BOOL, "true", "include the pod's labels"),
    Option("annotations", T.BOOL, "true", "include the pod's annotations"),
    Option("owner_references", T.BOOL, "false", "include the pod's ownerReferences"),
    Option("namespace_labels", T.BOOL, "false", "add kubernetes_namespace with the "
           "namespace's labels"),
    Option("namespace_annotations", T.BOOL, "false", "add kubernetes_namespace with the "
           "namespace's annotations"),
    Option("namespace_exclude", T.BOOL, "false", "a namespace's fluentbit.io/exclude "
           "annotation excludes its pods' logs (unless the pod says otherwise)"),
    Option("namespace_metadata_only", T.BOOL, "false", "no pod metadata, only the "
           "namespace's"),
    Option("k8s-logging.parser", T.BOOL, "false", "honour fluentbit.io/parser[_stream]"
           "[-container] pod annotations (needs Merge_Log)"),
    Option("k8s-logging.exclude", T.BOOL, "false", "honour fluentbit.io/exclude[_stream]"
           "[-container] pod annotations"),
    Option("use_journal", T.BOOL, "false", "records come from the systemd journal: identity "
           "from each record's CONTAINER_NAME"),
    Option("cache_use_docker_id", T.BOOL, "false", "accepted: rillet's cache is per file "
           "(docker id included) and follows the pod's changes"),
    Option("kube_meta_preload_cache_dir", T.STR, None, "folder of <namespace>_<pod>.meta and "
           "<namespace>.namespace_meta files, read before asking the API"),
    Option("dummy_meta", T.BOOL, "false", "add fixed test metadata, ask nothing"),
    Option("dns_retries", T.INT, "6", "accepted: the source retries the API in the "
           "background instead of waiting for DNS at startup"),
    Option("dns_wait_time", T.TIME, "30", "accepted (see dns_retries)"),
    Option("use_tag_for_meta", T.BOOL, "false", "metadata from the tag only, no API"),
    Option("kube_namespace_file", T.STR,
           "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
           "accepted: the agent's own namespace (Fluent Bit's startup self-check)"),
    Option("kube_meta_io_timeout", T.TIME, "30s", "accepted: API requests run in the "
           "background and never block the pipeline"),
    Option("kube_meta_negative_cache_ttl", T.TIME, "60s", "accepted: failed lookups are "
           "cached with backoff by the source (kube_retry_max)"),
    Option("kube_meta_wait", T.TIME, "2s", "rillet: how long a file's records wait for their "
           "pod's metadata before going on without it"),
    Option("aws_use_pod_association", T.BOOL, "false", "not implemented (warned): AWS "
           "Application Signals pod-to-service association", aliases=("use_pod_association",)),
    Option("aws_pod_association_host", T.STR, "cloudwatch-agent.amazon-cloudwatch",
           "not implemented"),
    Option("aws_pod_association_endpoint", T.STR, "/kubernetes/pod-to-service-env-map",
           "not implemented"),
    Option("aws_pod_association_port", T.INT, "4311", "not implemented"),
    Option("aws_pod_service_map_ttl", T.INT, "0", "not implemented"),
    Option("aws_pod_service_map_refresh_interval", T.INT, "60", "not implemented"),
    Option("aws_pod_service_preload_cache_dir", T.STR, None, "not implemented"),
    Option("aws_pod_association_host_server_ca_file", T.STR,
           "/etc/amazon-cloudwatch-observability-agent-server-cert/tls-ca.crt",
           "not implemented"),
    Option("aws_pod_association_host_client_cert_file", T.STR,
           "/etc/amazon-cloudwatch-observability-agent-client-cert/client.crt",
           "not implemented"),
    Option("aws_pod_association_host_client_key_file", T.STR,
           "/etc/amazon-cloudwatch-observability-agent-client-cert/client.key",
           "not implemented"),
    Option("aws_pod_association_host_tls_debug", T.INT, "0", "not implemented"),
    Option("aws_pod_association_host_tls_verify", T.BOOL, "true", "not implemented"),
    Option("set_platform", T.STR, None, "not implemented (k8s or eks)"),
)


def _table() -> tuple[Option, ...]:
    names = {o.name for o in API_OPTIONS}
    return tuple(API_OPTIONS) + tuple(o for o in OWN_OPTIONS if o.name not in names)


@dataclass(slots=True)
class _Plan:
    """What the records of one container get (decided once per batch)."""

    key: Any = None  # the source versions it was built from
    enriched: bool = False
    touch: bool = True  # False: records pass untouched (no identity)
    tail: bytes = b""  # ',"kubernetes":{...}[,"kubernetes_namespace":{...}]}'
    props: mg.Props = field(default_factory=mg.Props)


@dataclass(slots=True)
class _Held:
    deadline: float
    batches: list[Batch] = field(default_factory=list)


_UNTOUCHED = _Plan(touch=False)
_WAIT = _Plan(key="wait")


@register
class KubernetesFilter(Filter):
    name = "kubernetes"
    description = "Filter to append Kubernetes metadata"
    holds_records = True
    options = _table()

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        self.merge_log: bool = o["merge_log"]
        self.parser_on: bool = o["k8s-logging.parser"]
        self.exclude_on: bool = o["k8s-logging.exclude"]
        self.dummy: bool = o["dummy_meta"]
        self.tag_meta: bool = o["use_tag_for_meta"]
        self.journal: bool = o["use_journal"]
        self.ns_wanted: bool = o["namespace_labels"] or o["namespace_annotations"] \
            or o["namespace_exclude"]
        self.pod_wanted: bool = not o["namespace_metadata_only"]
        self.wait: float = float(o["kube_meta_wait"])
        if self.wait < 0:
            raise ValueError("kube_meta_wait must not be negative")
        self.render_opts = rd.RenderOptions(
            labels=o["labels"], annotations=o["annotations"],
            owner_references=o["owner_references"],
            namespace_labels=o["namespace_labels"],
            namespace_annotations=o["namespace_annotations"])
        merge_parser = self._parser(o["merge_parser"], "merge_parser") \
            if o["merge_parser"] else None
        self.ms = mg.MergeSettings(o["merge_log_key"], o["merge_log_trim"], o["keep_log"],
                                   merge_parser)
        if o["regex_parser"]:
            rp = self._parser(o["regex_parser"], "regex_parser")
            if rp.regex is None:
                raise ValueError(f"regex_parser: parser '{rp.name}' is not a regex parser")
            search = rp.regex.search
            pods_paths = False
        else:
            search = re.compile(DEFAULT_TAG_REGEX).search
            pods_paths = True
        self.tags = TagResolver(o["kube_tag_prefix"], search, self.log, pods_paths)
        if self.journal:
            self.journal_search = re.compile(JOURNAL_REGEX).search
        self.api_used = not (self.dummy or self.tag_meta)
        if self.api_used and check_api_options is not None:
            check_api_options(o)
        if o["merge_log_key"] and not self.merge_log:
            self.log.warning("merge_log_key has no effect: merge_log is off")
        if o["namespace_metadata_only"] and not self.ns_wanted:
            self.log.warning("namespace_metadata_only without namespace_labels or "
                             "namespace_annotations: no metadata will be added")
        if o["aws_use_pod_association"]:
            self.log.warning("aws_use_pod_association is not implemented in rillet: no "
                             "aws_entity_* keys are added")
        self.source: MetaSource | None = None
        self.plans: dict[str, _Plan] = {}
        self.held: dict[str, _Held] = {}
        self.gave_up: dict[str, float] = {}
        self._warned: set[tuple[str, str, str]] = set()
        self._pod_override: dict[str, Any] | None = None
        for name in ("kube_unenriched_records", "kube_held_batches", "kube_wait_timeouts",
                     "kube_excluded_records", "kube_merged_records"):
            self.counters.setdefault(name, 0)

    def _parser(self, name: str, what: str) -> Parser:
        try:
            parser = self.parsers.get(name)
        except ValueError as exc:
            raise ValueError(f"{what}: parser '{name}': {exc}") from None
        if parser is None:
            raise ValueError(f"{what}: invalid parser '{name}'")
        return parser

    # -- lifecycle ------------------------------------------------------------------------------
    def trace_with_pod(self, pod: dict[str, Any]) -> None:
        """``rillet trace --pod``: use this pod object for every lookup instead of a source."""
        self._pod_override = pod

    async def start(self) -> None:
        if not self.api_used:
            return
        o = self.opts
        if self._pod_override is not None:
            self.source = _FixedSource(self._pod_override)
            return
        api: MetaSource | None = None
        try:
            from rillet.filters.kubernetes.api import ApiSource
        except ImportError:  # pragma: no cover - only while the API module is absent
            self.log.warning("no Kubernetes API support in this build: metadata only from "
                             "Kube_Meta_Preload_Cache_Dir")
        else:
            api = ApiSource(o, self.log, self.counters, namespaces=self.ns_wanted)
        preload = PreloadSource(o["kube_meta_preload_cache_dir"], self.log,
                                bool(o.get("use_kubelet"))) \
            if o["kube_meta_preload_cache_dir"] else None
        if preload is not None and api is not None:
            self.source = ChainSource(preload, api)
        else:
            self.source = preload or api
        if self.source is not None:
            await self.source.start(float(o.get("kube_start_wait") or self.wait))

    async def stop(self) -> None:
        if self.source is not None:
            await self.source.stop()
            self.source = None

    # -- decisions per container ----------------------------------------------------------------
    def _warn(self, ident: Identity, msg: str) -> None:
        key = (ident.namespace, ident.pod, msg)
        if key not in self._warned:
            if len(self._warned) > 10000:
                self._warned.clear()
            self._warned.add(key)
            self.log.warning("%s (ns='%s' pod_name='%s'; warned once per pod)", msg,
                             ident.namespace, ident.pod)

    def _lookup(self, kind: Any, ns: str, name: str, patient: bool) -> Entry | None:
        src = self.source
        if src is None:
            return Entry(None, 0, "no metadata source")
        entry = src.lookup(kind, ns, name)
        if entry is None and not patient:
            return Entry(None, 0, "not known yet")
        return entry

    def _plan_for(self, cache_key: str, ident: Identity | None, patient: bool) -> _Plan:
        """The plan of one container; ``_WAIT`` when the source does not know it yet and
        ``patient`` (the caller may hold the records)."""
        if ident is None:
            return _UNTOUCHED
        if self.dummy:
            return _plan_of([("kubernetes", rd.serialize(rd.dummy_block()))])
        if self.tag_meta:
            plan = self.plans.get(cache_key)
            if plan is None:
                plan = self.plans[cache_key] = _plan_of(
                    [("kubernetes", rd.serialize(rd.tag_block(ident)))])
                plan.key = "tag"
            return plan
        pod = ns = None
        if self.pod_wanted:
            pod = self._lookup("pod", ident.namespace, ident.pod, patient)
            if pod is None:
                return _WAIT
        if self.ns_wanted:
            ns = self._lookup("namespace", ident.namespace, ident.namespace, patient)
            if ns is None:
                return _WAIT
        key = (pod.version if pod is not None else None, pod is not None and pod.obj is None,
               ns.version if ns is not None else None, ns is not None and ns.obj is None)
        plan = self.plans.get(cache_key)
        if plan is not None and plan.key == key:
            return plan
        plan = self._build(ident, pod.obj if pod is not None else None,
                           ns.obj if ns is not None else None)
        plan.key = key
        if len(self.plans) > 65536:
            self.plans.clear()
        self.plans[cache_key] = plan
        return plan

    def _build(self, ident: Identity, pod: dict[str, Any] | None,
               ns: dict[str, Any] | None) -> _Plan:
        o = self.render_opts
        blocks: list[tuple[str, bytes]] = []
        if pod is not None:
            blocks.append(("kubernetes", rd.serialize(rd.pod_block(ident, pod, o))))
        if ns is not None and (o.namespace_labels or o.namespace_annotations):
            blocks.append(("kubernetes_namespace",
                           rd.serialize(rd.namespace_block(ident.namespace, ns, o))))
        props = mg.Props()
        if pod is not None:
            meta = pod.get("metadata")
            annotations = meta.get("annotations") if type(meta) is dict else None
            props = mg.annotation_props(
                annotations, ident.container, parser_on=self.parser_on,
                exclude_on=self.exclude_on, merge_log=self.merge_log,
                get_parser=self._annotation_parser, warn=lambda m: self._warn(ident, m))
        if ns is not None and self.opts["namespace_exclude"] and self.exclude_on:
            meta = ns.get("metadata")
            annotations = meta.get("annotations") if type(meta) is dict else None
            ns_props = mg.annotation_props(
                annotations, "", parser_on=False, exclude_on=True, merge_log=False,
                get_parser=self._annotation_parser, warn=lambda m: None)
            # The pod's own annotations win; the namespace's apply where the pod says nothing.
            if pod is None or not _has_exclude(pod):
                props.exclude_out = props.exclude_out or ns_props.exclude_out
                props.exclude_err = props.exclude_err or ns_props.exclude_err
        plan = _plan_of(blocks)
        plan.props = props
        return plan

    def _annotation_parser(self, name: str) -> Parser | None:
        try:
            return self.parsers.get(name)
        except ValueError:
            return None

    # -- engine interface -----------------------------------------------------------------------
    def filter(self, batch: Batch) -> Batch:
        if self.journal and not self.dummy:
            return self._journal(batch)
        tag = batch.tag
        held = self.held.get(tag)
        patient = self.wait > 0 and tag not in self.gave_up
        plan = self._plan_for(tag, self.tags.resolve(tag), patient)
        if plan is _WAIT:
            if held is None:
                held = self.held[tag] = _Held(_monotonic() + self.wait)
            held.batches.append(batch)
            self.counters.add("kube_held_batches")
            return Batch(tag, [], [], 0, None)
        if held is not None:
            del self.held[tag]
            batch = _concat(tag, [*held.batches, batch])
        return self._apply(plan, batch)

    def tick(self, final: bool = False) -> list[Batch]:
        now = _monotonic()
        if self.gave_up:
            for tag in [t for t, at in self.gave_up.items() if now - at > NO_HOLD_AFTER_TIMEOUT]:
                del self.gave_up[tag]
        out: list[Batch] = []
        for tag, held in list(self.held.items()):
            plan = self._plan_for(tag, self.tags.resolve(tag), True)
            if plan is _WAIT:
                if not final and now < held.deadline:
                    continue
                self.counters.add("kube_wait_timeouts")
                self.gave_up[tag] = now
                plan = self._plan_for(tag, self.tags.resolve(tag), False)
            del self.held[tag]
            batch = self._apply(plan, _concat(tag, held.batches))
            if batch.bodies or batch.ack is not None:
                out.append(batch)
        return out

    # -- the record loop ------------------------------------------------------------------------
    def _apply(self, plan: _Plan, batch: Batch) -> Batch:
        n_in = len(batch.bodies)
        if not plan.touch:
            self.counters.add("kube_unenriched_records", n_in)
            return batch
        props = plan.props
        tail = plan.tail
        if not plan.enriched:
            self.counters.add("kube_unenriched_records", n_in)
        if not self.merge_log and not props.has_exclude:
            if tail:
                batch.bodies = _splice_all(batch.bodies, tail)
                batch.size = _size(batch.bodies)
            return batch
        times, bodies = self._records(batch.times, batch.bodies, props, plan)
        if len(bodies) != n_in:
            self.counters.add("kube_excluded_records", n_in - len(bodies))
            batch.size = batch.size * len(bodies) // max(1, n_in)
        if tail:
            # Enriched records are JSON text now, several times their input size: account
            # for what they hold (Mem_Buf_Limit counts it, as Fluent Bit counts filtered
            # chunks).
            batch.size = _size(bodies)
        batch.times = times
        batch.bodies = bodies
        return batch

    def _records(self, times: list[int], bodies: list[Body], props: mg.Props, plan: _Plan,
                 inline: bool = True) -> tuple[list[int], list[Body]]:
        """Exclusion, Merge_Log and the block, one loop per batch (a record that is not a JSON
        object passes unchanged). The stream is looked at only when the container's streams
        are treated differently; a plain regex parser runs inline on a one-line ``log`` (one
        final newline, no backslash; see :class:`RegexPlan`) unless ``inline`` is False (the
        reference path for tests); other merges go through ``Parser.parse`` or
        :func:`merge.merge`."""
        out_t: list[int] = []
        out_b: list[Body] = []
        add_t, add_b = out_t.append, out_b.append
        loads, dumps = _loads, _dumps
        decode_error = orjson.JSONDecodeError
        merging = self.merge_log
        ms = self.ms
        key, trim, keep = ms.key, ms.trim, ms.keep_log
        merge_parser = ms.parser
        json_fallback, trim_all, merge = mg.json_fallback, mg.trim_all, mg.merge
        now_ns = time.time_ns
        ex_out, ex_err, ex_any = props.exclude_out, props.exclude_err, props.exclude_any
        p_out, p_err, p_any = props.parser_out, props.parser_err, props.parser_any
        if merge_parser is not None:
            p_out, p_err, p_any = (p_out or merge_parser, p_err or merge_parser,
                                   p_any or merge_parser)
        plans: dict[int, RegexPlan | None] = {}
        for p in (p_out, p_err, p_any):
            if p is not None and id(p) not in plans:
                plans[id(p)] = p.inline_regex() if inline and merging else None
        r_out, r_err, r_any = (plans.get(id(p)) for p in (p_out, p_err, p_any))
        # Streams matter only when excluded or parsed differently.
        per_stream = ex_out or ex_err or p_out is not p_err or not inline
        parser, rp = p_out, r_out
        merged = 0
        tail = plan.tail
        for t, body in zip(times, bodies, strict=True):
            rec = body if type(body) is dict else _record_of(body)
            if rec is None:
                add_t(t)
                add_b(body)
                continue
            if per_stream:
                stream = rec.get("stream")
                if stream == "stdout":
                    if ex_out:
                        continue
                    parser, rp = p_out, r_out
                elif stream == "stderr":
                    if ex_err:
                        continue
                    parser, rp = p_err, r_err
                else:
                    if ex_any:
                        continue
                    parser, rp = p_any, r_any
            if merging:
                log = rec.get("log")
                obj: Any = None
                if type(log) is str:
                    if parser is None:
                        if log[:1] == "{" or log.lstrip()[:1] == "{":
                            try:
                                obj = loads(log)
                                # A value ends with a newline: \n" in the text.
                                check = trim and "\\" in log \
                                    and ('\\n"' in log or '\\r"' in log)
                            except decode_error:
                                obj = json_fallback(log)
                                check = trim
                            if type(obj) is not dict:
                                obj = None
                            elif check:
                                trim_all(obj)
                    else:
                        # Only the final newline: parse without it (what trimming would do).
                        single = trim and log.find("\n") == len(log) - 1 \
                            and "\\" not in log
                        result: tuple[dict[str, Any], int | None] | None = None
                        if single and rp is not None:
                            text = log[:-1]
                            decided = True
                            first, match, names, tk, tkeep, tcache = rp
                            m = first(text) or match(text)
                            if m is not None:
                                values = m.groups()
                                obj = dict(zip(names, values, strict=True)) if all(values) \
                                    else {k: v for k, v in zip(names, values, strict=True) if v}
                                if tk is None or (tv := obj.get(tk)) is None:
                                    result = (obj, None)
                                elif (hit := tcache.get(tv)) is not None:
                                    if not tkeep:
                                        del obj[tk]
                                    result = (obj, hit[0])
                                else:  # a time not seen yet: the parser decides
                                    decided = False
                                obj = None
                            if not decided:
                                result = parser.parse(text)
                        else:
                            result = parser.parse(log[:-1] if single else log)
                        if result is not None:
                            obj, pt = result
                            t = pt or now_ns()
                            if trim and not single:
                                trim_all(obj)
                    if obj is not None:
                        merged += 1
                        if not keep:
                            del rec["log"]
                        if key is None:
                            rec.update(obj)
                        elif obj:
                            rec[key] = obj
                elif type(log) is dict:
                    rec, t = merge(rec, parser, ms, t)
                    merged += 1
            if tail:
                # Spliced, not embedded: the concatenation is sized to fit, while orjson's
                # own result keeps a 4 KiB buffer per record (4x the memory in flight).
                s = dumps(rec)
                add_b(s[:-1] + tail if len(s) > 2 else b"{" + tail[1:])
            else:
                add_b(rec)
            add_t(t)
        if merged:
            self.counters.add("kube_merged_records", merged)
        return out_t, out_b

    # -- journal mode ---------------------------------------------------------------------------
    def _journal(self, batch: Batch) -> Batch:
        """Use_Journal: each record names its container in CONTAINER_NAME (looked up per
        record, cached per name; no holding: a pod not known yet passes without metadata)."""
        out_t: list[int] = []
        out_b: list[Body] = []
        search = self.journal_search
        idents: dict[str, Identity | None] = {}
        for t, body in zip(batch.times, batch.bodies, strict=True):
            rec = _loads(body) if type(body) is bytes else body
            name = rec.get("CONTAINER_NAME") if type(rec) is dict else None
            ident = None
            if type(name) is str:
                if name not in idents:
                    m = search(name)
                    idents[name] = identity_of(m.groupdict()) if m is not None else None
                ident = idents[name]
            plan = self._plan_for(f"journal:{name}", ident, False) if ident is not None \
                else _UNTOUCHED
            one = self._apply(plan, Batch(batch.tag, [t], [body], 0, None))
            out_t.extend(one.times)
            out_b.extend(one.bodies)
        batch.size = batch.size * len(out_b) // max(1, len(batch.bodies))
        batch.times = out_t
        batch.bodies = out_b
        return batch


def _record_of(body: Body) -> dict[str, Any] | None:
    """A serialized body as a dict; None when it is not a JSON object (it passes as it is)."""
    if type(body) is not bytes:
        return None
    try:
        rec = _loads(body)
    except orjson.JSONDecodeError:
        return None
    return rec if type(rec) is dict else None


def _has_exclude(pod: dict[str, Any]) -> bool:
    meta = pod.get("metadata")
    ann = meta.get("annotations") if type(meta) is dict else None
    return type(ann) is dict and any(
        type(k) is str and k.startswith(mg.ANNOTATION_PREFIX + "exclude") for k in ann)


def _plan_of(blocks: list[tuple[str, bytes]]) -> _Plan:
    """A plan adding these serialized blocks (none: records pass without metadata)."""
    tail = b"".join(b',"' + name.encode() + b'":' + data for name, data in blocks)
    return _Plan(enriched=bool(blocks), tail=tail + b"}" if tail else b"")


def _splice_all(bodies: list[Body], tail: bytes) -> list[Body]:
    """Every body as JSON text with ``tail`` (``,"kubernetes":{...}}``) in place of its
    closing brace (serialized bodies are not decoded)."""
    dumps = _dumps
    out: list[Body] = []
    add = out.append
    for body in bodies:
        s = body if type(body) is bytes else dumps(body)
        if s[-1:] != b"}" or s[:1] != b"{":  # not an object's text: leave it
            add(body)
        elif len(s) > 2:
            add(s[:-1] + tail)
        else:
            add(b"{" + tail[1:])
    return out


def _size(bodies: list[Body]) -> int:
    """Bytes of enriched bodies: with a block every body leaving the filter is JSON text (a
    record spliced with it, or a body that is not a JSON object's text, left as it was)."""
    return sum(map(len, bodies))


def _concat(tag: str, batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    times: list[int] = []
    bodies: list[Body] = []
    acks = AckList()
    size = 0
    for b in batches:
        times.extend(b.times)
        bodies.extend(b.bodies)
        size += b.size
        if b.ack is None:
            continue
        if type(b.ack) is AckList:
            acks.extend(b.ack)
        else:
            acks.append(b.ack)
    return Batch(tag, times, bodies, size, acks or None)


class _FixedSource:
    """``rillet trace --pod``: every pod lookup answers the given object."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.entry = Entry(pod, 1)

    async def start(self, wait: float) -> None:
        return None

    async def stop(self) -> None:
        return None

    def lookup(self, kind: Any, namespace: str, name: str) -> Entry:
        return self.entry if kind == "pod" else Entry(None, 1, "trace: no namespace object")

