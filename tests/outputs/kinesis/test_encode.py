"""Record encoding, packing and the KPL format of the kinesis_streams / kinesis_firehose
outputs, without a network."""

from __future__ import annotations

import hashlib
import random
from itertools import pairwise
from typing import Any

import orjson
import pytest

from rillet.engine.plugin import lookup
from rillet.outputs import kpl
from rillet.outputs.compress import compressor, decompress
from rillet.outputs.kinesis_common import (
    RANDOM_KEY_LEN,
    RecordEncoder,
    TimeKeyFormat,
    pack,
    split,
)
from rillet.outputs.kinesis_firehose import Firehose, KinesisFirehose
from rillet.outputs.kinesis_streams import Kinesis, KinesisStreams
from tests.plugin_kit import T0, config_error, make_plugin

BASE = {"region": "us-east-1", "endpoint": "http://127.0.0.1:1"}


def enc(**kw: Any) -> RecordEncoder:
    return RecordEncoder(what="Kinesis", max_record=kw.pop("max_record", 1_048_576), **kw)


# --- time_key_format ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "l_digits", "expected"), [
    ("%Y-%m-%dT%H:%M:%S", 9, "2023-11-14T22:13:20"),
    ("%Y-%m-%dT%H:%M:%S.%3N", 9, "2023-11-14T22:13:20.123"),
    ("%H:%M:%S.%9N", 9, "22:13:20.123456789"),
    ("%S.%6N|%f", 9, "20.123456|123456"),
    ("%S.%L", 9, "20.123456789"),  # C plugins: nanoseconds
    ("%S.%L", 3, "20.123"),  # Go plugins: milliseconds
    ("%s 100%% %z", 9, "1700000000 100% +0000"),
])
def test_time_key_format(fmt: str, l_digits: int, expected: str) -> None:
    assert TimeKeyFormat(fmt, l_digits)(T0) == expected


def test_time_key_format_cache_follows_the_second() -> None:
    f = TimeKeyFormat("%S.%3N", 9)
    assert [f(T0), f(T0 + 5_000_000), f(T0 + 1_000_000_000)] == ["20.123", "20.128", "21.123"]


# --- records ------------------------------------------------------------------------------------


def test_whole_records_pass_through_with_newline_and_time_key() -> None:
    e = enc(append_newline=True, time_key="ts", time_format=TimeKeyFormat("%S.%3N", 9))
    ev = e.encode([T0, T0, T0], [b'{"a":1}', {"b": "x"}, b"{}"])
    assert ev.datas == [b'{"a":1,"ts":"20.123"}\n', b'{"b":"x","ts":"20.123"}\n',
                        b'{"ts":"20.123"}\n']
    assert ev.keys is None and ev.skipped == []
    plain = enc().encode([T0], [b'{"a":1}'])
    assert plain.datas == [b'{"a":1}']


def test_dict_bodies_are_not_changed_in_place() -> None:
    body = {"a.b": {"c.d": 1}, "log": "x"}
    e = enc(time_key="t", replace_dots="_", partition_key="log")
    ev = e.encode([T0], [body])
    assert orjson.loads(ev.datas[0]) == {"a_b": {"c_d": 1}, "log": "x",
                                         "t": "2023-11-14T22:13:20"}
    assert body == {"a.b": {"c.d": 1}, "log": "x"}


def test_partition_key_nested_missing_and_truncated() -> None:
    e = enc(partition_key="kubernetes->pod_name")
    long = "p" * 300
    bodies: list[Any] = [{"kubernetes": {"pod_name": "web-1"}},
                         b'{"kubernetes":{"pod_name":"' + long.encode() + b'"}}',
                         {"kubernetes": {"namespace_name": "x"}}, {"kubernetes": "flat"},
                         {"kubernetes": {"pod_name": 5}}, {"other": 1}]
    ev = e.encode([T0] * 6, bodies)
    assert ev.keys is not None
    assert ev.keys[0] == "web-1"
    assert ev.keys[1] == "p" * 256
    assert ev.missing_keys == 4
    randoms = ev.keys[2:]
    assert all(len(k) == RANDOM_KEY_LEN for k in randoms) and len(set(randoms)) == 4


def test_partition_key_of_serialized_records_passes_them_through() -> None:
    e = enc(partition_key="kubernetes->pod_name", append_newline=True)
    bodies: list[Any] = [
        b'{"log":"a","kubernetes":{"pod_name":"tail-1"}}',  # the filter's tail
        b'{"log":"b","kubernetes":{"pod_name":"tail-1"}}',  # same tail: cached
        b'{"kubernetes":{"pod_name":"first"},"log":"c"}',  # not last: decoded whole
        b'{"log":"d","x":{"y":1,"kubernetes":{"pod_name":"nested"}}}',  # a decoy below
        rb'{"log":"e,\"kubernetes\":{\"pod_name\":\"in-a-string\"}"}',  # text, not a key
        {"log": "f", "kubernetes": {"pod_name": "dict"}},
        b'{"log":"g","kubernetes":"flat"}',
    ]
    ev = e.encode([T0] * len(bodies), bodies)
    assert ev.keys is not None
    assert ev.keys[:3] == ["tail-1", "tail-1", "first"]
    assert ev.keys[5] == "dict"
    assert ev.missing_keys == 3  # the decoy, the string, the flat value
    assert all(len(k) == RANDOM_KEY_LEN for k in (ev.keys[3], ev.keys[4], ev.keys[6]))
    assert ev.datas[:5] == [b + b"\n" for b in bodies[:5]]  # passed through untouched
    assert e.key_only and not e.needs_dict


def test_data_keys_log_key_and_their_errors() -> None:
    ev = enc(data_keys=["log", "stream"]).encode([T0], [{"log": "x", "stream": "o", "k": 1}])
    assert orjson.loads(ev.datas[0]) == {"log": "x", "stream": "o"}
    e = enc(log_key="log", append_newline=True)
    ev = e.encode([T0] * 4, [{"log": "raw text"}, {"log": {"m": [1]}}, {"nolog": 1},
                             b"[1,2]"])
    assert ev.datas == [b"raw text\n", b'{"m":[1]}\n']
    assert ev.skipped == [(2, "could not find log_key 'log' in record"),
                          (3, "record is not a map")]


def test_bad_json_body_is_skipped_with_a_reason() -> None:
    ev = enc(log_key="log").encode([T0, T0], [b'{"log":', {"log": "ok"}])
    assert ev.idx == [1]
    assert ev.skipped[0][0] == 0 and "cannot be encoded" in ev.skipped[0][1]


def test_oversize_records_are_dropped_counting_the_partition_key() -> None:
    e = enc(max_record=40, partition_key="k")
    ev = e.encode([T0] * 3, [{"k": "a", "v": "x" * 20}, {"k": "abcdefghij", "v": "x" * 20},
                             {"k": "b"}])
    assert ev.idx == [0, 2]
    assert ev.oversize == 1
    assert ev.skipped == [(1, "record of 55 bytes is larger than the 40 bytes Kinesis "
                              "accepts per record")]


def test_per_record_compression() -> None:
    e = enc(compress=compressor("zlib"), append_newline=True)
    ev = e.encode([T0], [b'{"a":1}'])
    assert decompress("zlib", ev.datas[0]) == b'{"a":1}\n'


# --- packing ------------------------------------------------------------------------------------


def test_simple_aggregation_joins_within_the_limit_then_compresses() -> None:
    e = enc(append_newline=True)
    bodies: list[Any] = [b'{"n":%d}' % i for i in range(10)]
    ev = e.encode([T0] * 10, bodies)
    units = pack(ev, "simple", 20, keyed=False)
    assert units.keys is None
    assert b"".join(units.datas) == b"".join(ev.datas)
    assert all(len(d) <= 20 for d in units.datas)
    assert units.bounds == [0, 2, 4, 6, 8, 10]
    gz = pack(ev, "simple", 1000, keyed=False, compress=compressor("gzip"))
    assert len(gz) == 1 and decompress("gzip", gz.datas[0]) == b"".join(ev.datas)


def test_simple_aggregation_keeps_partition_keys_apart() -> None:
    ev = enc(partition_key="k").encode([T0] * 4, [{"k": "a"}, {"k": "a"}, {"k": "b"},
                                                  {"k": "a"}])
    units = pack(ev, "simple", 1000, keyed=True)
    assert units.keys == ["a", "b", "a"] and units.bounds == [0, 2, 3, 4]


def test_random_keys_per_api_record_when_no_partition_key() -> None:
    ev = enc().encode([T0] * 3, [b"{}"] * 3)
    units = pack(ev, "one", 1000, keyed=True)
    assert units.keys is not None and len(set(units.keys)) == 3


def test_kpl_aggregates_round_trip_within_the_limit() -> None:
    rng = random.Random(3)
    bodies: list[Any] = [{"k": rng.choice(["a", "bb", "ccc"]), "v": "x" * rng.randrange(200)}
                         for _ in range(300)]
    ev = enc(partition_key="k").encode([T0] * 300, bodies)
    units = pack(ev, "kpl", 4096, keyed=True)
    assert len(units) > 5
    assert units.keys is not None
    got: list[tuple[str, bytes]] = []
    for u, blob in enumerate(units.datas):
        assert len(blob) + len(units.keys[u]) <= 4096
        members = kpl.deaggregate(blob)
        assert members[0][0] == units.keys[u]  # routed by the first record's key
        got.extend(members)
    assert got == list(zip(ev.keys or [], ev.datas, strict=True))


def test_kpl_plan_is_exact_at_the_boundary() -> None:
    datas = [b"x" * 100] * 50
    keys = ["key"] * 50
    for limit in range(200, 3000, 37):
        bounds = kpl.Aggregator(limit).plan(keys, [100] * 50)
        for a, b in pairwise(bounds):
            size = len(kpl.encode(keys[a:b], datas[a:b])) + 3
            assert size <= limit or b - a == 1
            if b < 50:  # one more record would not have fit
                assert len(kpl.encode(keys[a:b + 1], datas[a:b + 1])) + 3 > limit


def test_kpl_without_partition_key_gives_each_aggregate_its_own_key() -> None:
    ev = enc().encode([T0] * 100, [b'{"v":"' + b"y" * 100 + b'"}'] * 100)
    units = pack(ev, "kpl", 2000, keyed=True)
    assert units.keys is not None and len(set(units.keys)) == len(units) > 1
    for blob, key in zip(units.datas, units.keys, strict=True):
        assert {k for k, _ in kpl.deaggregate(blob)} == {key}


def test_kpl_format_bytes() -> None:
    blob = kpl.encode(["pk"], [b"hi"])
    body = b"\x0a\x02pk" + b"\x1a\x06" + b"\x08\x00\x1a\x02hi"
    assert blob == kpl.MAGIC + body + hashlib.md5(body).digest()
    with pytest.raises(ValueError, match="md5"):
        kpl.deaggregate(blob[:-1] + b"\x00")
    assert kpl.varint(300) == b"\xac\x02" and kpl.varint_len(300) == 2


def test_split_by_count_and_bytes() -> None:
    sizes = [3, 3, 3, 3, 3]
    assert split(sizes, [0, 1, 2, 3, 4], 2, 100) == [[0, 1], [2, 3], [4]]
    assert split(sizes, [0, 2, 4], 10, 6) == [[0, 2], [4]]


# --- options ------------------------------------------------------------------------------------


error = config_error


def test_names() -> None:
    assert lookup("output", "kinesis_streams") is KinesisStreams
    assert lookup("output", "kinesis") is Kinesis
    assert lookup("output", "kinesis_firehose") is KinesisFirehose
    assert lookup("output", "firehose") is Firehose


def test_configuration_errors() -> None:
    assert error(KinesisStreams, stream="s") == "'region' is a required field"
    assert error(KinesisStreams, region="us-east-1") == "'stream' is a required field"
    assert error(KinesisFirehose, region="us-east-1") == \
        "'delivery_stream' is a required field"
    assert "accepted: gzip, zstd" in error(KinesisFirehose, region="us-east-1",
                                           delivery_stream="d", compression="zlib")
    assert "not supported" in error(KinesisFirehose, region="us-east-1", delivery_stream="d",
                                    compression="arrow")
    assert "cannot both be on" in error(KinesisStreams, region="us-east-1", stream="s",
                                        aggregation="on", simple_aggregation="on")
    assert "unknown configuration property 'aggregation'" in error(
        KinesisFirehose, region="us-east-1", delivery_stream="d", aggregation="on")
    assert "empty key name" in error(KinesisStreams, region="us-east-1", stream="s",
                                     partition_key="kubernetes->")
    assert "cannot both be set" in error(KinesisStreams, region="us-east-1", stream="s",
                                         log_key="log", data_keys="log")


def test_dialect_defaults() -> None:
    c = make_plugin(KinesisStreams, stream="s", time_key="t", time_key_format="%L", **BASE)
    go = make_plugin(Kinesis, stream="s", time_key="t", time_key_format="%L", **BASE)
    assert c.encoder.encode([T0], [b"{}"]).datas == [b'{"t":"123456789"}\n']
    assert go.encoder.encode([T0], [b"{}"]).datas == [b'{"t":"123"}']
    fh = make_plugin(Firehose, delivery_stream="d", **BASE)
    assert fh.encoder.encode([T0], [b"{}"]).datas == [b"{}\n"]
    off = make_plugin(KinesisFirehose, delivery_stream="d", append_newline="off", **BASE)
    assert off.encoder.encode([T0], [b"{}"]).datas == [b"{}"]
    assert make_plugin(Kinesis, stream="s", aggregation="true", **BASE).mode == "kpl"
    assert make_plugin(Kinesis, stream="s", simple_aggregation="true", **BASE).mode == "simple"
