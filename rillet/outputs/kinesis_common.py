"""What the ``kinesis_streams`` and ``kinesis_firehose`` outputs share.

- Options both take (:data:`SHARED_OPTIONS`), and the AWS layer built from them
  (:func:`aws_layer`).
- :class:`RecordEncoder`: records -> the bytes of each Kinesis / Firehose record, in one loop per
  chunk: ``time_key`` (+ ``time_key_format`` with ``%3N`` / ``%6N`` / ``%9N`` / ``%L`` / ``%f``),
  the partition key (``kubernetes->pod_name``; random when unset or missing, cut to 256
  characters), ``data_keys``, ``replace_dots``, ``log_key`` (strings raw, other values as JSON),
  ``append_newline``, per-record ``compression``; records over the per-record limit are
  dropped with a reason.
- Packing records into API records (:func:`pack`): one each, ``simple_aggregation`` (records
  joined, then compressed as one), or KPL aggregation (:mod:`rillet.outputs.kpl`).
- :class:`RecordSender`: PutRecords / PutRecordBatch requests within the API limits, through the
  AWS delivery policy; records the API answered as failed are sent again, only them, a few
  rounds in place, and a later record with the same partition key never goes out before an
  earlier one that failed (it waits for the next round).

The ``%L`` of ``time_key_format`` is nanoseconds in Fluent Bit's C plugins and milliseconds in
AWS's Go plugins: each output passes the digits of its dialect.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from operator import add
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import orjson

from rillet.aws.client import AwsClient, Response
from rillet.aws.credentials import CredentialsProvider, normalize_url
from rillet.aws.options import AWS_OPTIONS, connect
from rillet.aws.policy import THROTTLING_CODES, DeliveryPolicy, Outcome, classify
from rillet.config.options import Option, Options, T
from rillet.engine.chunk import Body, Chunk
from rillet.engine.metrics import Counters
from rillet.engine.plugin import FlushResult, Output, Partial, Status
from rillet.outputs import kpl
from rillet.outputs.cloudwatch_logs.encode import index_ranges
from rillet.outputs.compress import Compressor, compressor

__all__ = ["SHARED_OPTIONS", "ApiShape", "RecordEncoder", "RecordSender", "StreamOutput",
           "TimeKeyFormat", "Units", "aws_layer", "pack"]

_dumps = orjson.dumps
_loads = orjson.loads
_NS = 1_000_000_000
_MISSING: Any = object()

PARTITION_KEY_MAX = 256
DEFAULT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
# A gzip/zstd frame of one already-cut aggregate may grow by a few bytes over its input.
COMPRESSION_SLACK = 64
# Rounds of in-place sending of records the API answered as failed.
ROUNDS = 4

SHARED_OPTIONS: tuple[Option, ...] = (
    Option("region", T.STR, None, "AWS region (required)"),
    Option("time_key", T.STR, None, "add the record's time to the record under this key"),
    Option("time_key_format", T.STR, DEFAULT_TIME_FORMAT, "strftime format of time_key (UTC); "
           "%3N milliseconds, %6N/%f microseconds, %9N nanoseconds, %L see docs"),
    Option("log_key", T.STR, None, "send only this key's value (strings raw, other values as "
           "JSON) instead of the whole record"),
    Option("data_keys", T.CLIST, None, "send only these top-level keys of the record"),
    Option("replace_dots", T.STR, None, "replace dots in key names with this text"),
    Option("append_newline", T.BOOL, None, "end each record with a newline (default: on for "
           "the C plugin names and firehose, off for the Go kinesis)"),
    Option("simple_aggregation", T.BOOL, "false", "join several records into one API record "
           "(up to the per-record limit)"),
    Option("endpoint", T.STR, None, "API endpoint: host, host:port or URL"),
    Option("port", T.INT, None, "port of endpoint when it names none"),
    *AWS_OPTIONS,
    Option("http_request_timeout", T.TIME, "30", "seconds before a request times out (Go)"),
    Option("experimental_concurrency", T.INT, "0", "Go plugin: concurrent flushes (mapped to "
           "the adaptive concurrency limit; 0 = from workers)"),
    Option("experimental_concurrency_retries", T.INT, "4", "Go plugin: tries of a request "
           "(mapped to the in-place retries)"),
)


def aws_layer(opts: Options, service: str, log: logging.Logger, counters: Counters,
              workers: int) -> tuple[CredentialsProvider, AwsClient, DeliveryPolicy]:
    """Credentials, client and delivery policy for one output instance."""
    region: str = opts["region"]
    endpoint: str | None = opts["endpoint"]
    if endpoint and opts["port"]:
        parts = urlsplit(normalize_url(endpoint))
        if parts.port is None:  # the C plugin's `port` completes an endpoint without one
            endpoint = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{opts['port']}"))
    credentials, client = connect(opts, AwsClient, service, region, log, endpoint=endpoint,
                                  timeout=float(opts["http_request_timeout"] or 30))
    concurrency = opts["experimental_concurrency"] or 0
    policy = DeliveryPolicy(log, counters,
                            max_concurrency=max(8, 4 * max(1, workers), concurrency),
                            attempts=max(1, opts["experimental_concurrency_retries"]))
    return credentials, client, policy


# --- time_key -----------------------------------------------------------------------------------

_FRACTION = re.compile(r"%%|%[369]N|%L|%f")


class TimeKeyFormat:
    """``time_key_format`` rendered in UTC, the strftime part cached per distinct second."""

    def __init__(self, fmt: str, l_digits: int) -> None:
        self.fmt = fmt
        self.parts: list[str | int] = []  # strftime text, or digits of the fraction
        pos = 0
        for m in _FRACTION.finditer(fmt):
            tok = m.group()
            if tok == "%%":
                continue
            self.parts.append(fmt[pos:m.start()])
            self.parts.append(l_digits if tok == "%L" else 6 if tok == "%f" else int(tok[1]))
            pos = m.end()
        self.parts.append(fmt[pos:])
        self._sec = -1
        self._texts: list[str] = []
        try:
            time.strftime(fmt, time.gmtime(0))
        except ValueError as exc:
            raise ValueError(f"time_key_format '{fmt}': {exc}") from exc

    def __call__(self, ns: int) -> str:
        sec, frac = divmod(ns, _NS)
        if sec != self._sec:
            tm = time.gmtime(sec)
            self._texts = [time.strftime(p, tm) if type(p) is str else "" for p in self.parts]
            self._sec = sec
        texts = self._texts
        if len(texts) == 1:
            return texts[0]
        out: list[str] = []
        for p, text in zip(self.parts, texts, strict=True):
            if type(p) is int:
                out.append(f"{frac:09d}"[:p])
            else:
                out.append(text)
        return "".join(out)


# --- records -> bytes -----------------------------------------------------------------------


def _replace_dots(obj: dict[str, Any], repl: str) -> dict[str, Any]:
    """Dots in key names replaced, in nested maps too (the Go plugins' replace_dots)."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out[k.replace(".", repl) if "." in k else k] = \
            _replace_dots(v, repl) if type(v) is dict else v
    return out


RANDOM_KEY_LEN = 16


def random_keys(n: int) -> list[str]:
    """``n`` random 16-character partition keys, from one urandom call."""
    text = os.urandom(8 * n).hex()
    return [text[i:i + RANDOM_KEY_LEN] for i in range(0, RANDOM_KEY_LEN * n, RANDOM_KEY_LEN)]


def _serialize(bodies: Sequence[Body],
               skipped: list[tuple[int, str]]) -> tuple[list[int], list[bytes]]:
    """Every body's JSON text with its index; unencodable ones go to ``skipped``."""
    dumps = _dumps
    try:  # the common case: one C-speed pass
        return list(range(len(bodies))), [b if type(b) is bytes else dumps(b) for b in bodies]
    except orjson.JSONEncodeError:
        pass
    idx: list[int] = []
    texts: list[bytes] = []
    for i, body in enumerate(bodies):
        try:
            texts.append(body if type(body) is bytes else dumps(body))
        except orjson.JSONEncodeError as exc:
            skipped.append((i, f"record cannot be encoded: {exc}"))
            continue
        idx.append(i)
    return idx, texts


@dataclass(slots=True)
class Encoded:
    """The records of a chunk as API record payloads, in chunk order."""

    idx: list[int] = field(default_factory=list)  # record index in the chunk
    datas: list[bytes] = field(default_factory=list)
    keys: list[str] | None = None  # partition keys (None: none configured)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)
    oversize: int = 0
    missing_keys: int = 0  # partition_key configured but absent: a random key was used


class RecordEncoder:
    """Turns a chunk's records into payloads (see the module docstring for the steps)."""

    def __init__(self, *, what: str, max_record: int, time_key: str | None = None,
                 time_format: TimeKeyFormat | None = None, log_key: str | None = None,
                 data_keys: Sequence[str] | None = None, replace_dots: str | None = None,
                 append_newline: bool = False, partition_key: str | None = None,
                 compress: Compressor | None = None, reserve: int = 0) -> None:
        self.what = what  # "Kinesis" / "Firehose", for reasons
        self.max_record = max_record
        self.reserve = reserve  # bytes of a partition key added later (random keys)
        self.time_key = time_key
        self.time_format = time_format or TimeKeyFormat(DEFAULT_TIME_FORMAT, 9)
        self.time_key_json = _dumps(time_key) if time_key else b""
        self.log_key = log_key
        self.data_keys = frozenset(data_keys) if data_keys else None
        self.replace_dots = replace_dots
        self.newline = b"\n" if append_newline else b""
        self.key_path = tuple(partition_key.split("->")) if partition_key else None
        self.compress = compress
        # Only the partition key needs a look inside: whole records still pass through.
        self.key_only = bool(self.key_path and self.data_keys is None and not replace_dots
                             and not log_key and self.key_path[0] != time_key)
        self.needs_dict = bool(self.key_path or self.data_keys is not None or replace_dots
                               or log_key) and not self.key_only
        first = self.key_path[0] if self.key_path else ""
        self._key_marker = b',"' + _dumps(first)[1:-1] + b'":'
        self._tails: dict[bytes, Any] = {}

    def partition_key(self, record: dict[str, Any]) -> str | None:
        """The value at ``partition_key`` (nested with ``->``), cut to 256 characters; None
        when missing, empty or not a string."""
        node: Any = record
        for part in self.key_path or ():
            if type(node) is not dict:
                return None
            node = node.get(part)
        if type(node) is not str or not node:
            return None
        return node[:PARTITION_KEY_MAX]

    def encode(self, times: Sequence[int], bodies: Sequence[Body]) -> Encoded:
        ev = Encoded(keys=[] if self.key_path else None)
        if self.needs_dict:
            self._encode_dicts(times, bodies, ev)
        else:
            self._encode_fast(times, bodies, ev)
            if self.key_only:
                self._keys_of(bodies, ev)
        self._finish(ev)
        return ev

    def _keys_of(self, bodies: Sequence[Body], ev: Encoded) -> None:
        """Partition keys of whole records. A serialized record whose last member is the key's
        top-level map (where the kubernetes filter splices its block) is read from that tail
        alone, decoded once per distinct tail; other records are decoded whole."""
        get_key, marker, loads = self.partition_key, self._key_marker, _loads
        tails = self._tails
        if len(tails) > 1024:
            tails.clear()
        first = self.key_path[0] if self.key_path else ""
        keys: list[str] = []
        missing = 0
        for i in ev.idx:
            body = bodies[i]
            pk: str | None = None
            if type(body) is bytes:
                pos = body.rfind(marker)
                tail = body[pos + 1:] if pos > 0 else b""
                node = tails.get(tail, _MISSING) if tail else _MISSING
                if node is _MISSING and tail:
                    try:
                        # Valid as "{" + tail only if the member closes the outer object.
                        wrapped = loads(b"{" + tail)
                        node = wrapped[first] if len(wrapped) == 1 else _MISSING
                    except (orjson.JSONDecodeError, KeyError):
                        node = _MISSING
                    if node is not _MISSING:
                        tails[tail] = node
                if node is _MISSING:
                    try:
                        pk = get_key(loads(body))
                    except orjson.JSONDecodeError:
                        pk = None
                else:
                    pk = get_key({first: node})
            elif type(body) is dict:
                pk = get_key(body)
            if not pk:
                missing += 1
                pk = ""
            keys.append(pk)
        ev.keys = keys
        ev.missing_keys = missing

    def _encode_fast(self, times: Sequence[int], bodies: Sequence[Body], ev: Encoded) -> None:
        """Whole records: serialized bodies pass through; time_key is spliced in."""
        idx, texts = _serialize(bodies, ev.skipped)
        ev.idx = idx
        nl = self.newline
        if not self.time_key:
            ev.datas = [t + nl for t in texts] if nl else texts
            return
        fmt, key, dumps = self.time_format, self.time_key_json, _dumps
        ev.datas = [b"".join((t[:-1], b"," if len(t) > 2 else b"", key, b":",
                              dumps(fmt(times[i])), b"}", nl))
                    for i, t in zip(idx, texts, strict=True)]

    def _encode_dicts(self, times: Sequence[int], bodies: Sequence[Body], ev: Encoded) -> None:
        dumps, loads = _dumps, _loads
        nl = self.newline
        idx, datas, skipped = ev.idx, ev.datas, ev.skipped
        keys = ev.keys
        get_key = self.partition_key if self.key_path else None
        time_key, fmt = self.time_key, self.time_format
        data_keys, dots, log_key = self.data_keys, self.replace_dots, self.log_key
        missing = _MISSING
        for i, body in enumerate(bodies):
            try:
                record = loads(body) if type(body) is bytes else body
                if type(record) is not dict:
                    skipped.append((i, "record is not a map"))
                    continue
                if time_key:
                    record = {**record, time_key: fmt(times[i])}
                pk = ""
                if get_key is not None:
                    pk = get_key(record) or ""
                    if not pk:
                        ev.missing_keys += 1
                if data_keys is not None:
                    record = {k: v for k, v in record.items() if k in data_keys}
                if dots:
                    record = _replace_dots(record, dots)
                if log_key:
                    value = record.get(log_key, missing)
                    if value is missing:
                        skipped.append((i, f"could not find log_key '{log_key}' in record"))
                        continue
                    data = value.encode("utf-8", "surrogateescape") if type(value) is str \
                        else dumps(value)
                else:
                    data = dumps(record)
            except (orjson.JSONEncodeError, orjson.JSONDecodeError) as exc:
                skipped.append((i, f"record cannot be encoded: {exc}"))
                continue
            idx.append(i)
            datas.append(data + nl if nl else data)
            if keys is not None:
                keys.append(pk)

    def _finish(self, ev: Encoded) -> None:
        """Compression per record, random keys for records without one, the size limit."""
        compress = self.compress
        if compress is not None:
            ev.datas = [compress(d) for d in ev.datas]
        keys = ev.keys
        if keys is not None and ev.missing_keys:
            fresh = iter(random_keys(ev.missing_keys))
            ev.keys = keys = [k or next(fresh) for k in keys]
        limit = self.max_record
        datas = ev.datas
        if not datas or max(map(len, datas)) + self.reserve + PARTITION_KEY_MAX * 4 <= limit:
            return  # nothing near the limit (a key is at most 256 characters of 4 bytes)
        if keys is None:
            room = limit - self.reserve
            too_big = [j for j, d in enumerate(datas) if len(d) > room]
        else:
            too_big = [j for j, (d, k) in enumerate(zip(datas, keys, strict=True))
                       if len(d) + len(k.encode()) > limit]
        if not too_big:
            return
        drop = set(too_big)
        for j in too_big:
            size = len(datas[j]) + (len(keys[j].encode()) if keys is not None else self.reserve)
            ev.skipped.append((ev.idx[j], f"record of {size} bytes is larger than the {limit} "
                                          f"bytes {self.what} accepts per record"))
        ev.oversize += len(too_big)
        keep = [j for j in range(len(datas)) if j not in drop]
        ev.idx = [ev.idx[j] for j in keep]
        ev.datas = [datas[j] for j in keep]
        if keys is not None:
            ev.keys = [keys[j] for j in keep]


# --- payloads -> API records ------------------------------------------------------------------


@dataclass(slots=True)
class Units:
    """API records: ``datas[u]`` (with ``keys[u]``) carries the payloads ``bounds[u]`` to
    ``bounds[u + 1]`` of an :class:`Encoded`."""

    datas: list[bytes]
    keys: list[str] | None
    bounds: list[int]

    def __len__(self) -> int:
        return len(self.datas)


def pack(ev: Encoded, mode: str, max_record: int, *, keyed: bool,
         compress: Compressor | None = None) -> Units:
    """``mode``: ``one`` (an API record per payload), ``simple`` (payloads joined up to
    ``max_record``, with the same partition key, then ``compress``ed as one) or ``kpl``
    (KPL aggregates; an aggregate's key is its first record's key). ``keyed``: API records
    need a partition key (Kinesis): units without one get a random key each."""
    units = _pack(ev, mode, max_record, compress)
    if keyed and units.keys is None:
        units.keys = random_keys(len(units))
    return units


def _pack(ev: Encoded, mode: str, max_record: int, compress: Compressor | None) -> Units:
    datas, keys = ev.datas, ev.keys
    n = len(datas)
    if mode == "one" or n == 0:
        return Units(list(datas), keys, list(range(n + 1)))
    if mode == "kpl":
        if keys is None:
            # No partition_key: plan with a placeholder of a random key's length, then give
            # each aggregate (and its user records) a random key of its own.
            bounds = kpl.Aggregator(max_record).plan(["x" * RANDOM_KEY_LEN] * n,
                                                     [len(d) for d in datas])
            fresh = random_keys(len(bounds) - 1)
            user_keys = [fresh[j] for j in range(len(fresh))
                         for _ in range(bounds[j + 1] - bounds[j])]
        else:
            user_keys = keys
            bounds = kpl.Aggregator(max_record).plan(user_keys, [len(d) for d in datas])
        return Units([kpl.encode(user_keys[a:b], datas[a:b]) for a, b in pairwise(bounds)],
                     [user_keys[a] for a in bounds[:-1]], bounds)
    # simple: join consecutive payloads (of one partition key) within the limit
    limit = max_record - (COMPRESSION_SLACK if compress is not None else 0)
    bounds = [0]
    size = 0
    current: str | None = None
    for j, d in enumerate(datas):
        k = keys[j] if keys is not None else None
        extra = len(k.encode()) if k is not None else 0
        if j > bounds[-1] and (size + len(d) > limit or k != current):
            bounds.append(j)
            size = 0
        if j == bounds[-1]:
            size = extra
            current = k
        size += len(d)
    bounds.append(n)
    joined = [b"".join(datas[a:b]) for a, b in pairwise(bounds)]
    if compress is not None:
        joined = [compress(d) for d in joined]
    return Units(joined, [keys[a] for a in bounds[:-1]] if keys is not None else None, bounds)


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiShape:
    """What differs between PutRecords and PutRecordBatch."""

    operation: str  # PutRecords / PutRecordBatch
    stream_field: str  # StreamName / DeliveryStreamName
    results_field: str  # Records / RequestResponses
    failed_field: str  # FailedRecordCount / FailedPutCount
    max_records: int
    max_request_bytes: int


def split(sizes: Sequence[int], order: Sequence[int], max_count: int,
          max_bytes: int) -> list[list[int]]:
    """``order`` (unit ids) cut into requests of at most ``max_count`` units and
    ``max_bytes`` (the sum of ``sizes``); a unit larger than ``max_bytes`` goes alone."""
    order = list(order)
    cum = list(accumulate([sizes[u] for u in order]))
    out: list[list[int]] = []
    start, base, n = 0, 0, len(order)
    while start < n:
        stop = max(start + 1, min(start + max_count, bisect_right(cum, base + max_bytes, start)))
        out.append(order[start:stop])
        base = cum[stop - 1]
        start = stop
    return out


@dataclass(slots=True)
class _Outcome:
    """Per unit: delivered (absent), retry later, or error, with a reason."""

    retry: dict[int, str] = field(default_factory=dict)
    error: dict[int, str] = field(default_factory=dict)


class RecordSender:
    """Sends :class:`Units` to one stream; see the module docstring."""

    def __init__(self, client: AwsClient, policy: DeliveryPolicy, log: logging.Logger,
                 counters: Counters, shape: ApiShape, stream: str, prefix: str) -> None:
        self.client = client
        self.policy = policy
        self.log = log
        self.counters = counters
        self.shape = shape
        self.stream = stream
        self.prefix = prefix  # counter prefix: kinesis / firehose
        self.head = (b'{"' + shape.stream_field.encode() + b'":' + _dumps(stream)
                     + b',"Records":[')
        self.rounds = ROUNDS
        self.round_delay: Callable[[int], float] = policy.backoff
        counters.setdefault(f"{prefix}_failed_records", 0)
        counters.setdefault(f"{prefix}_resent_records", 0)

    def body(self, units: Units, ids: Sequence[int]) -> bytes:
        """The request for units ``ids``: pieces gathered, then joined once."""
        datas = units.datas
        enc = base64.b64encode
        keys = units.keys
        pieces = [self.head]
        add = pieces.extend
        if keys is None:
            for u in ids:
                add((b'{"Data":"', enc(datas[u]), b'"},'))
        else:
            dumps = _dumps
            for u in ids:
                add((b'{"Data":"', enc(datas[u]), b'","PartitionKey":', dumps(keys[u]), b"},"))
        if ids:
            pieces[-1] = pieces[-1][:-1]  # no comma after the last entry
        pieces.append(b"]}")
        return b"".join(pieces)

    async def send(self, units: Units, ordered: bool) -> _Outcome:
        """Deliver every unit; ``ordered``: units share partition keys, so a key's units go
        out in order and never ahead of an earlier failed one."""
        out = _Outcome()
        n = len(units)
        if n == 0:
            return out
        keys = units.keys
        sizes = list(map(len, units.datas))
        if keys is not None:
            sizes = list(map(add, sizes, map(len, map(str.encode, keys))))
        pending = list(range(n))
        shape = self.shape
        parked: set[str] = set()  # keys with a unit going back to the engine (RETRY)
        for rnd in range(self.rounds):
            failed: dict[int, str] = {}
            if ordered and keys is not None:
                await self._round_ordered(units, pending, sizes, failed, out, parked)
            else:
                batches = split(sizes, pending, shape.max_records, shape.max_request_bytes)
                results = await asyncio.gather(
                    *(self._request(units, ids) for ids in batches))
                for ids, (started, res) in zip(batches, results, strict=True):
                    self._apply(ids, res, failed, out, started)
            if not failed:
                return out
            pending = sorted(failed)
            if rnd + 1 < self.rounds:
                self.counters[f"{self.prefix}_resent_records"] += len(pending)
                await asyncio.sleep(self.round_delay(rnd))
            else:
                out.retry.update(failed)
        return out

    async def _round_ordered(self, units: Units, pending: list[int], sizes: list[int],
                             failed: dict[int, str], out: _Outcome, parked: set[str]) -> None:
        """One request at a time; a unit whose key failed earlier in this round waits for the
        next round, and one whose key has a unit going back to the engine goes back too."""
        keys = units.keys
        assert keys is not None
        shape = self.shape
        blocked: set[str] = set()
        rest = pending
        while rest:
            ids: list[int] = []
            later: list[int] = []
            total = 0
            for pos, u in enumerate(rest):
                key = keys[u]
                if key in parked:
                    out.retry[u] = "an earlier record with the same partition key is waiting " \
                                   "for a retry"
                    continue
                if key in blocked:
                    failed[u] = "an earlier record with the same partition key failed"
                    continue
                if ids and (len(ids) == shape.max_records
                            or total + sizes[u] > shape.max_request_bytes):
                    later = rest[pos:]
                    break
                ids.append(u)
                total += sizes[u]
            if not ids:
                return
            started, res = await self._request(units, ids)
            self._apply(ids, res, failed, out, started)
            for u in ids:
                if u in out.retry:
                    parked.add(keys[u])
                elif u in failed or u in out.error:
                    blocked.add(keys[u])
            rest = later

    async def _request(self, units: Units, ids: list[int]) -> tuple[float, Response]:
        body = self.body(units, ids)
        client, op = self.client, self.shape.operation
        what = f"{op} {self.stream} ({len(ids)} records)"
        started = time.monotonic()
        return started, await self.policy.send(lambda: client.call_json(op, body), what)

    def _apply(self, ids: list[int], resp: Response, failed: dict[int, str],
               out: _Outcome, started: float) -> None:
        shape = self.shape
        what = f"{shape.operation} {self.stream}"
        if not resp.ok:
            outcome = classify(resp)
            reason = f"{what}: {resp.describe()}"
            if outcome is Outcome.PERMANENT and resp.error_code != "ResourceNotFoundException":
                self.log.error("%s failed: %s", what, resp.describe())
                for u in ids:
                    out.error[u] = reason
            else:
                # Still throttled / failing after the policy's tries, or the stream is missing
                # (it may be created): the engine retries these records later.
                self.log.error("%s failed, records kept for a retry: %s", what,
                               resp.describe())
                for u in ids:
                    out.retry[u] = reason
            return
        body = resp.body
        if (b'"' + shape.failed_field.encode() + b'":0') in body:
            return
        doc = resp.json()
        if not isinstance(doc, dict):
            for u in ids:
                failed[u] = f"{what}: unreadable answer"
            return
        results = doc.get(shape.results_field)
        count = doc.get(shape.failed_field) or 0
        if not count:
            return
        if not isinstance(results, list) or len(results) != len(ids):
            for u in ids:
                failed[u] = f"{what}: {count} records failed (no per-record results)"
            return
        throttled = 0
        codes: dict[str, int] = {}
        for u, r in zip(ids, results, strict=True):
            code = r.get("ErrorCode") if isinstance(r, dict) else None
            if code:
                failed[u] = f"{code}: {r.get('ErrorMessage') or ''}".rstrip(": ")
                codes[code] = codes.get(code, 0) + 1
                if code in THROTTLING_CODES or code == "ServiceUnavailableException":
                    throttled += 1
        nfail = sum(codes.values())
        self.counters[f"{self.prefix}_failed_records"] += nfail
        self.log.warning("%s: %d of %d records failed (%s), sending only them again", what,
                         nfail, len(ids), ", ".join(f"{c} x{k}" for c, k in codes.items()))
        if throttled:
            self.counters["aws_throttled"] += 1
            # Throttled records in a 200 answer slow the whole output, as a throttled request
            # does (once per round trip).
            self.policy.limiter.penalize(started, self.policy.backoff(0))


def partial_from(ev: Encoded, units: Units, outcome: _Outcome) -> Partial:
    """Per-record answer of a flush: skipped records ERROR, failed units RETRY / ERROR."""
    partial = Partial()
    by_reason: dict[tuple[Status, str], list[int]] = {}
    for i, reason in ev.skipped:
        by_reason.setdefault((Status.ERROR, reason), []).append(i)
    bounds, idx = units.bounds, ev.idx
    for status, table in ((Status.RETRY, outcome.retry), (Status.ERROR, outcome.error)):
        for u, reason in table.items():
            by_reason.setdefault((status, reason), []).extend(idx[bounds[u]:bounds[u + 1]])
    for (status, reason), indices in by_reason.items():
        for s, e in index_ranges(indices):
            partial.add(s, e, status, reason)
    return partial


# --- the outputs' common part ---------------------------------------------------------------


class StreamOutput(Output):
    """An output to a Kinesis data stream or a Firehose delivery stream (subclasses set the
    class attributes and add their own options)."""

    service: ClassVar[str] = ""  # botocore service name
    shape: ClassVar[ApiShape]
    what: ClassVar[str] = ""  # "Kinesis" / "Firehose" in messages
    prefix: ClassVar[str] = ""  # counter prefix
    stream_option: ClassVar[str] = ""  # stream / delivery_stream
    max_record: ClassVar[int] = 0  # bytes per API record (data, plus the partition key)
    keyed: ClassVar[bool] = False  # API records carry a partition key
    compressions: ClassVar[tuple[str, ...]] = ()
    # Dialect: ``%L`` digits and whether records end with a newline unless told otherwise.
    l_digits: ClassVar[int] = 9
    newline_default: ClassVar[bool] = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        if not o["region"]:
            raise ValueError("'region' is a required field")
        stream: str | None = o[self.stream_option]
        if not stream:
            raise ValueError(f"'{self.stream_option}' is a required field")
        self.stream = stream
        if o["log_key"] and o["data_keys"]:
            raise ValueError("log_key and data_keys cannot both be set")
        self.mode = "simple" if o["simple_aggregation"] else "one"
        name = o["compression"]
        if name and name.strip().lower() in ("snappy", "arrow", "parquet"):
            raise ValueError(f"compression {name} is not supported in this version; accepted: "
                             + ", ".join(self.compressions))
        compress = compressor(name, self.compressions)
        partition_key: str | None = o.get("partition_key") or None
        if partition_key is not None and not all(partition_key.split("->")):
            raise ValueError(f"partition_key '{partition_key}': empty key name")
        self.ordered = partition_key is not None
        newline = o["append_newline"]
        time_key: str | None = o["time_key"] or None
        self.encoder = RecordEncoder(
            what=self.what,
            max_record=self.max_record,
            reserve=RANDOM_KEY_LEN if self.keyed and not partition_key else 0,
            time_key=time_key,
            time_format=TimeKeyFormat(o["time_key_format"] or DEFAULT_TIME_FORMAT,
                                      self.l_digits) if time_key else None,
            log_key=o["log_key"] or None, data_keys=o["data_keys"] or None,
            replace_dots=o["replace_dots"] or None,
            append_newline=self.newline_default if newline is None else newline,
            partition_key=partition_key,
            compress=None if self.mode == "simple" else compress)
        self.unit_compress = compress if self.mode == "simple" else None
        workers = o["workers"] if o["workers"] is not None else self.default_workers
        self.credentials, self.client, self.policy = aws_layer(o, self.service, self.log,
                                                               self.counters, workers)
        self.sender = RecordSender(self.client, self.policy, self.log, self.counters,
                                   self.shape, stream, self.prefix)
        self._warned_keys = False
        for suffix in ("oversize_records", "skipped_records") + (
                ("random_partition_keys",) if self.keyed else ()):
            self.counters.setdefault(f"{self.prefix}_{suffix}", 0)

    async def start(self) -> None:
        await self.client.start()
        await self.credentials.start()

    async def stop(self) -> None:
        await self.client.close()

    async def flush(self, chunk: Chunk) -> FlushResult:
        ev = self.encoder.encode(chunk.times, chunk.bodies)
        self._count(ev)
        units = pack(ev, self.mode, self.max_record, keyed=self.keyed,
                     compress=self.unit_compress)
        outcome = await self.sender.send(units, self.ordered)
        partial = partial_from(ev, units, outcome)
        return partial if partial.segments else Status.OK

    def _count(self, ev: Encoded) -> None:
        counters, prefix = self.counters, self.prefix
        if ev.oversize:
            counters[f"{prefix}_oversize_records"] += ev.oversize
            self.log.warning("dropping %d records larger than the %d bytes %s accepts per "
                             "record (%s)", ev.oversize, self.max_record, self.what,
                             self.stream)
        skipped = len(ev.skipped) - ev.oversize
        if skipped:
            counters[f"{prefix}_skipped_records"] += skipped
            self.log.warning("dropping %d records: %s", skipped, ev.skipped[0][1])
        if ev.missing_keys:
            counters[f"{prefix}_random_partition_keys"] += ev.missing_keys
            if not self._warned_keys:
                self._warned_keys = True
                self.log.warning("partition_key not found in %d records: they get random keys "
                                 "(logged once, counted in %s_random_partition_keys)",
                                 ev.missing_keys, prefix)
