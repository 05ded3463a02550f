"""Chunk files on disk: writing, per-output completion, the backlog, quarantine and budgets.

Layout under ``storage.path``::

    <input>/<seq>.flb        one chunk (format.py); written as <seq>.flb.tmp then renamed
    <input>/done.log         journal: one JSON line [seq, output] per output that finished a chunk
                             another output still owes
    quarantine/<input>/      chunk files that failed their checks (kept for inspection)

A chunk file lives until every output it names is done with it (delivered or given up); then it
is deleted. On start, :meth:`Store.scan` lists the files left by a previous run, subtracts the
journal and queues them, oldest first, in the backlog (``Store.backlog``) that the engine replays
to exactly the outputs still owed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from rillet.engine.chunk import Body, Chunk
from rillet.engine.storage.format import (
    HEADER,
    HEADER_SIZE,
    SUFFIX,
    CorruptChunk,
    decode,
    encode,
    read_header,
    salvage,
)

QUARANTINE = "quarantine"
JOURNAL = "done.log"


@dataclass(slots=True, eq=False)
class StoredChunk:
    """A chunk file and what is still owed for it."""

    seq: int
    path: str
    input_name: str
    tag: str
    owed: set[str]
    file_size: int
    records: int
    up: bool = False  # its records are in memory (a flight) rather than only on disk


class StorageError(Exception):
    """A chunk could not be written; ``kind`` is "disk" (an OSError), "budget" or "encode"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


Evicted = Callable[[StoredChunk, str], None]


class Store:
    def __init__(self, root: str, *, sync_full: bool = False, checksum: bool = False,
                 delete_irrecoverable: bool = False, limits: dict[str, int] | None = None,
                 drop_oldest: set[str] | None = None, skip_dirs: tuple[str, ...] = (),
                 log: logging.Logger | None = None) -> None:
        self.root = os.path.abspath(root)
        self.sync_full = sync_full
        self.checksum = checksum
        self.delete_irrecoverable = delete_irrecoverable
        self.limits = {k: v for k, v in (limits or {}).items() if v > 0}
        self.drop_oldest = drop_oldest or set()
        self.skip_dirs = {QUARANTINE, *skip_dirs}
        self.log = log or logging.getLogger("rillet.storage")
        self.used: dict[str, int] = dict.fromkeys(self.limits, 0)
        self.files: dict[int, StoredChunk] = {}
        self.backlog: deque[StoredChunk] = deque()
        self.backlog_keys: dict[tuple[str, str], int] = {}
        self.next_seq = 1
        self.stats = {"chunks_written": 0, "bytes_written": 0, "write_errors": 0,
                      "budget_full": 0, "chunks_quarantined": 0, "chunks_deleted": 0,
                      "chunks_salvaged": 0, "records_corrupt": 0,
                      "chunks_loaded": 0, "evicted_records": 0}
        self._dirs: set[str] = set()
        self._journals: dict[str, int] = {}
        self._live: dict[str, int] = {}  # directory -> chunk files in it
        self._faults: dict[str, int] = {}  # directory -> errno last reported

    # -- writing --------------------------------------------------------------------------------
    def persist(self, chunk: Chunk, routes: list[str],
                on_evict: Evicted | None = None) -> StoredChunk:
        """Write ``chunk`` for the outputs ``routes``; raise :class:`StorageError` when the disk
        refuses or an output's ``storage.total_limit_size`` is full."""
        seq = self.next_seq
        meta = {"tag": chunk.tag, "input": chunk.input_name, "routes": routes, "seq": seq,
                "created": time.time()}
        try:
            data = encode(meta, chunk.times, chunk.bodies, self.checksum)
        except (TypeError, ValueError) as exc:  # a body orjson cannot serialize
            raise StorageError("encode", f"cannot serialize chunk {chunk.id}: {exc}") from exc
        size = len(data)
        for name in routes:
            limit = self.limits.get(name)
            if limit is not None and self.used[name] + size > limit:
                if name in self.drop_oldest:
                    self._evict(name, self.used[name] + size - limit, on_evict)
                if self.used[name] + size > limit:
                    self.stats["budget_full"] += 1
                    raise StorageError("budget", f"storage.total_limit_size of {name} is full "
                                       f"({self.used[name]} of {limit} bytes)")
        directory = os.path.join(self.root, chunk.input_name)
        path = os.path.join(directory, f"{seq:012d}{SUFFIX}")
        tmp = path + ".tmp"
        try:
            if directory not in self._dirs:
                os.makedirs(directory, exist_ok=True)
                self._dirs.add(directory)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.sync_full:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
            if self.sync_full:
                self._fsync_dir(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self.stats["write_errors"] += 1
            self._fault(directory, exc)
            raise StorageError("disk", f"cannot write {path}: {exc.strerror or exc}") from exc
        if directory in self._faults:
            del self._faults[directory]
            self.log.info("chunk writes to %s work again", directory)
        self.next_seq = seq + 1
        self.stats["chunks_written"] += 1
        self.stats["bytes_written"] += size
        for name in routes:
            if name in self.used:
                self.used[name] += size
        sc = StoredChunk(seq, path, chunk.input_name, chunk.tag, set(routes), size, len(chunk))
        self.files[seq] = sc
        self._live[directory] = self._live.get(directory, 0) + 1
        return sc

    def _fault(self, directory: str, exc: OSError) -> None:
        code = exc.errno or 0
        if self._faults.get(directory) == code:
            return
        self._faults[directory] = code
        name = errno.errorcode.get(code, str(code))
        self.log.error("cannot write chunks under %s: %s (%s); inputs that need it pause until "
                       "a write succeeds", directory, exc.strerror or exc, name)

    @property
    def faulty(self) -> bool:
        return bool(self._faults)

    def _fsync_dir(self, directory: str) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- completion -----------------------------------------------------------------------------
    def done(self, sc: StoredChunk, output: str) -> None:
        """``output`` is finished with ``sc`` (delivered or given up): record it durably."""
        if output not in sc.owed:
            return
        sc.owed.discard(output)
        if output in self.used:
            self.used[output] -= sc.file_size
        if sc.owed:
            self._journal(sc, output)
            return
        self._delete(sc)

    def _delete(self, sc: StoredChunk) -> None:
        self.files.pop(sc.seq, None)
        if not sc.up:
            self._unqueue(sc)
        try:
            os.unlink(sc.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.log.error("cannot delete delivered chunk %s: %s", sc.path, exc)
        self._gone(sc)

    def _gone(self, sc: StoredChunk) -> None:
        """A chunk file is gone: with none left in its directory, the journal is stale."""
        directory = os.path.dirname(sc.path)
        left = self._live.get(directory, 1) - 1
        self._live[directory] = left
        if left <= 0:
            fd = self._journals.pop(directory, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, JOURNAL))

    def reroute(self, sc: StoredChunk, outputs: list[str]) -> None:
        """``sc`` is owed only to outputs that no longer exist: owe it to ``outputs`` instead
        (in memory; the file keeps its routes, so a crash re-routes it again). No outputs:
        the file is deleted."""
        for name in sc.owed:
            if name in self.used:
                self.used[name] -= sc.file_size
        sc.owed = set(outputs)
        for name in sc.owed:
            if name in self.used:
                self.used[name] += sc.file_size
        if not sc.owed:
            self._delete(sc)

    def _journal(self, sc: StoredChunk, output: str) -> None:
        directory = os.path.dirname(sc.path)
        fd = self._journals.get(directory)
        try:
            if fd is None:
                fd = self._journals[directory] = os.open(
                    os.path.join(directory, JOURNAL), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                    0o600)
            os.write(fd, orjson.dumps([sc.seq, output]) + b"\n")
            if self.sync_full:
                os.fsync(fd)
        except OSError as exc:
            # The chunk stays owed to `output`: after a restart it is sent there again
            # (a duplicate, never a loss).
            self.log.warning("cannot record that %s finished chunk %s: %s", output, sc.path, exc)

    def close(self) -> None:
        for fd in self._journals.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._journals.clear()

    # -- backlog --------------------------------------------------------------------------------
    def queue(self, sc: StoredChunk) -> None:
        """Put ``sc`` down: on disk only, waiting in the backlog (oldest first)."""
        sc.up = False
        self.backlog.append(sc)
        key = (sc.input_name, sc.tag)
        self.backlog_keys[key] = self.backlog_keys.get(key, 0) + 1

    def _unqueue(self, sc: StoredChunk) -> None:
        try:
            self.backlog.remove(sc)
        except ValueError:
            return
        self._key_down(sc)

    def _key_down(self, sc: StoredChunk) -> None:
        key = (sc.input_name, sc.tag)
        left = self.backlog_keys.get(key, 0) - 1
        if left > 0:
            self.backlog_keys[key] = left
        else:
            self.backlog_keys.pop(key, None)

    def take(self) -> tuple[StoredChunk, list[int], list[Body]] | None:
        """The oldest backlog chunk with its records (a bad file is quarantined and skipped)."""
        while self.backlog:
            sc = self.backlog.popleft()
            self._key_down(sc)
            data = b""
            try:
                with open(sc.path, "rb") as fh:
                    data = fh.read()
                _, times, bodies = decode(data)
            except (OSError, CorruptChunk) as exc:
                rescued = self._salvage(sc, data, str(exc)) if data else None
                if rescued is None:
                    self._drop_file(sc)
                    self.quarantine(sc.path, sc.input_name, str(exc))
                    continue
                times, bodies = rescued
            if len(bodies) != sc.records:
                self._drop_file(sc)
                self.quarantine(sc.path, sc.input_name, "record count changed")
                continue
            sc.up = True
            self.stats["chunks_loaded"] += 1
            return sc, times, bodies
        return None

    def _salvage(self, sc: StoredChunk, data: bytes, reason: str
                 ) -> tuple[list[int], list[Body]] | None:
        """A damaged chunk file with per-record CRCs: keep a copy in quarantine, rewrite the file
        with the records that are intact and go on with those. None when nothing is saved."""
        try:
            meta, times, bodies, bad = salvage(data)
        except CorruptChunk:
            return None
        if not bodies:
            return None
        target_dir = os.path.join(self.root, QUARANTINE, sc.input_name)
        tmp = sc.path + ".tmp"
        try:
            os.makedirs(target_dir, exist_ok=True)
            shutil.copyfile(sc.path, os.path.join(target_dir, os.path.basename(sc.path)))
            fixed = encode(meta, times, bodies, self.checksum)
            with open(tmp, "wb") as fh:
                fh.write(fixed)
                if self.sync_full:
                    os.fsync(fh.fileno())
            os.replace(tmp, sc.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self.log.error("cannot rewrite damaged chunk %s: %s", sc.path, exc)
            return None
        for name in sc.owed:
            if name in self.used:
                self.used[name] += len(fixed) - sc.file_size
        sc.file_size, sc.records = len(fixed), len(bodies)
        self.stats["chunks_quarantined"] += 1
        self.stats["chunks_salvaged"] += 1
        self.stats["records_corrupt"] += bad
        self.log.error("chunk file %s is damaged (%s): %d of %d records intact and kept, %d "
                       "lost; the damaged file is kept in %s", sc.path, reason, len(bodies),
                       len(bodies) + bad, bad, target_dir)
        return times, bodies

    def _drop_file(self, sc: StoredChunk) -> None:
        self.files.pop(sc.seq, None)
        for name in sc.owed:
            if name in self.used:
                self.used[name] -= sc.file_size
        sc.owed.clear()
        self._gone(sc)

    def _evict(self, output: str, need: int, on_evict: Evicted | None) -> None:
        """drop_oldest: give up the oldest waiting chunks owed to ``output`` until ``need``
        bytes are free."""
        freed = 0
        for sc in [s for s in self.backlog if output in s.owed]:
            if freed >= need:
                break
            freed += sc.file_size
            self.stats["evicted_records"] += sc.records
            if on_evict is not None:
                on_evict(sc, output)
            self.done(sc, output)

    # -- startup --------------------------------------------------------------------------------
    def scan(self) -> list[StoredChunk]:
        """Queue the chunks a previous run left (minus what its journal says is done)."""
        found: list[StoredChunk] = []
        try:
            os.makedirs(self.root, exist_ok=True)
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError as exc:
            self.log.error("cannot read storage.path %s: %s", self.root, exc)
            return found
        for entry in entries:
            if entry.name in self.skip_dirs or not entry.is_dir(follow_symlinks=False):
                continue
            found.extend(self._scan_input(entry.path, entry.name))
        found.sort(key=lambda s: s.seq)
        for sc in found:
            self.files[sc.seq] = sc
            directory = os.path.dirname(sc.path)
            self._live[directory] = self._live.get(directory, 0) + 1
            for name in sc.owed:
                if name in self.used:
                    self.used[name] += sc.file_size
            self.queue(sc)
        if found:
            self.next_seq = max(self.next_seq, found[-1].seq + 1)
            self.log.info("backlog: %d chunks (%d records) from a previous run under %s",
                          len(found), sum(s.records for s in found), self.root)
        return found

    def _scan_input(self, directory: str, input_name: str) -> list[StoredChunk]:
        done = _read_journal(os.path.join(directory, JOURNAL))
        out: list[StoredChunk] = []
        max_seq = 0
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            name = entry.name
            if name.endswith(SUFFIX + ".tmp"):
                # Never renamed, so never acknowledged: the input still has these records.
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            if not name.endswith(SUFFIX):
                continue
            try:
                seq = int(name[:-len(SUFFIX)])
            except ValueError:
                self.quarantine(entry.path, input_name, "unexpected file name")
                continue
            max_seq = max(max_seq, seq)
            try:
                meta, count = _head(entry.path)
            except (OSError, CorruptChunk) as exc:
                self.quarantine(entry.path, input_name, str(exc))
                continue
            owed = set(meta["routes"]) - done.get(seq, set())
            if not owed:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            out.append(StoredChunk(seq, entry.path, str(meta.get("input", input_name)),
                                   meta["tag"], owed, entry.stat().st_size, count))
        self.next_seq = max(self.next_seq, max_seq + 1)
        _rewrite_journal(os.path.join(directory, JOURNAL),
                         [(sc.seq, o) for sc in out for o in sorted(done.get(sc.seq, ()))])
        return out

    def quarantine(self, path: str, input_name: str, reason: str) -> None:
        """Move (or, with storage.delete_irrecoverable_chunks, delete) a bad chunk file."""
        if self.delete_irrecoverable:
            self.stats["chunks_deleted"] += 1
            self.log.error("chunk file %s is irrecoverable (%s): deleted", path, reason)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return
        self.stats["chunks_quarantined"] += 1
        target_dir = os.path.join(self.root, QUARANTINE, input_name)
        target = os.path.join(target_dir, os.path.basename(path))
        try:
            os.makedirs(target_dir, exist_ok=True)
            os.replace(path, target)
        except OSError as exc:
            self.log.error("chunk file %s is corrupt (%s) and cannot be quarantined (%s): "
                           "deleted", path, reason, exc)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return
        self.log.error("chunk file %s is corrupt (%s): moved to %s", path, reason, target)


def _head(path: str) -> tuple[dict[str, Any], int]:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(HEADER_SIZE)
        if len(head) == HEADER_SIZE:
            meta_len = HEADER.unpack_from(head)[5]
            if meta_len <= size:
                head += fh.read(meta_len)
    return read_header(head, size)


def _read_journal(path: str) -> dict[int, set[str]]:
    done: dict[int, set[str]] = {}
    try:
        with open(path, "rb") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return done
    except OSError:
        return done
    for line in lines:
        try:
            seq, output = orjson.loads(line)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            continue  # a line cut by a crash: that output is still owed (a duplicate at worst)
        if isinstance(seq, int) and isinstance(output, str):
            done.setdefault(seq, set()).add(output)
    return done


def _rewrite_journal(path: str, rows: list[tuple[int, str]]) -> None:
    try:
        if not rows:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(b"".join(orjson.dumps([s, o]) + b"\n" for s, o in rows))
        os.replace(tmp, path)
    except OSError:
        pass  # the old journal stays: it is still correct, only longer

