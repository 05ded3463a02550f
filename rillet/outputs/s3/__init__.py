"""``s3`` output: records to Amazon S3 objects of newline-delimited JSON (Fluent Bit's out_s3).

A flush encodes the chunk's records (one JSON object per line, the date under ``json_date_key``
first, or only the ``log_key`` value) and appends them to the staged object of the chunk's tag in
``store_dir`` (:mod:`.store`), fsync'd. Only then is the flush answered OK: an acknowledged record
is on disk and survives a crash; records of an append that did not finish were not
acknowledged, so the input sends them again. A full ``store_dir_limit_size`` answers RETRY
(backpressure, counted in ``s3_store_full``), never a silent drop.

Uploads run in the background, like Fluent Bit's timer callback (:mod:`.upload`):

- multipart (the default): once ``upload_chunk_size`` bytes are staged for an object, they are
  sent as one part (compressed on the way, each part on its own: concatenated gzip members and
  zstd frames are one valid stream); when the object reaches ``total_file_size``, or
  ``upload_timeout`` after its first record, the rest is sent as the last part and the upload is
  completed. An object that never reached one part is sent with PutObject instead;
- ``use_put_object``: the whole object in one PutObject when it is complete.

The upload id, the parts sent and their ETags are kept in the object's metadata, so an upload
interrupted by a restart is resumed (or started again from the staged records when S3 no longer
knows it); an upload created just before a crash and never recorded is found with
ListMultipartUploads and aborted. A delivered object's files are deleted. Failed uploads are
retried with backoff; after ``retry_limit`` failed attempts the object is quarantined: it stays
on disk (logged with its path, counted in ``s3_quarantined_objects``) and is tried again at the
next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import orjson

from rillet.aws.options import AWS_OPTIONS, connect
from rillet.aws.policy import DeliveryPolicy
from rillet.config.options import Option, T
from rillet.engine.chunk import Body, Chunk
from rillet.engine.pipeline import parse_retry_limit
from rillet.engine.plugin import FlushResult, Output, Partial, Status, register
from rillet.outputs import formats
from rillet.outputs.compress import CONTENT_ENCODING, compressor
from rillet.outputs.s3.key import KeyFormat
from rillet.outputs.s3.store import StagedObject, Store, safe_name
from rillet.outputs.s3.upload import (
    NO_SUCH_UPLOAD,
    ObjectSettings,
    S3Api,
    S3Client,
    UploadError,
)

MIN_PART = 5_242_880  # S3's smallest part (except the last one)
MAX_PART = 50_000_000  # Fluent Bit's largest upload_chunk_size ("50M")
MIN_CHUNK_OPTION = 5_000_000  # "5M" as the size grammar reads it: accepted, raised to 5 MiB
MIN_TOTAL = 1_000_000
MAX_TOTAL_PUT = 1_000_000_000
MAX_TOTAL_MULTIPART = 50_000_000_000
COMPRESSIONS = ("gzip", "zstd")
SHUTDOWN_BUDGET = 10.0  # seconds spent uploading at stop; the rest waits for the next start

_loads = orjson.loads
_dumps = orjson.dumps
_MISSING: Any = object()


def encode_log_key(bodies: Sequence[Body], key: str) -> tuple[bytes, list[int]]:
    """One line per record with ``key``'s value (strings raw, other values as JSON), and the
    indices of the records that have no such key or cannot be read."""
    out: list[bytes] = []
    append = out.append
    skipped: list[int] = []
    loads, dumps, missing = _loads, _dumps, _MISSING
    for i, body in enumerate(bodies):
        try:
            record = loads(body) if type(body) is bytes else body
            value = record.get(key, missing) if type(record) is dict else missing
            if value is missing:
                skipped.append(i)
                continue
            append(value.encode("utf-8", "surrogateescape") if type(value) is str
                   else dumps(value))
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, UnicodeEncodeError):
            skipped.append(i)
    if not out:
        return b"", skipped
    out.append(b"")
    return b"\n".join(out), skipped


def _ranges(indices: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


@register
class S3(Output):
    name = "s3"
    description = "Send to S3"
    default_workers = 1
    options = (
        Option("bucket", T.STR, None, "S3 bucket name (required)"),
        Option("region", T.STR, "us-east-1", "AWS region of the bucket"),
        Option("total_file_size", T.SIZE, "100000000", "size of the objects: min 1M, max 1G "
               "with use_put_object, 50G with multipart"),
        Option("upload_chunk_size", T.SIZE, "5242880", "multipart part size, 5M to 50M "
               "(counted before compression)"),
        Option("upload_timeout", T.TIME, "10m", "complete an object this long after its first "
               "record even if it is smaller than total_file_size"),
        Option("store_dir", T.STR, "/tmp/fluent-bit/s3", "directory where records are staged "
               "before upload; kept across restarts"),
        Option("store_dir_limit_size", T.SIZE, "0", "most bytes staged in store_dir; when full "
               "flushes answer RETRY (0 = unlimited)"),
        Option("s3_key_format", T.STR, "/fluent-bit-logs/$TAG/%Y/%m/%d/%H/%M/%S", "object key: "
               "$TAG, $TAG[n], $UUID, $INDEX and strftime of the first record's time (UTC)"),
        Option("s3_key_format_tag_delimiters", T.STR, ".", "characters that split the tag for "
               "$TAG[n]"),
        Option("static_file_path", T.BOOL, "false", "do not append a random suffix to "
               "PutObject keys without $UUID"),
        Option("use_put_object", T.BOOL, "false", "send each object with one PutObject instead "
               "of a multipart upload"),
        Option("compression", T.STR, None, "gzip or zstd (sets Content-Encoding)"),
        Option("content_type", T.STR, None, "Content-Type of the objects"),
        Option("canned_acl", T.STR, None, "canned ACL of the objects (x-amz-acl)"),
        Option("storage_class", T.STR, None, "storage class of the objects"),
        Option("send_content_md5", T.BOOL, "false", "send Content-MD5 with PutObject and "
               "UploadPart (needed with Object Lock)"),
        Option("json_date_key", T.STR, "date", "name of the date key; false, off or no leaves "
               "the date out"),
        Option("json_date_format", T.STR, None, formats.DATE_FORMAT_DOC + " (default: double)"),
        Option("log_key", T.STR, None, "write only this key's value (strings raw, other "
               "values as JSON); records without it are skipped"),
        Option("preserve_data_ordering", T.BOOL, "true", "complete objects in the order they "
               "were created, even when an upload fails"),
        Option("endpoint", T.STR, None, "S3 endpoint: host, host:port or URL (path-style "
               "requests)"),
        *AWS_OPTIONS,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        bucket: str | None = o["bucket"]
        if not bucket:
            raise ValueError("'bucket' is a required parameter")
        self.bucket = bucket
        self.use_put_object: bool = o["use_put_object"]
        total: int = o["total_file_size"]
        chunk: int = o["upload_chunk_size"]
        if total < MIN_TOTAL:
            raise ValueError("total_file_size must be at least 1M")
        if chunk < MIN_CHUNK_OPTION:
            raise ValueError("upload_chunk_size must be at least 5M (5,242,880 bytes)")
        if chunk > MAX_PART:
            raise ValueError("max upload_chunk_size is 50M")
        if not self.use_put_object and total < 2 * MIN_PART:
            self.log.info("total_file_size is less than 10 MB, will use PutObject API")
            self.use_put_object = True
        if self.use_put_object and total > MAX_TOTAL_PUT:
            raise ValueError("max total_file_size is 1G when use_put_object is on")
        if total > MAX_TOTAL_MULTIPART:
            raise ValueError("max total_file_size is 50G")
        if not self.use_put_object and chunk > total:
            raise ValueError("upload_chunk_size can not be larger than total_file_size")
        self.total_file_size = total
        self.chunk_size = max(chunk, MIN_PART)
        self.upload_timeout: float = o["upload_timeout"]
        if self.upload_timeout <= 0:
            raise ValueError("upload_timeout must be greater than 0")
        self.limit: int = o["store_dir_limit_size"]
        self.retries = parse_retry_limit(o["retry_limit"])
        self.preserve_order: bool = o["preserve_data_ordering"]
        self.key_format = KeyFormat(o["s3_key_format"], o["s3_key_format_tag_delimiters"],
                                    o["static_file_path"])
        self.compression = (o["compression"] or "").strip().lower() or None
        if self.compression in ("none", "off", "false"):
            self.compression = None
        if self.compression in ("arrow", "parquet", "snappy"):
            raise ValueError(f"compression {self.compression} is not supported in this "
                             "version; accepted: gzip, zstd")
        self.compress = compressor(self.compression, COMPRESSIONS)
        self.log_key: str | None = o["log_key"] or None
        self.encoder = formats.JsonEncoder(formats.JSON_LINES,
                                           formats.date_key_option(o["json_date_key"]),
                                           formats.date_format_option(o["json_date_format"]),
                                           verbatim=True)
        self.settings = ObjectSettings(
            content_type=o["content_type"],
            content_encoding=CONTENT_ENCODING[self.compression] if self.compression else None,
            canned_acl=o["canned_acl"], storage_class=o["storage_class"],
            send_content_md5=o["send_content_md5"])
        alias = o["alias"] or self.instance
        self.store = Store(os.path.join(o["store_dir"], safe_name(bucket), safe_name(alias)))

        region: str = o["region"] or "us-east-1"
        self.credentials, self.client = connect(
            o, functools.partial(S3Client, bucket=bucket), "s3", region, self.log,
            endpoint=o["endpoint"], timeout=120.0)
        workers = o["workers"] if o["workers"] is not None else self.default_workers
        self.policy = DeliveryPolicy(self.log, self.counters,
                                     max_concurrency=max(4, 2 * max(1, workers)))
        self.api = S3Api(self.client, self.policy, self.settings)

        self.objects: dict[str, StagedObject] = {}
        self.active: dict[str, StagedObject] = {}
        self.index = 0
        self.retry_base = 1.0  # seconds before an object's first retry (doubles, max 60 s)
        self._append_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned_full = 0.0
        for name in ("s3_staged_records", "s3_staged_bytes", "s3_store_full",
                     "s3_skipped_records", "s3_objects_uploaded", "s3_parts_uploaded",
                     "s3_bytes_uploaded", "s3_upload_failures", "s3_quarantined_objects",
                     "s3_recovered_objects", "s3_aborted_uploads"):
            self.counters.setdefault(name, 0)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.client.start()
        await self.credentials.start()
        store = self.store
        await asyncio.to_thread(store.open)
        objects, problems = await asyncio.to_thread(store.load)
        for problem in problems:
            self.log.error("store_dir: %s", problem)
        self.index = await asyncio.to_thread(store.read_index)
        for obj in objects:
            self.objects[obj.oid] = obj
        if objects:
            self.counters["s3_recovered_objects"] += len(objects)
            self.log.info("found %d staged objects (%d bytes) in %s from an earlier run: "
                          "uploading them", len(objects), store.used, store.root)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())
        if objects:
            self._wake.set()

    async def stop(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None
        try:
            await asyncio.wait_for(self._drain(), SHUTDOWN_BUDGET)
        except TimeoutError:
            self.log.warning("shutdown: uploads still running after %gs", SHUTDOWN_BUDGET)
        left = [o for o in self.objects.values() if o.size or o.upload_id]
        if left:
            self.log.warning("%d objects (%d bytes) stay staged in %s; they are uploaded at "
                             "the next start", len(left), sum(o.size for o in left),
                             self.store.root)
        self.store.close()
        await self.client.close()

    async def _drain(self) -> None:
        """Upload everything staged (retrying failures after their backoff) until nothing is
        left but quarantined objects; bounded by the caller."""
        while True:
            await self._upload_pass(final=True)
            waiting = [o.next_try for o in self.objects.values() if not o.quarantined]
            if not waiting:
                return
            await asyncio.sleep(max(0.01, min(waiting) - time.monotonic()))

    # -- staging ------------------------------------------------------------------------------
    def encode(self, chunk: Chunk) -> tuple[bytes, list[int]]:
        """The chunk's lines and the indices of the records left out."""
        if self.log_key is not None:
            return encode_log_key(chunk.bodies, self.log_key)
        return self.encoder.encode(chunk.times, chunk.bodies), []

    def _new_object(self, tag: str, first_time: int) -> StagedObject:
        """Render the key and stage an empty object (blocking: worker thread)."""
        index = self.index
        if self.key_format.has_index:
            self.index += 1
            self.store.write_index(self.index)
        rendered = self.key_format.render(tag, first_time, index)
        return self.store.new_object(tag, first_time, rendered.key, rendered.put_key)

    def _seal(self, obj: StagedObject) -> None:
        obj.sealed = True
        if self.active.get(obj.tag) is obj:
            del self.active[obj.tag]

    async def flush(self, chunk: Chunk) -> FlushResult:
        if not chunk.bodies:
            return Status.OK
        data, skipped = self.encode(chunk)
        result: FlushResult = Status.OK
        if skipped:
            self.counters["s3_skipped_records"] += len(skipped)
            reason = f"could not find log_key '{self.log_key}' in record"
            self.log.warning("%d records skipped: %s", len(skipped), reason)
            partial = Partial()
            for start, stop in _ranges(skipped):
                partial.add(start, stop, Status.ERROR, reason)
            result = partial
        if not data:
            return result
        n = len(data)
        store = self.store
        if self.limit and store.used and store.used + n > self.limit:
            self.counters["s3_store_full"] += 1
            now = time.monotonic()
            if now - self._warned_full > 10:
                self._warned_full = now
                self.log.warning("store_dir_limit_size reached (%d of %d bytes staged): "
                                 "chunk of %d records will be retried (counted in "
                                 "s3_store_full)", store.used, self.limit, len(chunk))
            return Status.RETRY
        async with self._append_lock:
            tag = chunk.tag
            obj = self.active.get(tag)
            try:
                if obj is not None and obj.size and obj.size + n > self.total_file_size:
                    self._seal(obj)
                    obj = None
                if obj is None:
                    obj = await asyncio.to_thread(self._new_object, tag, chunk.times[0])
                    self.objects[obj.oid] = obj
                    self.active[tag] = obj
                await asyncio.to_thread(store.write, obj, data)
                store.added(obj, n)
            except OSError as exc:
                self.log.error("cannot stage records in %s: %s", store.root, exc)
                return Status.RETRY
            self.counters["s3_staged_records"] += len(chunk) - len(skipped)
            self.counters["s3_staged_bytes"] += n
            if obj.size >= self.total_file_size:
                self._seal(obj)
            if obj.sealed or (not self.use_put_object and obj.pending >= self.chunk_size):
                self._poke()
        return result

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- uploads ------------------------------------------------------------------------------
    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        tick = min(1.0, self.upload_timeout / 2)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), tick)
            wake.clear()
            try:
                await self._upload_pass(final=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("upload pass failed")

    def _ready(self, obj: StagedObject, now: float) -> bool:
        if obj.quarantined or obj.next_try > now:
            return False
        if obj.sealed:
            return True
        return (not self.use_put_object
                and obj.pending >= max(self.chunk_size, obj.part_hint))

    async def _upload_pass(self, final: bool) -> None:
        """Seal what is due, then upload what is ready (in creation order when
        ``preserve_data_ordering``)."""
        wall = time.time()
        async with self._append_lock:  # never seal an object while records go into it
            for obj in list(self.active.values()):
                if final or wall - obj.created >= self.upload_timeout:
                    self._seal(obj)
        now = time.monotonic()
        ready = [o for o in sorted(self.objects.values(), key=lambda o: o.oid)
                 if self._ready(o, now)]
        if not ready:
            return
        if self.preserve_order:
            for obj in ready:
                ok = await self._process(obj)
                if not ok and obj.sealed and not obj.quarantined:
                    break  # later objects wait: they must not overtake this one
        else:
            await asyncio.gather(*(self._process(o) for o in ready))

    def _lock(self, obj: StagedObject) -> asyncio.Lock:
        lock = self._locks.get(obj.oid)
        if lock is None:
            lock = self._locks[obj.oid] = asyncio.Lock()
        return lock

    async def _process(self, obj: StagedObject) -> bool:
        """Move one object forward: parts, completion or PutObject. False on failure."""
        async with self._lock(obj):
            if obj.oid not in self.objects:
                return True
            try:
                await self._advance(obj)
            except (UploadError, OSError) as exc:
                self._failed(obj, exc)
                return False
            obj.failures = 0
            return True

    async def _advance(self, obj: StagedObject) -> None:
        store = self.store
        api = self.api
        if obj.creating and not obj.upload_id:
            # CreateMultipartUpload was sent before a crash and its answer was lost.
            for upload_id in await api.list_uploads(obj.key):
                await api.abort_multipart(obj.key, upload_id)
                self.counters["s3_aborted_uploads"] += 1
            obj.creating = False
            await asyncio.to_thread(store.save, obj)
        if obj.sealed and obj.size == 0:
            if obj.upload_id:
                await self._abort(obj)
            await self._finish(obj, 0)
            return
        small = obj.size < 2 * self.chunk_size
        if self.use_put_object or (obj.sealed and not obj.parts and small):
            if not obj.sealed:
                return
            if obj.upload_id:  # created, but not one part went: one PutObject is simpler
                await self._abort(obj)
            raw = await asyncio.to_thread(store.read, obj, 0, obj.size)
            body = await self._compressed(raw)
            await api.put_object(obj.put_key, body)
            self.log.info("Successfully uploaded object %s (%d bytes)", obj.put_key, len(body))
            await self._finish(obj, len(body))
            return
        while obj.size > obj.uploaded:
            start = obj.uploaded
            target = max(self.chunk_size, obj.part_hint)
            if not obj.sealed and obj.size - start < target:
                break
            part, end = await self._next_part(obj, start, target)
            if part is None:
                break
            if not obj.upload_id:
                obj.creating = True
                await asyncio.to_thread(store.save, obj)
                obj.upload_id = await api.create_multipart(obj.key)
                obj.creating = False
                await asyncio.to_thread(store.save, obj)
            number = len(obj.parts) + 1
            etag = await api.upload_part(obj.key, obj.upload_id, number, part)
            obj.parts.append([number, etag, start, end])
            obj.uploaded = end
            obj.part_hint = 0
            await asyncio.to_thread(store.save, obj)
            self.counters["s3_parts_uploaded"] += 1
            self.counters["s3_bytes_uploaded"] += len(part)
            self.log.debug("uploaded part %d of %s (%d bytes)", number, obj.key, len(part))
        if obj.sealed and obj.uploaded >= obj.size:
            await api.complete_multipart(obj.key, obj.upload_id, obj.parts)
            self.log.info("Successfully uploaded object %s (%d parts)", obj.key,
                          len(obj.parts))
            await self._finish(obj, 0)

    async def _next_part(self, obj: StagedObject, start: int,
                         target: int) -> tuple[bytes | None, int]:
        """The next part's body (compressed) and where it ends in the staged records: about
        ``target`` raw bytes cut at a line end, everything left when that is less than two
        parts. None while an open object's part would compress below S3's 5 MiB minimum."""
        store = self.store
        while True:
            size = obj.size  # only ever at a line end: appends count once written
            stop = size if size - start < 2 * target else start + target
            raw = await asyncio.to_thread(store.read, obj, start, stop)
            if stop < size:
                cut = raw.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a part: take everything
                    stop = size
                    raw = await asyncio.to_thread(store.read, obj, start, stop)
                else:
                    raw, stop = raw[:cut], start + cut
            body = await self._compressed(raw)
            if len(body) >= MIN_PART or (obj.sealed and stop == size):
                return body, stop
            # Compressed below S3's smallest part: take more records.
            grown = int(len(raw) * MIN_PART * 1.1 / max(1, len(body)))
            if stop == size:  # an open object: wait for them
                obj.part_hint = grown
                self.log.info("Pre-compression upload_chunk_size= %d, after compression the "
                              "part is only %d bytes: waiting for %d bytes before the next "
                              "part", len(raw), len(body), grown)
                return None, stop
            target = grown

    async def _compressed(self, raw: bytes) -> bytes:
        compress = self.compress
        if compress is None:
            return raw
        return await asyncio.to_thread(compress, raw)

    async def _abort(self, obj: StagedObject) -> None:
        await self.api.abort_multipart(obj.key, obj.upload_id)
        self.counters["s3_aborted_uploads"] += 1
        obj.upload_id, obj.parts, obj.uploaded = "", [], 0
        await asyncio.to_thread(self.store.save, obj)

    async def _finish(self, obj: StagedObject, sent: int) -> None:
        await asyncio.to_thread(self.store.unlink, obj)
        self.store.removed(obj)
        self.objects.pop(obj.oid, None)
        self._locks.pop(obj.oid, None)
        if self.active.get(obj.tag) is obj:
            del self.active[obj.tag]
        self.counters["s3_objects_uploaded"] += 1
        self.counters["s3_bytes_uploaded"] += sent

    def _failed(self, obj: StagedObject, exc: Exception) -> None:
        self.counters["s3_upload_failures"] += 1
        if isinstance(exc, UploadError) and exc.code == NO_SUCH_UPLOAD:
            # S3 forgot the upload (aborted, expired, or completed before a crash): start the
            # object again from its staged records, under the same key.
            obj.upload_id, obj.parts, obj.uploaded = "", [], 0
            with contextlib.suppress(OSError):
                self.store.save(obj)
        obj.failures += 1
        if self.retries is not None and obj.failures > self.retries:
            obj.quarantined = True
            self.counters["s3_quarantined_objects"] += 1
            self.log.error("upload of %s failed %d times (%s): giving up for this run; its "
                           "records stay in %s and are tried again at the next start",
                           obj.key, obj.failures, exc, self.store.data_path(obj))
            return
        delay = min(60.0, self.retry_base * 2 ** (obj.failures - 1))
        obj.next_try = time.monotonic() + delay * random.uniform(0.8, 1.2)
        self.log.warning("upload of %s failed (%s); retrying in %.1fs", obj.key, exc, delay)
