"""The ``store_dir`` staging area of the s3 output.

Layout, under ``<store_dir>/<bucket>/<instance>/``::

    index                      the $INDEX counter (written atomically, fsync'd)
    objects/<oid>.json         one staged object: tag, key, first record time, upload state
    objects/<oid>.ndjson       its records, newline-delimited JSON, uncompressed

``<oid>`` starts with the creation time in nanoseconds, so sorting the names gives creation
order (``preserve_data_ordering``). Metadata is written to a temporary file, fsync'd, renamed
over the old one and the directory fsync'd: a crash leaves either the old or the new state.
Records are appended to the data file and fsync'd before the flush that brought them is
answered OK. A crash in the middle of an append leaves a torn last line; the records of that
append were never acknowledged (the input sends them again), so loading cuts the file back to its
last complete line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from rillet.outputs.s3.key import random_id

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """A single safe path component for a bucket or instance name."""
    return _SAFE.sub("_", text) or "_"


@dataclass
class StagedObject:
    """One future S3 object: its records on disk and how far its upload went."""

    oid: str
    tag: str
    first_time: int  # ns, time of the first record (the key's strftime time)
    created: float  # wall-clock time the first record was staged (upload_timeout)
    key: str  # multipart key
    put_key: str  # PutObject key
    size: int = 0  # bytes of staged records
    upload_id: str = ""  # multipart upload in progress
    creating: bool = False  # CreateMultipartUpload sent, answer not yet recorded
    # Uploaded parts: [part number, ETag, start offset, end offset] in the data file.
    parts: list[list[Any]] = field(default_factory=list)
    uploaded: int = 0  # bytes of the data file already sent as parts
    sealed: bool = False  # no more records go to this object
    # Runtime only (not persisted).
    failures: int = 0
    next_try: float = 0.0
    quarantined: bool = False
    part_hint: int = 0  # raw bytes to wait for before trying a part again (compression)

    _PERSISTED = ("oid", "tag", "first_time", "created", "key", "put_key", "upload_id",
                  "creating", "parts", "uploaded")

    def meta(self) -> bytes:
        d = asdict(self)
        return orjson.dumps({k: d[k] for k in self._PERSISTED})

    @property
    def pending(self) -> int:
        return self.size - self.uploaded


class Store:
    """Staged objects of one s3 output instance."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.objects_dir = os.path.join(root, "objects")
        self.index_path = os.path.join(root, "index")
        self.used = 0  # bytes of staged records
        self._lock_fd: int | None = None

    # -- paths --------------------------------------------------------------------------------
    def data_path(self, obj: StagedObject) -> str:
        return os.path.join(self.objects_dir, obj.oid + ".ndjson")

    def meta_path(self, obj: StagedObject) -> str:
        return os.path.join(self.objects_dir, obj.oid + ".json")

    def open(self) -> None:
        """Create the directories and take the store's lock (blocking; at start). Raises
        ``OSError`` when another instance or process holds it: two writers would upload each
        other's objects while they grow."""
        os.makedirs(self.objects_dir, exist_ok=True)
        fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OSError(f"{self.root} is in use by another s3 output (same bucket and "
                          "alias) or another process") from None
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock (a killed process releases it too)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- atomic small files -------------------------------------------------------------------
    def _write_atomic(self, path: str, data: bytes) -> None:
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._sync_dir(os.path.dirname(path))

    @staticmethod
    def _sync_dir(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- $INDEX -------------------------------------------------------------------------------
    def read_index(self) -> int:
        try:
            with open(self.index_path, "rb") as fp:
                return int(fp.read().strip() or b"0")
        except FileNotFoundError:
            return 0

    def write_index(self, value: int) -> None:
        self._write_atomic(self.index_path, b"%d\n" % value)

    # -- objects ------------------------------------------------------------------------------
    def new_object(self, tag: str, first_time: int, key: str, put_key: str) -> StagedObject:
        oid = f"{time.time_ns():020d}-{random_id(6)}"
        obj = StagedObject(oid, tag, first_time, time.time(), key, put_key)
        self.save(obj)
        return obj

    def save(self, obj: StagedObject) -> None:
        """Persist the object's metadata (blocking: call from a worker thread)."""
        self._write_atomic(self.meta_path(obj), obj.meta())

    def write(self, obj: StagedObject, data: bytes) -> None:
        """Append records to the object's file and fsync them (blocking: a worker thread);
        :meth:`added` counts them once this returned."""
        fd = os.open(self.data_path(obj), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            view = memoryview(data)
            try:
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            except OSError:
                # ENOSPC and the like: take the partial write back so that the next append
                # does not follow a torn line (the flush answers RETRY).
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, obj.size)
                raise
        finally:
            os.close(fd)

    def added(self, obj: StagedObject, n: int) -> None:
        """Count ``n`` bytes written (on the event loop: sizes only change there)."""
        obj.size += n
        self.used += n

    def append(self, obj: StagedObject, data: bytes) -> None:
        """:meth:`write` and :meth:`added` in one (synchronous callers)."""
        self.write(obj, data)
        self.added(obj, len(data))

    def read(self, obj: StagedObject, start: int, stop: int) -> bytes:
        """Bytes ``start:stop`` of the object's records (blocking)."""
        with open(self.data_path(obj), "rb") as fp:
            fp.seek(start)
            return fp.read(stop - start)

    def unlink(self, obj: StagedObject) -> None:
        """Delete a delivered object's files (blocking), its data first: a crash in between
        leaves an empty object, which loading drops. :meth:`removed` does the counting."""
        for path in (self.data_path(obj), self.meta_path(obj)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def removed(self, obj: StagedObject) -> None:
        self.used -= obj.size
        obj.size = 0

    def remove(self, obj: StagedObject) -> None:
        self.unlink(obj)
        self.removed(obj)

    def load(self) -> tuple[list[StagedObject], list[str]]:
        """Every staged object left by an earlier run, oldest first, and the problems met
        (files that could not be read are left in place and reported, never deleted)."""
        problems: list[str] = []
        objects: list[StagedObject] = []
        try:
            names = sorted(os.listdir(self.objects_dir))
        except FileNotFoundError:
            return [], []
        for name in names:
            path = os.path.join(self.objects_dir, name)
            if name.endswith(".tmp"):
                os.unlink(path)
                continue
            if not name.endswith(".json"):
                continue
            try:
                with open(path, "rb") as fp:
                    doc = orjson.loads(fp.read())
                obj = StagedObject(**{k: doc[k] for k in StagedObject._PERSISTED})
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
                problems.append(f"{path}: unreadable metadata ({exc}); left in place")
                continue
            obj.size = self._recover_size(obj)
            if obj.size == 0 and not obj.upload_id and not obj.creating:
                self.remove(obj)
                continue
            if obj.uploaded > obj.size:  # data cut back below what was sent: start over
                obj.upload_id, obj.parts, obj.uploaded = "", [], 0
            obj.sealed = True
            self.used += obj.size
            objects.append(obj)
        return objects, problems

    def _recover_size(self, obj: StagedObject) -> int:
        path = self.data_path(obj)
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            return 0
        if size == 0:
            return 0
        with open(path, "rb+") as fp:
            fp.seek(size - 1)
            if fp.read(1) == b"\n":
                return size
            # A torn append: cut back to the last complete line.
            back = min(size, 1 << 20)
            while True:
                fp.seek(size - back)
                cut = fp.read(back).rfind(b"\n")
                if cut >= 0:
                    good = size - back + cut + 1
                    break
                if back == size:
                    good = 0
                    break
                back = min(size, back * 2)
            fp.truncate(good)
            fp.flush()
            os.fsync(fp.fileno())
            return good
