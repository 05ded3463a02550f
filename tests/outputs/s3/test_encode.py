"""The lines an s3 object holds (encoding only, no requests)."""

from __future__ import annotations

from typing import Any

import orjson

from rillet.outputs.s3 import S3, encode_log_key
from tests.plugin_kit import make_chunk, make_plugin

T = 1_700_000_000_500_000_000


def encode(bodies: list[Any], **settings: str) -> bytes:
    plugin = make_plugin(S3, bucket="b", **settings)
    data, skipped = plugin.encode(make_chunk(bodies, [T] * len(bodies)))
    assert skipped == []
    return data


def test_bodies_keep_their_text_and_get_the_date_first() -> None:
    data = encode([b'{"log":"caf\xc3\xa9","f":1.50}', {"n": 1}, b"{}"])
    assert data == (b'{"date":1700000000.5,"log":"caf\xc3\xa9","f":1.50}\n'
                    b'{"date":1700000000.5,"n":1}\n{"date":1700000000.5}\n')


def test_a_record_with_the_date_key_keeps_its_own() -> None:
    data = encode([b'{"date":"mine","a":1}', b'{"a":2}'])
    assert [orjson.loads(x) for x in data.splitlines()] == [
        {"date": "mine", "a": 1}, {"date": 1700000000.5, "a": 2}]


def test_raw_line_breaks_inside_a_record_do_not_split_it() -> None:
    data = encode([b'{"a":1,\n "b":\r\n2}', b'{"c":3}'], json_date_key="off")
    assert [orjson.loads(x) for x in data.splitlines()] == [{"a": 1, "b": 2}, {"c": 3}]
    assert data.count(b"\n") == 2


def test_log_key_lines() -> None:
    data, skipped = encode_log_key([b'{"log":"a\\tb"}', {"log": 5}, b'{"x":1}', b"not json"],
                                   "log")
    assert data == b"a\tb\n5\n"
    assert skipped == [2, 3]
