"""The chunk file format: round trip, checksum, structural checks."""

from __future__ import annotations

import pytest

from rillet.engine.storage.format import (
    HEADER,
    HEADER_SIZE,
    CorruptChunk,
    decode,
    encode,
    read_header,
    salvage,
)

META = {"tag": "kube.var.log", "input": "tail.0", "routes": ["es.0", "s3.0"], "seq": 7}


def test_round_trip_keeps_times_bodies_and_metadata() -> None:
    times = [1_700_000_000_123_456_789, 0, -5, 2**62]
    bodies: list = [b'{"log":"a"}', {"k": "v", "n": [1, 2]}, b"{}", {"u": "\u00e9\u4e2d"}]
    for checksum in (False, True):
        data = encode(META, times, bodies, checksum)
        meta, t, b = decode(data)
        assert meta == META and t == times
        assert b == [b'{"log":"a"}', b'{"k":"v","n":[1,2]}', b"{}",
                     '{"u":"\u00e9\u4e2d"}'.encode()]
        assert read_header(data[:HEADER_SIZE + 200], len(data)) == (META, 4)


def test_empty_chunk() -> None:
    assert decode(encode(META, [], [], True)) == (META, [], [])


def test_checksum_detects_a_flipped_byte_in_a_body() -> None:
    data = bytearray(encode(META, [1, 2], [b'{"a":1}', b'{"b":2}'], True))
    data[-2] ^= 0x01
    with pytest.raises(CorruptChunk, match="checksum"):
        decode(bytes(data))


def test_without_checksum_structure_is_still_checked() -> None:
    data = encode(META, [1, 2], [b'{"a":1}', b'{"b":2}'], False)
    with pytest.raises(CorruptChunk, match="truncated"):
        decode(data[:-3])
    with pytest.raises(CorruptChunk, match="truncated"):
        decode(data[:10])
    with pytest.raises(CorruptChunk, match="magic"):
        decode(b"XXXX" + data[4:])
    with pytest.raises(CorruptChunk, match="version"):
        decode(data[:4] + b"\x09" + data[5:])
    # Lengths that do not add up (a length field changed, total size unchanged).
    bad = bytearray(data)
    meta_len = HEADER.unpack_from(data)[5]
    lengths_at = HEADER_SIZE + meta_len + 8 * 2
    bad[lengths_at] += 1
    with pytest.raises(CorruptChunk):
        decode(bytes(bad))


def test_metadata_must_name_tag_and_routes() -> None:
    data = encode({"tag": "t"}, [1], [b"{}"], False)
    with pytest.raises(CorruptChunk, match="metadata"):
        decode(data)


def test_salvage_keeps_every_record_whose_own_checksum_holds() -> None:
    bodies: list = [b'{"n":%d}' % i for i in range(5)]
    data = bytearray(encode(META, [10, 11, 12, 13, 14], bodies, True))
    data[-12] ^= 0x01  # inside the 4th body ({"n":3})
    with pytest.raises(CorruptChunk, match="checksum"):
        decode(bytes(data))
    meta, times, good, bad = salvage(bytes(data))
    assert meta == META and bad == 1
    assert times == [10, 11, 12, 14]
    assert good == [b'{"n":0}', b'{"n":1}', b'{"n":2}', b'{"n":4}']


def test_salvage_needs_per_record_checksums_and_intact_lengths() -> None:
    plain = encode(META, [1], [b'{"a":1}'], False)
    with pytest.raises(CorruptChunk, match="no per-record"):
        salvage(plain)
    data = bytearray(encode(META, [1, 2], [b'{"a":1}', b'{"b":2}'], True))
    meta_len = HEADER.unpack_from(data)[5]
    data[HEADER_SIZE + meta_len + 16] += 1  # first body length
    with pytest.raises(CorruptChunk, match="lengths"):
        salvage(bytes(data))
