"""The Kinesis Producer Library (KPL) aggregated record format.

Many user records travel in one Kinesis record (they count once against the shard's 1,000
records per second) as::

    magic 0xF3 0x89 0x9A 0xC2 | protobuf AggregatedRecord | md5 of the protobuf (16 bytes)

with (aggregation-format.md of awslabs/amazon-kinesis-producer)::

    message AggregatedRecord {
      repeated string partition_key_table = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records = 3;
    }
    message Record {
      required uint64 partition_key_index = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes data = 3;
    }

The protobuf is written by hand (three field kinds: varint, length-delimited bytes, nested
message): no protobuf runtime is needed for two messages. :class:`Aggregator` packs user records
into aggregates that stay within the Kinesis record limit; :func:`deaggregate` reads one back (the
tests and anyone checking a stream use it; KCL consumers deaggregate by themselves).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_BYTES = 16
# Field tags: (field number << 3) | wire type (0 varint, 2 length-delimited).
_TAG_KEY_TABLE = b"\x0a"  # AggregatedRecord.partition_key_table (1, bytes)
_TAG_RECORD = b"\x1a"  # AggregatedRecord.records (3, bytes)
_TAG_KEY_INDEX = b"\x08"  # Record.partition_key_index (1, varint)
_TAG_DATA = b"\x1a"  # Record.data (3, bytes)


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _record_message(key_index: int, data: bytes) -> bytes:
    return b"".join((_TAG_KEY_INDEX, varint(key_index), _TAG_DATA, varint(len(data)), data))


def encode(keys: Sequence[str], datas: Sequence[bytes]) -> bytes:
    """One aggregated record holding ``datas[i]`` with partition key ``keys[i]``."""
    table: dict[str, int] = {}
    parts: list[bytes] = []
    records: list[bytes] = []
    for key, data in zip(keys, datas, strict=True):
        index = table.get(key)
        if index is None:
            index = table[key] = len(table)
            raw = key.encode()
            parts.append(_TAG_KEY_TABLE + varint(len(raw)) + raw)
        msg = _record_message(index, data)
        records.append(_TAG_RECORD + varint(len(msg)) + msg)
    body = b"".join(parts) + b"".join(records)
    return MAGIC + body + hashlib.md5(body).digest()


def record_cost(key_index: int, data_len: int) -> int:
    """Bytes one user record adds to an aggregate (its ``records`` entry)."""
    inner = 1 + varint_len(key_index) + 1 + varint_len(data_len) + data_len
    return 1 + varint_len(inner) + inner


def key_cost(key: str) -> int:
    """Bytes a new partition key adds to an aggregate's key table."""
    n = len(key.encode())
    return 1 + varint_len(n) + n


class Aggregator:
    """Cuts a sequence of user records into aggregates of at most ``max_bytes`` (the aggregate's
    bytes plus its partition key, which is the first user record's key, as the Go plugin does).

    :meth:`plan` returns the boundaries; :func:`encode` builds each aggregate."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def plan(self, keys: Sequence[str], sizes: Sequence[int]) -> list[int]:
        """Boundaries ``[0, b1, b2, ..., n]``: aggregate ``j`` holds records ``b[j]:b[j+1]``.
        A record that does not fit an empty aggregate gets one of its own (the caller has
        already dropped records over the limit)."""
        bounds = [0]
        fixed = len(MAGIC) + DIGEST_BYTES
        limit = self.max_bytes
        table: dict[str, int] = {}
        size = 0
        for i, (key, n) in enumerate(zip(keys, sizes, strict=True)):
            if not table:  # a new aggregate; its own partition key is its first record's
                size = fixed + len(key.encode())
            index = table.get(key)
            if index is None:
                cost = record_cost(len(table), n) + key_cost(key)
            else:
                cost = record_cost(index, n)
            if table and size + cost > limit:
                bounds.append(i)
                table = {}
                size = fixed + len(key.encode())
                index = None
                cost = record_cost(0, n) + key_cost(key)
            if index is None:
                table[key] = len(table)
            size += cost
        if len(keys):
            bounds.append(len(keys))
        return bounds


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            out.append((field, value))
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated field")
            out.append((field, buf[pos:pos + n]))
            pos += n
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def is_aggregated(blob: bytes) -> bool:
    return blob[:4] == MAGIC and len(blob) >= len(MAGIC) + DIGEST_BYTES


def deaggregate(blob: bytes) -> list[tuple[str, bytes]]:
    """The ``(partition key, data)`` user records of an aggregated record; a record that is not
    aggregated comes back as itself with key ''. Raises ValueError on a bad digest."""
    if not is_aggregated(blob):
        return [("", blob)]
    body, digest = blob[4:-DIGEST_BYTES], blob[-DIGEST_BYTES:]
    if hashlib.md5(body).digest() != digest:
        raise ValueError("aggregated record: md5 mismatch")
    keys: list[str] = []
    out: list[tuple[str, bytes]] = []
    for field, value in _fields(body):
        if field == 1 and isinstance(value, bytes):
            keys.append(value.decode())
        elif field == 3 and isinstance(value, bytes):
            index = 0
            data = b""
            for f, v in _fields(value):
                if f == 1 and isinstance(v, int):
                    index = v
                elif f == 3 and isinstance(v, bytes):
                    data = v
            out.append((keys[index], data))
    return out
