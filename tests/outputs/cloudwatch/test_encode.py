"""PutLogEvents limits that moto does not enforce, checked on what the encoder builds."""

from __future__ import annotations

import orjson
import pytest

from rillet.outputs.cloudwatch_logs import encode as enc

MS = 1_000_000
T = 1_795_000_000_000 * MS


def events(bodies: list[object], times: list[int] | None = None,
           log_key: str | None = None) -> enc.Events:
    times = times if times is not None else [T] * len(bodies)
    return enc.encode(times, bodies, None, log_key)  # type: ignore[arg-type]


def check_request(body: bytes) -> list[dict[str, object]]:
    """The AWS limits on one request body."""
    doc = orjson.loads(body)
    evs = doc["logEvents"]
    assert 0 < len(evs) <= 10_000
    assert sum(len(e["message"].encode()) + 26 for e in evs) <= 1_048_576
    stamps = [e["timestamp"] for e in evs]
    assert stamps == sorted(stamps)
    assert stamps[-1] - stamps[0] < 24 * 3600 * 1000
    assert all(e["message"] for e in evs)
    assert "sequenceToken" not in doc
    return evs


def test_messages_are_the_record_json() -> None:
    ev = events([b'{"a":1}', {"b": "\u00e9", "c": [1, 2]}])
    assert ev.msgs == ['{"a":1}', '{"b":"\u00e9","c":[1,2]}']
    assert ev.ts == [T // MS] * 2
    assert ev.sizes == [7 + 26, len('{"b":"é","c":[1,2]}'.encode()) + 26]


def test_log_key_strings_raw_others_json_missing_skipped() -> None:
    ev = events([{"log": "line\n"}, b'{"log":{"x":1}}', {"other": 1}, {"log": 5}],
                log_key="log")
    assert ev.msgs == ["line\n", '{"x":1}', "5"]
    assert ev.idx == [0, 1, 3]
    assert ev.skipped == [(2, "could not find log_key 'log' in record")]


def test_empty_messages_skipped_and_counted() -> None:
    ev = events([{"log": ""}, {"log": "x"}], log_key="log")
    assert ev.msgs == ["x"] and ev.empty == 1 and ev.skipped[0] == (0, "empty log message")


def test_sorted_by_time_stable() -> None:
    times = [T + 3 * MS, T + 1 * MS, T + 2 * MS, T + 1 * MS]
    ev = events([{"n": i} for i in range(4)], times)
    assert ev.idx == [1, 3, 2, 0]
    assert ev.ts == sorted(ev.ts)


def test_truncation_at_utf8_boundary() -> None:
    # 'é' is two bytes; put one across the limit.
    body = b'"' + b"a" * 8 + "é".encode() + b"bbb"
    ev = enc.encode([T], [body], None, None, max_event=10)
    assert ev.truncated == 1
    assert ev.msgs == ['"' + "a" * 8]  # the split character is dropped whole
    assert enc.truncate_utf8("日本".encode(), 4) == "日".encode()
    assert enc.truncate_utf8(b"abc", 3) == b"abc"


def test_truncation_at_the_real_limit() -> None:
    big = b'{"log":"' + b"x" * 1_100_000 + b'"}'
    ev = events([big])
    assert ev.truncated == 1
    assert len(ev.msgs[0].encode()) == enc.MAX_EVENT_BYTES == 1_048_550
    (a, b), = enc.split(ev)
    check_request(enc.request_body("g", "s", ev, a, b))


def test_split_on_bytes_with_26_bytes_per_event() -> None:
    # Messages of 1,000 bytes: 1,026 counted each; 1,048,576 // 1,026 = 1,022 per request.
    msg = b'"' + b"y" * 998 + b'"'
    ev = events([msg] * 3000)
    batches = enc.split(ev)
    assert [b - a for a, b in batches] == [1022, 1022, 956]
    for a, b in batches:
        check_request(enc.request_body("g", "s", ev, a, b))


def test_split_exact_byte_boundary() -> None:
    # Two events that fill the request exactly, a third that does not fit.
    size = 1_048_576 // 2 - 26
    msg = b"z" * size
    ev = events([msg, msg, b"1"])
    assert enc.split(ev) == [(0, 2), (2, 3)]


def test_split_on_event_count() -> None:
    ev = events([b"{}"] * 25_000)
    batches = enc.split(ev)
    assert [b - a for a, b in batches] == [10_000, 10_000, 5_000]
    for a, b in batches:
        check_request(enc.request_body("g", "s", ev, a, b))


def test_split_on_24h_span() -> None:
    day = 24 * 3600 * 1000 * MS
    times = [T, T + day - MS, T + day, T + day + 5 * MS, T + 3 * day]
    ev = events([{"i": i} for i in range(5)], times)
    assert enc.split(ev) == [(0, 2), (2, 4), (4, 5)]
    for a, b in enc.split(ev):
        check_request(enc.request_body("g", "s", ev, a, b))


def test_request_body_shape() -> None:
    ev = events([{"a": '"q"'}])
    doc = orjson.loads(enc.request_body("grp", "str", ev, 0, 1))
    assert doc == {"logGroupName": "grp", "logStreamName": "str",
                   "logEvents": [{"timestamp": T // MS, "message": '{"a":"\\"q\\""}'}]}


@pytest.mark.parametrize("indices, ranges", [
    ([], []), ([3], [(3, 4)]), ([0, 1, 2, 5, 6, 9], [(0, 3), (5, 7), (9, 10)]),
    ([5, 1, 0, 2], [(0, 3), (5, 6)]),
])
def test_index_ranges(indices: list[int], ranges: list[tuple[int, int]]) -> None:
    assert enc.index_ranges(indices) == ranges


def test_unencodable_record_is_skipped_with_a_reason() -> None:
    ev = events([{"bad": "\ud800"}, {"ok": 1}])
    assert ev.idx == [1]
    assert ev.skipped[0][0] == 0 and "cannot be encoded" in ev.skipped[0][1]


def _greedy(ev: enc.Events, max_bytes: int, max_events: int, span: int) -> list[tuple[int, int]]:
    """The obvious one-event-at-a-time split, as a reference."""
    out: list[tuple[int, int]] = []
    start, total = 0, 0
    for j, size in enumerate(ev.sizes):
        if j > start and (j - start >= max_events or total + size > max_bytes
                          or ev.ts[j] - ev.ts[start] >= span):
            out.append((start, j))
            start, total = j, 0
        total += size
    if ev.sizes:
        out.append((start, len(ev.sizes)))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_split_matches_the_greedy_reference(seed: int) -> None:
    import random
    rnd = random.Random(seed)
    n = rnd.randint(1, 400)
    times = sorted(T + rnd.randint(0, 50) * MS for _ in range(n))
    bodies: list[object] = [b"x" * rnd.randint(1, 300) for _ in range(n)]
    ev = events(bodies, times)
    limits = (rnd.randint(400, 5000), rnd.randint(1, 60), rnd.randint(1, 40))
    assert enc.split(ev, *limits) == _greedy(ev, *limits)


def test_subset_of_indices_keeps_record_numbers() -> None:
    ev = enc.encode([T, T + MS, T + 2 * MS], [b"a", b"b", b"c"], [2, 0], None)
    assert ev.idx == [0, 2] and ev.msgs == ["a", "c"]
