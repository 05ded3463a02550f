"""``tail`` input: follows files matched by globs (Fluent Bit's in_tail).

Discovery: ``Path`` globs are scanned at start and every ``Refresh_Interval`` seconds; on Linux
inotify also watches the files and the directories of the patterns (new files, writes,
renames, deletions) for low latency, with stat polling as the fallback (``Inotify_Watcher off``)
and as a periodic safety net.

Reading: one loop per read of one file (``Buffer_Chunk_Size`` bytes): split on ``\\n``, strip a
trailing ``\\r``, skip leading NUL bytes (copytruncate holes), parse, emit one batch. A line longer
than ``Buffer_Max_Size`` is skipped (or truncated with ``truncate_long_lines``), counted and
warned once per file; the file is never abandoned.

Delivery: every batch carries an acknowledgement token; a file's offset advances, and is written
to the ``DB`` (Fluent Bit's SQLite schema), only over batches every matching output has
finished. A crash at any moment loses nothing; duplicates are at most the batches in flight.

Rotation: rename+create, copytruncate and symlink retargeting are detected by inode changes
(``watcher_interval`` and inotify events) and size drops; a rotated or deleted file is read to
its end before it is released (also while the input is paused); ``Rotate_Wait`` bounds only how
long a fully read rotated file stays open for late writes. See docs/tail.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch, Body
from rillet.engine.plugin import Input, InputContext, register
from rillet.inputs.tail import file as tf
from rillet.inputs.tail import inotify as ino
from rillet.inputs.tail.db import JOURNAL_MODES, SYNC_LEVELS, OffsetDB
from rillet.inputs.tail.docker_mode import DockerMode
from rillet.inputs.tail.file import Ack, TailFile
from rillet.inputs.tail.legacy_multiline import LegacyMultiline
from rillet.inputs.tail.scan import Found, Scanner
from rillet.inputs.tail.tag import TagRegex, expand_star

_NS = 1_000_000_000
# Housekeeping period: stat polling, flush timeouts, batched DB commits.
_TICK = 0.25
# Yield to the event loop after this many bytes read in one go (lets flushes and acks run).
_YIELD_BYTES = 1 << 20
# Bytes read from one file before moving to the next one (fairness between busy files).
_MIN_READ = 128 * 1024  # bytes asked for per read(2)
_ROUND_BYTES = 4 << 20

_FROZEN = False

# Processing modes, decided once per instance.
_RAW, _PARSER, _JSON, _DOCKER_FAST, _DOCKER, _ML, _LEGACY = range(7)


def _seconds(value: str) -> str | None:
    try:
        if float(value) < 0:
            return "must not be negative"
    except ValueError:
        return f"invalid number of seconds '{value}'"
    return None


@register
class Tail(Input):
    name = "tail"
    description = "Tail files"
    options = (
        Option("path", T.CLIST, None, "comma-separated globs of the files to read"),
        Option("exclude_path", T.CLIST, None, "comma-separated fnmatch patterns to skip"),
        Option("key", T.STR, "log", "key of the raw line when no parser applied"),
        Option("path_key", T.STR, None, "add the file name to each record under this key"),
        Option("offset_key", T.STR, None, "add the line's byte offset under this key"),
        Option("read_from_head", T.BOOL, "false", "files found at startup without a DB "
               "position are read from the start (else from the end)"),
        Option("read_newly_discovered_files_from_head", T.BOOL, "true",
               "files discovered after startup are read from the start"),
        Option("refresh_interval", T.STR, "60", "seconds between scans of the globs",
               check=_seconds),
        Option("rotate_wait", T.TIME, "5", "seconds a fully read rotated file stays open for "
               "late writes"),
        Option("watcher_interval", T.TIME, "2", "seconds between rotation checks "
               "(renames, symlink targets)"),
        Option("docker_mode", T.BOOL, "false", "rejoin Docker json-file lines split at 16 KB"),
        Option("docker_mode_flush", T.INT, "4", "seconds before an incomplete Docker line is "
               "flushed"),
        Option("docker_mode_parser", T.STR, None, "parser recognising the first line of a "
               "multi-line Docker message"),
        Option("ignore_older", T.TIME, "0", "skip files (and drop parsed records) older than "
               "this (0 = off)"),
        Option("buffer_chunk_size", T.SIZE, "32768", "bytes read per read"),
        Option("buffer_max_size", T.SIZE, "32768", "longest line, in bytes"),
        Option("skip_long_lines", T.BOOL, "false", "skip lines longer than Buffer_Max_Size "
               "(rillet always skips them unless truncate_long_lines; the file is kept)"),
        Option("truncate_long_lines", T.BOOL, "false", "truncate long lines to "
               "Buffer_Max_Size instead of skipping them"),
        Option("skip_empty_lines", T.BOOL, "false", "drop empty lines"),
        Option("exit_on_eof", T.BOOL, "false", "exit once every file found at start was read "
               "to its end and delivered"),
        Option("parser", T.STR, None, "parser applied to each line"),
        Option("tag_regex", T.STR, None, "regex on the file path; <name> in Tag is its group"),
        Option("db", T.STR, None, "SQLite file keeping the offsets (Fluent Bit's schema)"),
        Option("db.sync", T.STR, "normal", "PRAGMA synchronous",
               choices=tuple(SYNC_LEVELS)),
        Option("db.locking", T.BOOL, "false", "PRAGMA locking_mode=EXCLUSIVE"),
        Option("db.journal_mode", T.STR, "WAL", "PRAGMA journal_mode",
               choices=JOURNAL_MODES),
        Option("db.compare_filename", T.BOOL, "false", "a DB row must match the file name "
               "as well as the inode"),
        Option("multiline.parser", T.CLIST, None, "multiline parsers (e.g. docker, cri)",
               multiple=True),
        Option("multiline", T.BOOL, "off", "old multiline mode (Parser_Firstline)"),
        Option("multiline_flush", T.TIME, "4", "seconds before a pending old-multiline "
               "message is flushed"),
        Option("parser_firstline", T.STR, None, "old multiline: parser of a first line"),
        Option("parser_", T.STR, None, "old multiline: parsers of continuation lines "
               "(Parser_1, Parser_2, ...)", prefix=True),
        Option("inotify_watcher", T.BOOL, "true", "use inotify (else stat polling)"),
        Option("static_batch_size", T.SIZE, "50M", "bytes read from one file per round while "
               "catching up"),
        Option("event_batch_size", T.SIZE, "50M", "bytes read from one file per round for "
               "new data"),
        Option("file_cache_advise", T.BOOL, "true", "tell the kernel read data need not be "
               "cached"),
        Option("generic.encoding", T.STR, None, "encoding of the files (ShiftJIS, GBK, "
               "GB18030, BIG5, UHC, WIN866, WIN874, WIN1250-WIN1256)"),
        Option("unicode.encoding", T.STR, None, "auto (BOM detection), UTF-8, UTF-16LE or "
               "UTF-16BE", choices=tf.UNICODE_ENCODINGS),
        Option("max_open_files", T.INT, "1024", "descriptors kept open; idle files at EOF "
               "beyond this are closed and reopened when they change"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        paths = [p for p in (o["path"] or []) if p.strip()]
        if not paths:
            raise ValueError("path: no input 'path' was given")
        self.scanner = Scanner(paths, o["exclude_path"] or [])
        self.key: str = o["key"]
        self.path_key: str | None = o["path_key"]
        self.offset_key: str | None = o["offset_key"]
        self.tag: str = o["tag"] or self.instance
        self.tag_regex: TagRegex | None = None
        if o["tag_regex"]:
            try:
                self.tag_regex = TagRegex(o["tag_regex"], self.tag)
            except ValueError as exc:
                raise ValueError(f"tag_regex: {exc}") from None
        self.refresh = max(float(o["refresh_interval"]), 0.1)
        self.rotate_wait = float(o["rotate_wait"])
        self.watch_interval = max(float(o["watcher_interval"]), 0.1)
        self.ignore_older_ns = int(o["ignore_older"]) * _NS
        chunk = max(int(o["buffer_chunk_size"]), 1024)
        # Buffer_Chunk_Size and Buffer_Max_Size bound a line, as in Fluent Bit; a read may be
        # larger (fewer, larger batches when catching up; no effect on which lines are kept).
        self.read_size = max(chunk, _MIN_READ)
        self.max_line = max(int(o["buffer_max_size"]), chunk)
        self.truncate_long = bool(o["truncate_long_lines"])
        self.skip_empty = bool(o["skip_empty_lines"])
        self.exit_on_eof = bool(o["exit_on_eof"])
        self.batch_budget = max(min(int(o["static_batch_size"]), _ROUND_BYTES), self.read_size)
        self.event_budget = max(min(int(o["event_batch_size"]), _ROUND_BYTES), self.read_size)
        self.max_open = max(int(o["max_open_files"]), 1)
        self.fadvise = bool(o["file_cache_advise"]) and hasattr(os, "posix_fadvise")
        self.codec: str | None = None
        if o["generic.encoding"]:
            self.codec = tf.generic_codec(o["generic.encoding"])
        self.unicode: str | None = o["unicode.encoding"]
        self.parser = self._parser(o["parser"], "parser")
        self.dm_parser = self._parser(o["docker_mode_parser"], "docker_mode_parser")
        ml_names: list[str] = []
        for item in o["multiline.parser"] or []:
            for name in item if isinstance(item, list) else [item]:
                if name.strip():
                    ml_names.append(name.strip())
        self.ml_parsers: list[Any] = []
        if ml_names:
            if o["parser"] or o["docker_mode"] or o["multiline"]:
                raise ValueError("multiline.parser: cannot be combined with parser, "
                                 "docker_mode or multiline")
            for name in ml_names:
                mp = self.parsers.multiline(name)
                if mp is None:
                    raise ValueError(f"multiline.parser: unknown multiline parser '{name}'")
                self.ml_parsers.append(mp)
        if o["docker_mode"] and o["multiline"]:
            raise ValueError("docker_mode: Docker mode cannot be enabled when multiline is "
                             "enabled")
        self.firstline: Any = None
        self.parsers_n: list[Any] = []
        if o["multiline"]:
            self.firstline = self._parser(o["parser_firstline"], "parser_firstline")
            if self.firstline is None:
                raise ValueError("parser_firstline: multiline needs a Parser_Firstline")
            for k in sorted(o["parser_"], key=lambda k: (len(k), k)):
                self.parsers_n.append(self._parser(o["parser_"][k], k))
        self.json_fast = tf.JsonFast(self.parser) if tf.JsonFast.usable(self.parser) else None
        if o["docker_mode"]:
            self.mode = _DOCKER_FAST if self.json_fast is not None else _DOCKER
        elif self.ml_parsers:
            self.mode = _ML
        elif o["multiline"]:
            self.mode = _LEGACY
        elif self.json_fast is not None:
            self.mode = _JSON
        elif self.parser is not None:
            self.mode = _PARSER
        else:
            self.mode = _RAW
        self.dm_flush = float(max(int(o["docker_mode_flush"]), 1))
        self.ml_flush = float(o["multiline_flush"]) or 4.0
        self.ml_limit = self.parsers.multiline_buffer_limit
        for name in ("files_opened", "files_closed", "files_rotated", "long_line_skipped",
                     "long_line_truncated", "multiline_truncated"):
            self.counters.setdefault(name, 0)
        # runtime state
        self.files: dict[tuple[int, int], TailFile] = {}
        self.by_path: dict[str, TailFile] = {}
        self.db: OffsetDB | None = None
        self.inotify: ino.Inotify | None = None
        self.wds: dict[int, TailFile] = {}
        self.dir_wds: set[int] = set()
        self.rotation_due: set[TailFile] = set()
        self.commit_due: set[TailFile] = set()
        self.orphans: set[TailFile] = set()  # released with batches still in flight
        self.tag_failed: set[str] = set()
        self.open_failed: set[tuple[int, int]] = set()
        self.open_count = 0
        self.rescan_due = False
        self.stopped = False
        self.wake = asyncio.Event()
        self.ml_seen: dict[int, int] = {}
        self.warned_fds = False
        self.last_commit = 0.0

    def _parser(self, name: str | None, option: str) -> Any:
        if not name:
            return None
        parser = self.parsers.get(name)
        if parser is None:
            raise ValueError(f"{option}: parser '{name}' is not registered")
        return parser

    # -- public state -----------------------------------------------------------------------------
    def bytes_behind(self) -> dict[str, int]:
        """Bytes of each followed file not read yet (size at the last check - read position)."""
        return {f.path if not f.rotated else f.name_now: max(0, f.size - f.read_pos)
                for f in self.files.values()}

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self, ctx: InputContext) -> None:
        global _FROZEN
        if not _FROZEN:
            # Startup objects (modules, configuration) live as long as the process: move them
            # out of the collector's generations once, so that the full collections the
            # record churn triggers stop re-scanning them (~15% of the CPU when catching up).
            _FROZEN = True
            gc.collect()
            gc.freeze()
        o = self.opts
        if o["db"]:
            self.db = OffsetDB(o["db"], self.instance, self.log, o["db.sync"],
                               bool(o["db.locking"]), o["db.journal_mode"],
                               bool(o["db.compare_filename"]))
        loop = asyncio.get_running_loop()
        if o["inotify_watcher"] and ino.available():
            try:
                self.inotify = ino.Inotify()
                loop.add_reader(self.inotify.fileno(), self._on_inotify)
                for d in self.scanner.watch_dirs():
                    with contextlib.suppress(OSError):
                        self.dir_wds.add(self.inotify.add(d, ino.DIR_MASK))
            except OSError as exc:
                self.log.warning("inotify unavailable (%s), polling with stat", exc)
                self.inotify = None
        found = self.scanner.scan()
        for item in found:
            self._add(item, static=True)
        if self.db is not None:
            self._resume_rotated()
            purged = self._db("purge stale entries", self.db.purge_stale,
                              [f.ino for f in self.files.values()])
            if purged:
                self.log.info("db: %d stale file entries deleted", purged)
        self.log.debug("%d files found at start", len(self.files))
        try:
            await self._main(ctx)
        finally:
            if self.inotify is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self.inotify.fileno())

    async def stop(self) -> None:
        """Close the files; the DB stays open so acks arriving while the engine drains
        still commit (each then at once)."""
        self.stopped = True
        self._commit()
        for f in list(self.files.values()):
            f.close()
        self.open_count = 0
        if self.inotify is not None:
            self.inotify.close()
            self.inotify = None
        # With DB.locking a successor (hot reload) could not open the DB: close it now (late
        # acks then only cost duplicates after a restart).
        if self.opts["db.locking"] or not self._in_flight():
            self._close_db()

    def _in_flight(self) -> bool:
        return any(f.pending for f in self.files.values()) or \
            any(f.pending for f in self.orphans)

    def _close_db(self) -> None:
        if self.db is not None:
            self._commit()
            self.db.close()
            self.db = None

    def on_ack(self, token: Any, complete: bool) -> None:
        if not isinstance(token, Ack):
            return
        f = token.file
        if f.acknowledge(token):
            self.commit_due.add(f)
            # Normally the main loop commits every tick; it may be blocked in a paused emit.
            now = time.monotonic()
            if self.stopped or now - self.last_commit >= _TICK:
                self._commit()
        if f.released and not f.pending:
            self._forget_row(f)
        if self.stopped and self.db is not None and not self._in_flight():
            self._close_db()

    # -- main loop ----------------------------------------------------------------------------
    async def _main(self, ctx: InputContext) -> None:
        clock = time.monotonic
        next_tick = 0.0
        next_watch = clock() + self.watch_interval
        next_scan = clock() + self.refresh
        poll = _TICK if self.inotify is None else self.watch_interval
        next_poll = 0.0
        last_scan = clock()
        exit_requested = False
        while True:
            self.wake.clear()  # events from now on wake the wait below
            progressed = await self._read_round(ctx)
            now = clock()
            # Directory events ask for a scan; at most ten scans a second however busy.
            if (self.rescan_due and now - last_scan >= 0.1) or now >= next_scan:
                self.rescan_due = False
                next_scan = now + self.refresh
                last_scan = now
                self._rescan()
            if self.rotation_due or now >= next_watch:
                due = self.rotation_due if now < next_watch else set(self.files.values())
                self.rotation_due = set()
                if now >= next_watch:
                    next_watch = now + self.watch_interval
                for f in list(due):
                    if not f.released:
                        self._check_rotation(f)
            if now >= next_poll:
                next_poll = now + poll
                self._poll()
            if now >= next_tick:
                next_tick = now + _TICK
                await self._flush_expired(ctx, now)
                await self._release_done(ctx, now)
                self._limit_fds(warn=True)
                self._commit()
            if self.exit_on_eof and not exit_requested and self._static_done():
                await self._flush_all(ctx)
                if not any(f.pending for f in self.files.values()) and not any(
                        f.pending for f in self.orphans):
                    self._commit()
                    exit_requested = True
                    ctx.request_exit()
            if not progressed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), _TICK)

    def _static_done(self) -> bool:
        return all(not (f.static and not f.at_eof) for f in self.files.values())

    async def _read_round(self, ctx: InputContext) -> bool:
        progressed = False
        since_yield = 0
        for f in list(self.files.values()):
            if f.at_eof or f.released:
                continue
            if f.fd is None and not self._reopen(f):
                continue
            n = await self._read_file(ctx, f)
            if self.open_count > self.max_open and f.at_eof and f.fd is not None \
                    and not (f.rotated or f.deleted):
                f.close()  # over max_open_files: an idle file gives its descriptor back
                self.open_count -= 1
            if n:
                progressed = True
                since_yield += n
                if since_yield >= _YIELD_BYTES:
                    since_yield = 0
                    await asyncio.sleep(0)
        return progressed

    async def _read_file(self, ctx: InputContext, f: TailFile) -> int:
        total = 0
        # Catching up (never at EOF yet): Static_Batch_Size; following: Event_Batch_Size.
        budget = self.event_budget if f.eof_at else self.batch_budget
        read_size = self.read_size
        pread = os.pread
        emit = ctx.emit
        while total < budget:
            fd = f.fd
            if fd is None:
                break
            try:
                data = pread(fd, read_size, f.read_pos)
            except OSError as exc:
                self.log.error("cannot read %s: %s", f.path, exc)
                f.at_eof = True
                break
            if not data:
                f.at_eof = True
                f.eof_at = time.monotonic()
                try:
                    size = os.fstat(fd).st_size
                except OSError:
                    size = f.read_pos
                f.size = size
                if size < f.read_pos:
                    self._truncated(f, size)
                    continue
                break
            n = len(data)
            total += n
            if self.fadvise:
                with contextlib.suppress(OSError):
                    os.posix_fadvise(fd, f.read_pos, n, os.POSIX_FADV_DONTNEED)
            batch = self._consume(f, data)
            if batch is not None:
                await emit(batch)
            if n < read_size:
                # Short read: at EOF now; the next round confirms with an empty read.
                if f.read_pos > f.size:
                    f.size = f.read_pos
                break
        f.last_used = time.monotonic()
        return total

    # -- bytes -> batch -------------------------------------------------------------------------
    def _consume(self, f: TailFile, data: bytes) -> Batch | None:
        start = f.read_pos - len(f.buf)
        f.read_pos += len(data)
        if f.skipping:
            i = data.find(b"\n")
            if i < 0:
                return None
            data = data[i + 1:]
            f.skipping = False
            start = f.read_pos - len(data)
            buf = data
        else:
            buf = f.buf + data if f.buf else data
        if buf[:1] == b"\x00" and f.utf16 is None:
            stripped = buf.lstrip(b"\x00")
            start += len(buf) - len(stripped)
            buf = stripped
        cr: bool | None = None
        if f.utf16 is not None:
            consumed, lines = tf.split_utf16(buf, f.utf16)
            if not consumed:
                f.buf = buf
                return self._long_leftover(f, start)
            long = consumed > self.max_line and max(map(len, lines)) >= self.max_line
        else:
            nl = buf.rfind(b"\n")
            if nl < 0:
                f.buf = buf
                return self._long_leftover(f, start)
            consumed = nl + 1
            long = tf.has_long_line(buf, nl, self.max_line)
            lines = buf[:nl].split(b"\n")
            cr = buf.find(b"\r", 0, nl) >= 0
            if self.codec is not None:
                lines = [line.decode(self.codec, "replace").encode() for line in lines]
        rest = buf[consumed:]
        end = start + consumed
        if long:
            lines = self._long_lines(f, lines)
        times, bodies = self._records(f, lines, start, cr)
        extra: Batch | None = None
        f.buf = rest
        if len(rest) >= self.max_line:
            extra = self._long_leftover(f, end)
            if extra is not None:
                times.extend(extra.times)
                bodies.extend(extra.bodies)
        safe = end
        if f.hold is not None and f.hold < safe:
            safe = f.hold
        if bodies:
            return Batch(f.tag, times, bodies, consumed, f.new_ack(safe))
        f.advance(safe)
        return None

    def _long_lines(self, f: TailFile, lines: list[bytes]) -> list[bytes]:
        limit = self.max_line
        out: list[bytes] = []
        for line in lines:
            if len(line) < limit:
                out.append(line)
            elif self.truncate_long:
                self.counters["long_line_truncated"] += 1
                self._warn_long(f, "truncated")
                out.append(tf.cut_utf8(line, limit - 1))
            else:
                self.counters["long_line_skipped"] += 1
                self._warn_long(f, "skipped")
        return out

    def _long_leftover(self, f: TailFile, start: int) -> Batch | None:
        """The partial line filled the buffer: skip (or truncate) it, never drop the file."""
        if len(f.buf) < self.max_line:
            return None
        line = f.buf
        f.buf = b""
        f.skipping = True
        if not self.truncate_long:
            self.counters["long_line_skipped"] += 1
            self._warn_long(f, "skipped")
            return None
        self.counters["long_line_truncated"] += 1
        self._warn_long(f, "truncated")
        times, bodies = self._records(f, [tf.cut_utf8(line, self.max_line - 1)], start)
        if not bodies:
            return None
        return Batch(f.tag, times, bodies, len(line), f.new_ack(start))

    def _warn_long(self, f: TailFile, what: str) -> None:
        if not f.warned_long:
            f.warned_long = True
            self.log.warning("file=%s have long lines (over Buffer_Max_Size %d bytes): %s "
                             "(counted as long_line_%s)", f.path, self.max_line, what, what)

    def _records(self, f: TailFile, lines: list[bytes], start: int,
                 cr: bool | None = None) -> tuple[list[int], list[Body]]:
        """Records of complete lines; ``cr``: whether any line may end with ``\\r``."""
        if not lines:
            return [], []
        offsets: list[int] | None = None
        if self.offset_key is not None:
            offsets = []
            pos = start
            for line in lines:
                offsets.append(pos)
                pos += len(line) + 1
        if cr is None:
            cr = any(line[-1:] == b"\r" for line in lines)
        if cr:
            lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
        if self.skip_empty:
            if offsets is not None:
                offsets = [o for o, line in zip(offsets, lines, strict=True) if line]
            lines = [line for line in lines if line]
            if not lines:
                return [], []
        times: list[int] = []
        bodies: list[Body] = []
        now_ns = time.time_ns()
        mode = self.mode
        if mode == _RAW:
            tf.raw_lines(lines, self.key, now_ns, times, bodies)
        elif mode == _JSON:
            tf.json_lines(lines, self.json_fast, self.key, now_ns,  # type: ignore[arg-type]
                          orjson.loads, times, bodies)
        elif mode == _PARSER:
            tf.parse_lines(lines, self.parser.parse, self.key, now_ns, times, bodies)
        elif mode in (_DOCKER_FAST, _DOCKER):
            dm = f.docker
            if dm is None:
                dm = f.docker = DockerMode(self.dm_parser, self.dm_flush, self.key)
            dm.restarted = False
            if mode == _DOCKER_FAST:
                tf.docker_json(lines, self.json_fast, f,  # type: ignore[arg-type]
                               time.monotonic(), now_ns, self._normal, orjson.loads, times,
                               bodies)
            else:
                tf.docker_slow(lines, f, time.monotonic(), now_ns, self._normal,
                               orjson.loads, times, bodies)
            self._hold(f, dm.pending, dm.restarted, bool(bodies), start)
        elif mode == _ML:
            group = self._group(f)
            texts = [tf.text_of(line) for line in lines]
            had = group.pending
            ts, recs = group.feed_many([now_ns] * len(texts), texts)
            times.extend(ts)
            bodies.extend(recs)
            self._count_ml(f, group)
            self._hold(f, group.pending, not had or bool(recs), bool(recs), start)
        else:
            lm = f.legacy
            if lm is None:
                lm = f.legacy = LegacyMultiline(self.firstline, self.parsers_n, self.key,
                                                self.ml_flush, self.ignore_older_ns)
            lm.restarted = False
            mono = time.monotonic()
            for line in lines:
                lm.feed(tf.text_of(line), mono, now_ns, times, bodies)
            self._hold(f, lm.pending, lm.restarted, bool(bodies), start)
        return self._decorate(f, times, bodies, offsets if mode in (_RAW, _PARSER, _JSON) else None,
                              start)

    def _normal(self, line: bytes) -> tuple[int | None, Body]:
        """Ordinary processing of one line: the parser, else the raw text under Key."""
        if self.parser is not None:
            r = self.parser.parse(line)
            if r is not None:
                return r[1], r[0]
        return None, {self.key: tf.text_of(line)}

    @staticmethod
    def _hold(f: TailFile, pending: bool, restarted: bool, emitted: bool, start: int) -> None:
        """Keep the committed offset at or before the start of a message still buffered."""
        if not pending:
            f.hold = None
        elif restarted or f.hold is None:
            f.hold = start

    def _decorate(self, f: TailFile, times: list[int], bodies: list[Body],
                  offsets: list[int] | None, start: int) -> tuple[list[int], list[Body]]:
        if self.ignore_older_ns and bodies:
            cutoff = time.time_ns() - self.ignore_older_ns
            keep = [i for i, t in enumerate(times) if t >= cutoff]
            if len(keep) != len(times):
                times = [times[i] for i in keep]
                bodies = [bodies[i] for i in keep]
                if offsets is not None:
                    offsets = [offsets[i] for i in keep]
        pk, ok = self.path_key, self.offset_key
        if (pk is None and ok is None) or not bodies:
            return times, bodies
        path = f.path
        out: list[Body] = []
        for i, body in enumerate(bodies):
            rec: dict[str, Any] = {}
            if pk is not None:
                rec[pk] = path
            if ok is not None:
                rec[ok] = offsets[i] if offsets is not None else start
            rec.update(body if isinstance(body, dict) else orjson.loads(body))
            out.append(rec)
        return times, out

    def _group(self, f: TailFile) -> Any:
        if f.ml is None:
            from rillet.parsers.multiline import MultilineGroup
            f.ml = MultilineGroup(self.ml_parsers, self.ml_limit, self.key)
        return f.ml

    def _count_ml(self, f: TailFile, group: Any) -> None:
        seen = self.ml_seen.get(id(f), 0)
        now = int(getattr(group, "truncated", 0))
        if now > seen:
            self.counters["multiline_truncated"] += now - seen
            self.ml_seen[id(f)] = now

    # -- pending messages ---------------------------------------------------------------------
    async def _flush_expired(self, ctx: InputContext, now: float) -> None:
        for f in list(self.files.values()):
            times: list[int] = []
            bodies: list[Body] = []
            now_ns = time.time_ns()
            if f.docker is not None and f.docker.pending and f.docker.deadline <= now:
                f.docker.flush(self._normal, times, bodies, now_ns)
            elif f.legacy is not None and f.legacy.pending and f.legacy.deadline <= now:
                f.legacy.flush(times, bodies)
            elif f.ml is not None and f.ml.pending:
                deadline = f.ml.next_deadline()
                if deadline is not None and deadline <= now:
                    self._extend(f.ml.flush_expired(now), times, bodies)
                    self._count_ml(f, f.ml)
            if bodies or (f.hold is not None and not self._pending_state(f)):
                await self._emit_held(ctx, f, times, bodies)

    async def _flush_all(self, ctx: InputContext) -> None:
        for f in list(self.files.values()):
            await self._flush_file(ctx, f)

    async def _flush_file(self, ctx: InputContext, f: TailFile) -> None:
        times: list[int] = []
        bodies: list[Body] = []
        if f.docker is not None and f.docker.pending:
            f.docker.flush(self._normal, times, bodies, time.time_ns())
        if f.legacy is not None and f.legacy.pending:
            f.legacy.flush(times, bodies)
        if f.ml is not None and f.ml.pending:
            self._extend(f.ml.flush_all(), times, bodies)
            self._count_ml(f, f.ml)
        if bodies or f.hold is not None:
            await self._emit_held(ctx, f, times, bodies)

    @staticmethod
    def _extend(out: Any, times: list[int], bodies: list[Body]) -> None:
        """Records from a MultilineGroup flush: (times, records) or [(time, record), ...]."""
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], list):
            times.extend(out[0])
            bodies.extend(out[1])
            return
        for t, rec in out:
            times.append(t)
            bodies.append(rec)

    def _pending_state(self, f: TailFile) -> bool:
        return bool((f.docker is not None and f.docker.pending)
                    or (f.legacy is not None and f.legacy.pending)
                    or (f.ml is not None and f.ml.pending))

    async def _emit_held(self, ctx: InputContext, f: TailFile, times: list[int],
                         bodies: list[Body]) -> None:
        """Emit flushed messages; the committed offset may then pass them."""
        start = f.hold if f.hold is not None else f.read_pos - len(f.buf)
        if not self._pending_state(f):
            f.hold = None
        safe = f.read_pos - len(f.buf)
        if f.hold is not None:
            safe = min(safe, f.hold)
        times, bodies = self._decorate(f, times, bodies, None, start)
        if bodies:
            size = sum(len(b) if isinstance(b, bytes) else 64 for b in bodies)
            await ctx.emit(Batch(f.tag, times, bodies, size, f.new_ack(safe)))
        else:
            f.advance(safe)

    # -- discovery --------------------------------------------------------------------------------
    def _rescan(self) -> None:
        for item in self.scanner.scan():
            key = (item.dev, item.ino)
            if key in self.files:
                continue
            current = self.by_path.get(item.path)
            if current is not None:
                self._check_rotation(current)
                if (item.dev, item.ino) in self.files:
                    continue
            self._add(item, static=False)

    def _compose_tag(self, path: str) -> str | None:
        if self.tag_regex is not None:
            tag = self.tag_regex.compose(path)
            if tag is None and path not in self.tag_failed:
                self.tag_failed.add(path)
                self.log.error("invalid tag_regex pattern for file %s: not tailed", path)
            return tag
        return expand_star(self.tag, path)

    def _add(self, item: Found, static: bool) -> TailFile | None:
        if self.ignore_older_ns and item.mtime * _NS < time.time_ns() - self.ignore_older_ns:
            return None
        tag = self._compose_tag(item.path)
        if tag is None:
            return None
        try:
            fd = os.open(item.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if (item.dev, item.ino) not in self.open_failed:  # once per file, not every scan
                self.open_failed.add((item.dev, item.ino))
                self.log.error("cannot open %s: %s", item.path, exc)
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (item.dev, item.ino):
            # Replaced between the scan and the open: take what is there now.
            item = Found(item.path, st.st_dev, st.st_ino, st.st_size, st.st_mtime)
            if (st.st_dev, st.st_ino) in self.files:
                os.close(fd)
                return None
        from_head = self.opts["read_from_head"] if static else \
            self.opts["read_newly_discovered_files_from_head"]
        offset = 0 if from_head else st.st_size
        db_id = 0
        if self.db is not None:
            row = self._db("look up " + item.path, self.db.lookup, st.st_ino, item.path)
            if row is not None:
                db_id, offset = row
                if offset > st.st_size:
                    self.log.info("%s: stored offset %d is past the end (%d): file was "
                                  "truncated, reading from the start", item.path, offset,
                                  st.st_size)
                    offset = 0
            else:
                db_id = self._db("insert " + item.path, self.db.insert, item.path, offset,
                                 st.st_ino) or 0
        f = TailFile(item.path, tag, st.st_dev, st.st_ino, offset, static)
        f.db_id = db_id
        f.size = st.st_size
        f.fd = fd
        self.open_count += 1
        f.last_used = time.monotonic()
        self._detect_unicode(f)
        self.files[(f.dev, f.ino)] = f
        self.by_path[f.path] = f
        self.counters["files_opened"] += 1
        if self.inotify is not None:
            try:
                f.wd = self.inotify.add(f.path, ino.FILE_MASK)
                self.wds[f.wd] = f
            except OSError as exc:
                self.log.debug("inotify watch %s: %s", f.path, exc)
        self.log.debug("inode=%d %s: following from offset %d (tag %s)", f.ino, f.path,
                       offset, tag)
        if self.open_count > self.max_open:
            # Known now, opened again when its turn to be read comes.
            f.close()
            self.open_count -= 1
        self.wake.set()
        return f

    def _detect_unicode(self, f: TailFile) -> None:
        enc = (self.unicode or "").replace("-", "").replace("_", "")
        if enc in ("", "utf8"):
            if enc == "utf8" and f.read_pos == 0:
                self._skip_bom(f, b"\xef\xbb\xbf")
            return
        if enc == "utf16le":
            f.utf16 = "utf-16-le"
            self._skip_bom(f, b"\xff\xfe")
        elif enc == "utf16be":
            f.utf16 = "utf-16-be"
            self._skip_bom(f, b"\xfe\xff")
        elif f.fd is not None:  # auto
            try:
                head = os.pread(f.fd, 3, 0)
            except OSError:
                return
            if head[:2] == b"\xff\xfe":
                f.utf16 = "utf-16-le"
            elif head[:2] == b"\xfe\xff":
                f.utf16 = "utf-16-be"
            elif head == b"\xef\xbb\xbf":
                self._skip_bom(f, head)
            if f.utf16 is not None:
                self._skip_bom(f, head[:2])

    @staticmethod
    def _skip_bom(f: TailFile, bom: bytes) -> None:
        if f.read_pos != 0 or f.fd is None:
            return
        with contextlib.suppress(OSError):
            if os.pread(f.fd, len(bom), 0) == bom:
                f.read_pos = f.acked = len(bom)

    def _resume_rotated(self) -> None:
        """Rotated files whose last lines were not delivered before the agent stopped (their
        row says rotated=1 and the file at that name still has bytes past the offset): read
        them to their end again, under the tag of the followed path they were rotated from
        (the path whose real name starts their name: app.log -> app.log.1, a kubelet link's
        0.log -> 0.log.20240501-...). Without such a path they are purged as Fluent Bit does."""
        assert self.db is not None
        rows = self._db("list rotated files", self.db.rotated_rows) or []
        followed = [(os.path.realpath(f.path), f) for f in self.files.values()]
        for rid, name, offset, inode in rows:
            try:
                st = os.stat(name)
            except OSError:
                continue
            if st.st_ino != inode or st.st_size <= offset or (st.st_dev, st.st_ino) in self.files:
                continue
            origin = next((f for real, f in followed if name.startswith(real)), None)
            if origin is None:
                continue
            try:
                fd = os.open(name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            f = TailFile(origin.path, origin.tag, st.st_dev, st.st_ino, offset, True)
            f.fd, f.db_id, f.size, f.name_now = fd, rid, st.st_size, name
            f.rotated, f.rotated_at, f.last_used = True, time.monotonic(), time.monotonic()
            self.open_count += 1
            self.files[(f.dev, f.ino)] = f
            self.counters["files_opened"] += 1
            self.log.info("inode=%d %s: rotated file with %d bytes not delivered before the "
                          "last stop, reading them", f.ino, name, st.st_size - offset)

    # -- descriptors --------------------------------------------------------------------------
    def _limit_fds(self, warn: bool = False) -> None:
        if self.open_count <= self.max_open:
            return
        idle = sorted((f for f in self.files.values()
                       if f.fd is not None and f.at_eof and not f.rotated and not f.deleted),
                      key=lambda f: f.last_used)
        for f in idle:
            if self.open_count <= self.max_open:
                return
            f.close()
            self.open_count -= 1
        if warn and self.open_count > self.max_open and not self.warned_fds:
            self.warned_fds = True
            self.log.warning("%d files are open (max_open_files %d): none is idle at EOF",
                             self.open_count, self.max_open)

    def _reopen(self, f: TailFile) -> bool:
        try:
            fd = os.open(f.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            self._find_moved(f)
            return f.fd is not None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (f.dev, f.ino):
            os.close(fd)
            self._find_moved(f)
            return f.fd is not None
        f.fd = fd
        f.size = st.st_size
        self.open_count += 1
        f.last_used = time.monotonic()
        return True

    def _find_moved(self, f: TailFile) -> None:
        """A closed file is no longer at its path: look for its inode in the same directory
        (rotation by rename), so what was written before the rename is still read."""
        d = os.path.dirname(f.path) or "."
        with contextlib.suppress(OSError), os.scandir(d) as it:
            for entry in it:
                try:
                    if entry.inode() == f.ino and entry.stat(follow_symlinks=False).st_dev \
                            == f.dev:
                        fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                        f.fd = fd
                        self.open_count += 1
                        self._mark_rotated(f, entry.path, None)
                        return
                except OSError:
                    continue
        # Gone: nothing more can be read from it.
        self.log.info("inode=%d %s is gone", f.ino, f.path)
        f.deleted = True
        f.at_eof = True
        if self.by_path.get(f.path) is f:
            del self.by_path[f.path]

    # -- change detection ---------------------------------------------------------------------
    def _on_inotify(self) -> None:
        if self.inotify is None:
            return
        try:
            events = self.inotify.read()
        except OSError as exc:
            self.log.error("inotify: %s", exc)
            return
        for wd, mask, _name in events:
            if mask & ino.IN_Q_OVERFLOW:
                self.rescan_due = True
                for f in self.files.values():
                    f.at_eof = False
                    self.rotation_due.add(f)
                continue
            if wd in self.dir_wds:
                self.rescan_due = True
                continue
            g = self.wds.get(wd)
            if g is None:
                continue
            f = g
            if mask & ino.IN_IGNORED:
                self.wds.pop(wd, None)
                f.wd = -1
                continue
            if mask & (ino.IN_MODIFY | ino.IN_CLOSE_WRITE):
                f.at_eof = False
            if mask & (ino.IN_MOVE_SELF | ino.IN_DELETE_SELF | ino.IN_ATTRIB):
                self.rotation_due.add(f)
                f.at_eof = False
        self.wake.set()

    def _poll(self) -> None:
        """stat(2) every followed file: growth, truncation, reopening closed files."""
        for f in list(self.files.values()):
            if f.released:
                continue
            if f.fd is None:
                try:
                    st = os.stat(f.path)
                except OSError:
                    self._reopen(f)
                    continue
                changed = (st.st_dev, st.st_ino) != (f.dev, f.ino) or st.st_size != f.read_pos
                if changed and self._reopen(f):
                    f.at_eof = False
                continue
            try:
                st = os.fstat(f.fd)
            except OSError:
                continue
            f.size = st.st_size
            if st.st_size < f.read_pos:
                self._truncated(f, st.st_size)
            elif st.st_size > f.read_pos:
                f.at_eof = False
            if st.st_nlink == 0 and not f.deleted:
                self.rotation_due.add(f)

    def _truncated(self, f: TailFile, size: int) -> None:
        self.log.info("inode=%d %s: file truncated (size %d < offset %d), reading from the "
                      "start", f.ino, f.path, size, f.read_pos)
        f.reset(0)
        if f.db_id:
            self.commit_due.add(f)
        f.at_eof = False

    def _check_rotation(self, f: TailFile) -> None:
        if f.rotated or f.deleted or f.released:
            if f.fd is not None and not f.deleted:
                with contextlib.suppress(OSError):
                    if os.fstat(f.fd).st_nlink == 0:
                        f.deleted = True
            return
        try:
            st: os.stat_result | None = os.stat(f.path)
        except OSError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == (f.dev, f.ino):
            if f.fd is not None and st.st_size < f.read_pos:
                self._truncated(f, st.st_size)
            return
        if f.fd is None:
            self._find_moved(f)
        else:
            try:
                fst = os.fstat(f.fd)
            except OSError:
                return
            if fst.st_nlink == 0:
                self.log.debug("inode=%d %s deleted", f.ino, f.path)
                f.deleted = True
            else:
                name = f.path
                with contextlib.suppress(OSError):
                    name = os.readlink(f"/proc/self/fd/{f.fd}")
                self._mark_rotated(f, name, st)
        if self.by_path.get(f.path) is f:
            del self.by_path[f.path]
        f.at_eof = False
        if st is not None and (st.st_dev, st.st_ino) not in self.files:
            import stat as _stat
            if _stat.S_ISREG(st.st_mode):
                self._add(Found(f.path, st.st_dev, st.st_ino, st.st_size, st.st_mtime),
                          static=False)

    def _mark_rotated(self, f: TailFile, name: str, st: os.stat_result | None) -> None:
        f.rotated = True
        f.name_now = name
        f.rotated_at = time.monotonic()
        self.counters["files_rotated"] += 1
        self.log.info("inode=%d handle rotation(): %s => %s", f.ino, f.path, name)
        if self.db is not None and f.db_id:
            self._db("rotate " + name, self.db.rotate, f.db_id, name)

    async def _release_done(self, ctx: InputContext, now: float) -> None:
        for f in list(self.files.values()):
            if not (f.rotated or f.deleted) or not f.at_eof:
                continue
            if f.rotated and not f.deleted and now - f.eof_at < self.rotate_wait:
                continue
            if f.fd is not None:
                # One last look: anything written since the last read is still read first.
                try:
                    size = os.fstat(f.fd).st_size
                except OSError:
                    size = f.read_pos
                if size > f.read_pos:
                    f.at_eof = False
                    continue
            await self._release(ctx, f)

    async def _release(self, ctx: InputContext, f: TailFile) -> None:
        await self._flush_file(ctx, f)
        if f.buf and not f.skipping:
            # The last line of a file that will not grow any more.
            line, f.buf = f.buf, b""
            start = f.read_pos - len(line)
            times, bodies = self._records(f, [line], start)
            if bodies:
                await ctx.emit(Batch(f.tag, times, bodies, len(line), f.new_ack(f.read_pos)))
            else:
                f.advance(f.read_pos)
        if f.fd is not None:
            f.close()
            self.open_count -= 1
        if f.wd >= 0 and self.inotify is not None:
            self.wds.pop(f.wd, None)
            with contextlib.suppress(OSError):
                self.inotify.remove(f.wd)
            f.wd = -1
        f.released = True
        self.files.pop((f.dev, f.ino), None)
        if self.by_path.get(f.path) is f:
            del self.by_path[f.path]
        self.ml_seen.pop(id(f), None)
        self.counters["files_closed"] += 1
        self.log.debug("inode=%d %s released (%s)", f.ino, f.name_now,
                       "deleted" if f.deleted else "rotated")
        if f.pending:
            self.orphans.add(f)
        else:
            self._forget_row(f)

    def _forget_row(self, f: TailFile) -> None:
        self.orphans.discard(f)
        self.commit_due.discard(f)
        if self.db is not None and f.db_id:
            try:
                self.db.delete(f.db_id)
            except Exception as exc:  # sqlite3.Error; keep running
                self.log.error("db: cannot delete entry of %s: %s", f.name_now, exc)
            f.db_id = 0

    # -- offsets DB ---------------------------------------------------------------------------
    def _db(self, what: str, fn: Any, *args: Any) -> Any:
        """A DB call; an SQLite error (disk full, corruption) is logged, never fatal."""
        try:
            return fn(*args)
        except Exception as exc:  # sqlite3.Error and OSError
            self.log.error("db: cannot %s: %s", what, exc)
            return None

    def _commit(self) -> None:
        self.last_commit = time.monotonic()
        due = self.commit_due
        if not due:
            return
        self.commit_due = set()
        if self.db is None:
            return
        pairs = [(f.db_id, f.acked) for f in due if f.db_id and f.acked != f.committed]
        if not pairs:
            return
        try:
            self.db.commit(pairs)
        except Exception as exc:  # sqlite3.Error: retried on the next commit
            self.log.error("db: cannot store offsets: %s", exc)
            self.commit_due |= due
            return
        for f in due:
            f.committed = f.acked
