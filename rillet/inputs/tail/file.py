"""One tailed file: its descriptor, read position, partial line, acknowledgement window, and
the per-read hot path that turns bytes into a batch.

Offsets: ``read_pos`` is the next byte to read; ``buf`` holds the partial last line
(``read_pos - len(buf)`` is where it starts). Every emitted batch carries an :class:`Ack` with
the offset below which every byte is accounted for once the batch is delivered; acks may
arrive out of order, so ``pending`` keeps them in emission order and ``acked`` advances only
over a prefix of done ones. The offsets DB stores ``acked``, never more.
"""

from __future__ import annotations

import codecs
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from rillet.engine.chunk import Body

_NEWLINE = b"\n"


class Ack:
    """Token of one batch: done once every output finished with it."""

    __slots__ = ("done", "end", "file", "gen")

    def __init__(self, file: TailFile, gen: int, end: int, done: bool = False) -> None:
        self.file = file
        self.gen = gen
        self.end = end
        self.done = done


class TailFile:
    __slots__ = (
        "acked",
        "at_eof",
        "buf",
        "committed",
        "db_id",
        "deleted",
        "dev",
        "docker",
        "eof_at",
        "fd",
        "gen",
        "hold",
        "ino",
        "last_used",
        "legacy",
        "ml",
        "name_now",
        "path",
        "pending",
        "read_pos",
        "released",
        "rotated",
        "rotated_at",
        "size",
        "skipping",
        "static",
        "tag",
        "utf16",
        "warned_long",
        "wd",
    )

    def __init__(self, path: str, tag: str, dev: int, ino: int, offset: int,
                 static: bool) -> None:
        self.path = path
        self.tag = tag
        self.dev = dev
        self.ino = ino
        self.fd: int | None = None
        self.read_pos = offset
        self.buf = b""
        self.skipping = False
        self.db_id = 0
        self.acked = offset
        self.committed = offset
        self.pending: deque[Ack] = deque()
        self.gen = 0
        self.static = static
        self.at_eof = False
        self.size = 0
        self.rotated = False
        self.deleted = False
        self.rotated_at = 0.0
        self.eof_at = 0.0
        self.released = False
        self.docker: Any = None
        self.ml: Any = None
        self.legacy: Any = None
        self.hold: int | None = None  # start of a message still buffered (docker/multiline)
        self.warned_long = False
        self.wd = -1
        self.last_used = 0.0
        self.utf16: str | None = None
        self.name_now = path  # where the file is now (its rotated name after a rename)

    # -- acknowledgements -----------------------------------------------------------------------
    def new_ack(self, end: int) -> Ack:
        ack = Ack(self, self.gen, end)
        self.pending.append(ack)
        return ack

    def advance(self, end: int) -> None:
        """Bytes up to ``end`` produced no record still in flight."""
        if self.pending:
            self.pending.append(Ack(self, self.gen, end, True))
        elif end > self.acked:
            self.acked = end

    def acknowledge(self, ack: Ack) -> bool:
        """Mark ``ack`` done; True when ``acked`` moved."""
        ack.done = True
        if ack.gen != self.gen:
            return False
        q = self.pending
        moved = False
        while q and q[0].done:
            end = q.popleft().end
            if end > self.acked:
                self.acked = end
                moved = True
        return moved

    def reset(self, offset: int) -> None:
        """Start over at ``offset`` (truncation): batches in flight no longer move offsets."""
        self.gen += 1
        self.pending.clear()
        self.read_pos = offset
        self.acked = offset
        self.buf = b""
        self.skipping = False
        self.hold = None

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


# --- text helpers -------------------------------------------------------------------------

def text_of(data: bytes) -> str:
    """UTF-8 text of a line; invalid bytes become U+FFFD (never raises)."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")


GENERIC_ENCODINGS = {
    "shiftjis": "cp932", "sjis": "cp932", "uhc": "cp949", "gbk": "gbk", "gb18030": "gb18030",
    "big5": "cp950", "win866": "cp866", "win874": "cp874", "win1250": "cp1250",
    "win1251": "cp1251", "win1252": "cp1252", "win1253": "cp1253", "win1254": "cp1254",
    "win1255": "cp1255", "win1256": "cp1256",
}
UNICODE_ENCODINGS = ("auto", "utf-8", "utf8", "utf-16le", "utf-16be", "utf16le", "utf16be")


def generic_codec(name: str) -> str:
    """The Python codec for a ``generic.encoding`` name; ValueError when unknown."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    codec = GENERIC_ENCODINGS.get(key)
    if codec is None:
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            raise ValueError(f"generic.encoding: unknown encoding '{name}' (one of: "
                             f"{', '.join(sorted(GENERIC_ENCODINGS))})") from None
    return codec


def split_utf16(buf: bytes, codec: str) -> tuple[int, list[bytes]]:
    """Complete UTF-16 lines of ``buf``: (bytes consumed, lines as UTF-8)."""
    n = len(buf) & ~1
    text = buf[:n].decode(codec, "surrogatepass")
    idx = text.rfind("\n")
    if idx < 0:
        return 0, []
    consumed = len(text[:idx + 1].encode(codec, "surrogatepass"))
    return consumed, [s.encode("utf-8", "replace") for s in text[:idx].split("\n")]


def cut_utf8(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of ``data`` without splitting a UTF-8 sequence."""
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]


# --- the hot path ---------------------------------------------------------------------------

def parse_lines(lines: list[bytes], parse: Callable[[bytes], Any], key: str, now_ns: int,
                times: list[int], bodies: list[Body]) -> None:
    """``Parser``: each line parsed; no match -> the raw line under ``key``, ingestion time."""
    ta, ba = times.append, bodies.append
    for line in lines:
        r = parse(line)
        if r is None:
            ta(now_ns)
            ba({key: text_of(line)})
        else:
            ta(r[1] or now_ns)
            ba(r[0])


def raw_lines(lines: list[bytes], key: str, now_ns: int, times: list[int],
              bodies: list[Body]) -> None:
    """No parser: each line under ``key`` with the ingestion time."""
    try:
        texts = _NEWLINE.join(lines).decode().split("\n")
    except UnicodeDecodeError:
        texts = [text_of(line) for line in lines]
    times.extend([now_ns] * len(texts))
    bodies.extend([{key: t} for t in texts])


def docker_slow(lines: list[bytes], f: TailFile, now: float, now_ns: int,
                normal: Callable[[bytes], Any], loads: Callable[[bytes], Any],
                times: list[int], bodies: list[Body]) -> None:
    """Docker_Mode with a non-JSON parser or none: decode each line's envelope first."""
    feed = f.docker.feed
    for line in lines:
        try:
            obj = loads(line)
        except ValueError:
            obj = None
        feed(line, obj, now, normal, times, bodies, now_ns)


# --- JSON parsers: the record is the line's object ------------------------------------------

_POW = (1_000_000_000, 100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1_000, 100, 10, 1)
_PROBES = ("2019-12-19T17:41:12.70630778Z", "2024-02-29T23:59:59.000000001Z",
           "1999-01-01T00:00:00.5Z")


def _loads_or_none(loads: Callable[[bytes], Any], line: bytes) -> Any:
    try:
        return loads(line)
    except ValueError:
        return None


def has_long_line(buf: bytes, end: int, limit: int) -> bool:
    """Whether ``buf[:end]`` (lines separated by newlines) holds a line of ``limit`` bytes or
    more: the last newline of each ``limit``-byte window starting at a line start (one
    ``memrchr`` per window, not one step per line)."""
    p = 0
    while end - p >= limit:
        r = buf.rfind(b"\n", p, p + limit)
        if r < 0:
            return True
        p = r + 1
    return False


def decode_lines(lines: list[bytes], loads: Callable[[bytes], Any]) -> list[Any]:
    """Every line's JSON value, or None for a line that is not JSON: one list comprehension
    while every line decodes (measured faster than decoding the block as one array, whose
    line-to-object mapping must then be proven), line by line once one does not."""
    try:
        return [loads(line) for line in lines]
    except ValueError:
        return [_loads_or_none(loads, line) for line in lines]


class JsonFast:
    """A ``json`` parser without Types or decoders, decoded inline: one ``orjson.loads`` per
    line, and the Docker/CRI timestamp from a per-second cache. Used only when the parser's
    own time parsing gives the same result on probe timestamps (no Time_Offset / zone)."""

    __slots__ = ("cache", "keep", "parser", "time_key")

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.time_key: str | None = parser.time_key
        self.keep = bool(parser.time_keep)
        self.cache: dict[str, int] = {}

    @staticmethod
    def usable(parser: Any) -> bool:
        if parser is None or getattr(parser, "format", None) != "json":
            return False
        if getattr(parser, "types", None) or getattr(parser, "decoders", None):
            return False
        if getattr(parser, "time_key", None) is None:
            return True
        from rillet.parsers.timefmt import rfc3339_ns
        try:
            return all(parser.time_of(p) == rfc3339_ns(p) for p in _PROBES)
        except Exception:
            return False

    def slow_time(self, value: str) -> int | None:
        """The parser's own time parsing; also caches the epoch of ``value``'s second, keyed by
        ``YYYY-MM-DDTHH:MM:SS.`` (dot included), for :meth:`fast_time`'s callers."""
        ns: int | None = self.parser.time_of(value)
        if ns is not None and value[-1:] == "Z" and value[19:20] == ".":
            digits = value[20:-1]
            nd = len(digits)
            if 0 < nd < 10 and digits.isdigit() and digits.isascii():
                if len(self.cache) > 100_000:
                    self.cache.clear()
                self.cache[value[:20]] = ns - int(digits) * _POW[nd]
        return ns


# The hot loops below inline the fast path of a Docker/CRI time string ``v``:
#     cache[v[:20]] + int(d) * _POW[len(d)]   with d = v[20:-1], digits, and v ending in "Z"
# which raises whenever the slow path must decide (ValueError: not that shape; KeyError: that
# second is not cached yet; IndexError: empty text or more than 9 digits).
_FAST_MISS = (KeyError, TypeError, ValueError, IndexError)


def json_lines(lines: list[bytes], jf: JsonFast, key: str, now_ns: int,
               loads: Callable[[bytes], Any], times: list[int], bodies: list[Body]) -> None:
    """``Parser`` of format json (see :class:`JsonFast`)."""
    ta, ba = times.append, bodies.append
    tk, keep, cache, slow_time, parse = jf.time_key, jf.keep, jf.cache, jf.slow_time, \
        jf.parser.parse
    pow10 = _POW
    objs = decode_lines(lines, loads)
    for line, rec in zip(lines, objs, strict=True):
        if type(rec) is not dict:
            r = parse(line) if rec is None else None  # invalid UTF-8 is retried there
            if r is None:
                ta(now_ns)
                ba({key: text_of(line)})
            else:
                ta(r[1] or now_ns)
                ba(r[0])
            continue
        if tk is None:
            ta(now_ns)
            ba(rec)
            continue
        v = rec.get(tk)
        try:
            if type(v) is not str or v[-1] != "Z" or not (d := v[20:-1]).isdigit():
                raise ValueError
            ns: int | None = cache[v[:20]] + int(d) * pow10[len(d)]
        except _FAST_MISS:
            ns = slow_time(v) if type(v) is str else None
        if ns:
            if not keep:
                del rec[tk]
            ta(ns)
        else:
            ta(now_ns)
        ba(rec)


def docker_json(lines: list[bytes], jf: JsonFast, f: TailFile, now: float, now_ns: int,
                normal: Callable[[bytes], Any], loads: Callable[[bytes], Any],
                times: list[int], bodies: list[Body]) -> None:
    """Docker_Mode with a json ``Parser`` (see :class:`JsonFast`): a complete line with nothing
    buffered is decoded once; fragments go through :class:`DockerMode`."""
    dm = f.docker
    feed = dm.feed
    no_first = dm.first is None
    ta, ba = times.append, bodies.append
    tk, keep, cache, slow_time = jf.time_key, jf.keep, jf.cache, jf.slow_time
    pow10 = _POW
    last_key, last_sec = "", 0
    parts = dm.parts  # fragments pending (DockerMode.feed may replace the list)
    for line in lines:
        try:
            rec = loads(line)
        except ValueError:
            rec = None
        if parts or type(rec) is not dict:
            feed(line, rec, now, normal, times, bodies, now_ns)
            parts = dm.parts
            continue
        log = rec.get("log")
        if type(log) is str and (not no_first or log[-1:] != "\n"):
            feed(line, rec, now, normal, times, bodies, now_ns)
            parts = dm.parts
            continue
        if tk is None:
            ta(now_ns)
            ba(rec)
            continue
        v = rec.get(tk)
        try:
            if type(v) is not str or v[-1] != "Z" or not (d := v[20:-1]).isdigit():
                raise ValueError
            if (k := v[:20]) != last_key:  # lines of one second in a row: no hashing
                last_sec = cache[k]
                last_key = k
            ns: int | None = last_sec + int(d) * pow10[len(d)]
        except _FAST_MISS:
            ns = slow_time(v) if type(v) is str else None
        if ns:
            if not keep:
                del rec[tk]
            ta(ns)
        else:
            ta(now_ns)
        ba(rec)
