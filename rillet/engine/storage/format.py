"""The chunk file format.

A chunk file is a fixed 24-byte header, a JSON metadata object and the records::

    offset  size  field
    0       4     magic b"RLCK"
    4       1     format version (1)
    5       1     flags (bit 0: the CRC32 field is set)
    6       2     reserved (0)
    8       4     CRC32 of everything after the header (0 when the flag is clear)
    12      4     metadata length M
    16      4     payload length P
    20      4     record count N
    24      M     metadata: {"tag", "input", "routes" (outputs still owed), "seq", "created"}
    24+M    8N    record times (int64 nanoseconds, little-endian)
            4N    body lengths (uint32, little-endian)
            4N    (flag bit 1 only) CRC32 of each body, so a damaged file can be salvaged
            ...   bodies: each record's JSON object text, back to back

Records are stored column-wise so that encoding and decoding are a few C-level passes, and bodies
that are already JSON bytes are written as they are. A file whose size, lengths, count or CRC do
not agree is corrupt (:class:`CorruptChunk`).

With ``storage.checksum`` every body also gets its own CRC32 (flag bit 1). When the file's CRC
then fails, :func:`salvage` still recovers every record whose own CRC holds: a flipped bit costs
the record it hit, not the chunk.
"""

from __future__ import annotations

import struct
import sys
from array import array
from itertools import accumulate, pairwise
from typing import Any

import orjson

from rillet.engine.chunk import Body, bodies_json

try:  # isal's crc32 is several times faster than zlib's
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a runtime dependency
    from zlib import crc32

MAGIC = b"RLCK"
VERSION = 1
FLAG_CRC = 1
FLAG_RECORD_CRC = 2
HEADER = struct.Struct("<4sBBHIIII")
HEADER_SIZE = HEADER.size  # 24
SUFFIX = ".flb"

_LITTLE = sys.byteorder == "little"
assert array("q").itemsize == 8 and array("I").itemsize == 4


class CorruptChunk(ValueError):
    """A chunk file that cannot be trusted (the message says why)."""


def encode(meta: dict[str, Any], times: list[int], bodies: list[Body],
           checksum: bool) -> bytes:
    """The bytes of a chunk file holding ``times``/``bodies`` with ``meta``."""
    texts = bodies_json(bodies)
    t = array("q", times)
    lengths = array("I", map(len, texts))
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        t.byteswap()
        lengths.byteswap()
    meta_b = orjson.dumps(meta)
    parts = [meta_b, t.tobytes(), lengths.tobytes()]
    if checksum:
        crcs = array("I", map(crc32, texts))
        if not _LITTLE:  # pragma: no cover - big-endian hosts
            crcs.byteswap()
        parts.append(crcs.tobytes())
    parts.append(b"".join(texts))
    payload_len = sum(map(len, parts)) - len(meta_b)
    crc = 0
    if checksum:
        for part in parts:
            crc = crc32(part, crc)
    flags = FLAG_CRC | FLAG_RECORD_CRC if checksum else 0
    header = HEADER.pack(MAGIC, VERSION, flags, 0, crc, len(meta_b), payload_len, len(texts))
    return b"".join((header, *parts))


def read_header(head: bytes, file_size: int) -> tuple[dict[str, Any], int]:
    """Metadata and record count from the first bytes of a file (header + metadata), checking
    the structure that can be checked without the records (size, magic, version)."""
    if len(head) < HEADER_SIZE:
        raise CorruptChunk(f"truncated header ({file_size} bytes)")
    magic, version, _flags, _, _crc, meta_len, payload_len, count = HEADER.unpack_from(head)
    if magic != MAGIC:
        raise CorruptChunk("bad magic")
    if version != VERSION:
        raise CorruptChunk(f"unknown format version {version}")
    expected = HEADER_SIZE + meta_len + payload_len
    if file_size != expected:
        raise CorruptChunk(f"size {file_size} bytes, header says {expected} (truncated?)")
    if payload_len < 12 * count:
        raise CorruptChunk(f"payload of {payload_len} bytes cannot hold {count} records")
    meta_b = head[HEADER_SIZE:HEADER_SIZE + meta_len]
    if len(meta_b) != meta_len:
        raise CorruptChunk("truncated metadata")
    try:
        meta = orjson.loads(meta_b)
    except orjson.JSONDecodeError as exc:
        raise CorruptChunk(f"bad metadata: {exc}") from None
    if (not isinstance(meta, dict) or not isinstance(meta.get("tag"), str)
            or not isinstance(meta.get("routes"), list)
            or not all(isinstance(r, str) for r in meta["routes"])):
        raise CorruptChunk("metadata lacks tag or routes")
    return meta, count


def decode(data: bytes) -> tuple[dict[str, Any], list[int], list[Body]]:
    """Metadata, times and bodies of a whole chunk file (checks structure and CRC)."""
    meta, count = read_header(data, len(data))
    _, _, flags, _, crc, meta_len, _payload_len, _ = HEADER.unpack_from(data)
    if flags & FLAG_CRC:
        actual = crc32(memoryview(data)[HEADER_SIZE:])
        if actual != crc:
            raise CorruptChunk(f"checksum mismatch (stored {crc:08x}, computed {actual:08x})")
    times, lengths, _crcs, pos = _columns(data, meta_len, count, flags)
    offsets = list(accumulate(lengths, initial=pos))
    bodies: list[Body] = [data[a:b] for a, b in pairwise(offsets)]
    return meta, times, bodies


def _columns(data: bytes, meta_len: int, count: int, flags: int
             ) -> tuple[list[int], array[int], array[int] | None, int]:
    """Times, body lengths, per-body CRCs (when stored) and where the bodies start."""
    pos = HEADER_SIZE + meta_len
    if pos + (16 if flags & FLAG_RECORD_CRC else 12) * count > len(data):
        raise CorruptChunk(f"payload cannot hold {count} records")
    t = array("q")
    t.frombytes(data[pos:pos + 8 * count])
    pos += 8 * count
    lengths = array("I")
    lengths.frombytes(data[pos:pos + 4 * count])
    pos += 4 * count
    crcs: array[int] | None = None
    if flags & FLAG_RECORD_CRC:
        crcs = array("I")
        crcs.frombytes(data[pos:pos + 4 * count])
        pos += 4 * count
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        t.byteswap()
        lengths.byteswap()
        if crcs is not None:
            crcs.byteswap()
    if pos + sum(lengths) != len(data):
        raise CorruptChunk("record lengths do not add up to the payload")
    return t.tolist(), lengths, crcs, pos


def salvage(data: bytes) -> tuple[dict[str, Any], list[int], list[Body], int]:
    """The records of a damaged file whose own CRC still holds, and how many did not.

    Needs an intact header, metadata and length column and per-record CRCs (files written with
    ``storage.checksum``); raises :class:`CorruptChunk` otherwise. A damaged time value is not
    detected (times carry no CRC of their own): the record keeps whatever time it reads as."""
    meta, count = read_header(data, len(data))
    _, _, flags, _, _, meta_len, _, _ = HEADER.unpack_from(data)
    if not flags & FLAG_RECORD_CRC:
        raise CorruptChunk("no per-record checksums to salvage with")
    times, lengths, crcs, pos = _columns(data, meta_len, count, flags)
    assert crcs is not None
    good_times: list[int] = []
    good: list[Body] = []
    for ns, n, want in zip(times, lengths, crcs, strict=True):
        body = data[pos:pos + n]
        pos += n
        if crc32(body) == want:
            good_times.append(ns)
            good.append(body)
    return meta, good_times, good, count - len(good)
