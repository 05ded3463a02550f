"""The ``multiline`` filter: parser and partial_message modes, buffered across batches, released
by time (``tick``) and at shutdown, acknowledgements held with the records (engine hook)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any

import orjson
import pytest

from rillet.config.model import ConfigError
from rillet.engine.chunk import AckList, AckRef, Batch, Chunk
from rillet.filters import multiline as mlf
from rillet.filters.multiline import MultilineFilter
from tests.engine import plugins
from tests.engine.harness import make_pipeline, running, wait_for
from tests.engine.plugins import Feed, Sink
from tests.plugin_kit import make_plugin

T0 = 1_700_000_000_000_000_000

JAVA = [
    "java.lang.IllegalStateException: Failed to execute CommandLineRunner\n",
    "\tat org.springframework.boot.SpringApplication.callRunner(SpringApplication.java:787)\n",
    "\tat org.springframework.boot.SpringApplication.run(SpringApplication.java:315)\n",
    "Caused by: java.lang.NullPointerException: null\n",
    "\tat com.example.App.run(App.java:42)\n",
    "\t... 5 common frames omitted\n",
]
PYTHON = [
    "Traceback (most recent call last):\n",
    '  File "/app/main.py", line 10, in <module>\n',
    "    main()\n",
    "ValueError: bad value\n",
]


def rec(log: str, stream: str = "stdout", **extra: Any) -> dict[str, Any]:
    return {"log": log, "stream": stream, "time": "2024-05-01T10:00:00.000000001Z", **extra}


def mk_batch(records: list[Any], ack: Any = None, tag: str = "kube.app") -> Batch:
    return Batch(tag, [T0 + i for i in range(len(records))], records, 100 * len(records), ack)


def ml_filter(**settings: str) -> MultilineFilter:
    return make_plugin(MultilineFilter, **settings)


def logs(batch: Batch) -> list[str]:
    return [b["log"] for b in batch.bodies]  # type: ignore[index,call-overload]


# --- parser mode -------------------------------------------------------------------------------

def test_java_and_python_traces_interleaved_on_stdout_and_stderr() -> None:
    f = ml_filter(**{"multiline.parser": "java, python", "multiline.key_content": "log"})
    records = []
    for i in range(max(len(JAVA), len(PYTHON))):
        if i < len(JAVA):
            records.append(rec(JAVA[i], "stdout"))
        if i < len(PYTHON):
            records.append(rec(PYTHON[i], "stderr"))
    records += [rec("next stdout line\n", "stdout"), rec("next stderr line\n", "stderr")]
    out = f.filter(mk_batch(records))
    got = {(b["stream"], b["log"]) for b in out.bodies}  # type: ignore[index,call-overload]
    assert ("stdout", "".join(JAVA)) in got
    assert ("stderr", "".join(PYTHON)) in got
    # The python message ends on its last line; the java one when the next stdout line came.
    assert ("stdout", "next stdout line\n") in got and ("stderr", "next stderr line\n") in got
    assert len(out.bodies) == 4
    joined = next(b for b in out.bodies if b["log"] == "".join(JAVA))  # type: ignore[index,call-overload]
    assert list(joined) == ["log", "stream", "time"]


def test_pending_message_waits_for_the_next_batch_and_holds_its_ack() -> None:
    f = ml_filter(**{"multiline.parser": "java", "multiline.key_content": "log"})
    r1, r2 = AckRef("b1"), AckRef("b2")
    out1 = f.filter(mk_batch([rec("before\n"), *[rec(x) for x in JAVA[:3]]], ack=r1))
    assert logs(out1) == ["before\n"]
    # b1's records are still pending: b1 is held by the filter beyond this batch.
    assert isinstance(out1.ack, AckList) and r1 in out1.ack and r1.holds == 2
    out2 = f.filter(mk_batch([*[rec(x) for x in JAVA[3:]], rec("after\n")], ack=r2))
    assert logs(out2) == ["".join(JAVA), "after\n"]
    assert isinstance(out2.ack, AckList)
    # b2 rides once for its own records and once for the joined message its lines completed.
    assert out2.ack.count(r1) == 1 and out2.ack.count(r2) == 2 == r2.holds
    # Done with batch 1's chunk, then with batch 2's: b1 is final only after both.
    assert not r1.release(True)
    assert r1.release(True)
    assert not r2.release(True) and r2.release(True)
    assert not f.groups[("kube.app", "stdout")].pending


def test_tick_releases_expired_messages_and_final_releases_all(
        monkeypatch: pytest.MonkeyPatch) -> None:
    f = ml_filter(**{"multiline.parser": "python", "multiline.key_content": "log",
                     "flush_ms": "500"})
    ref = AckRef("b")
    out = f.filter(mk_batch([rec(x) for x in PYTHON[:3]], ack=ref))
    assert out.bodies == [] and f.tick() == []
    now = mlf._monotonic()
    monkeypatch.setattr(mlf, "_monotonic", lambda: now + 0.6)
    (released,) = f.tick()
    assert released.tag == "kube.app" and logs(released) == ["".join(PYTHON[:3])]
    assert released.times == [T0] and released.size > 0
    assert isinstance(released.ack, AckList) and list(released.ack) == [ref]
    assert f.counters["emit_records"] == 1
    f.filter(mk_batch([rec(PYTHON[0])]))
    (last,) = f.tick(final=True)
    assert logs(last) == [PYTHON[0]] and f.tick(final=True) == []
    assert f.groups == {}  # state with nothing pending is forgotten (idle or final)


def test_idle_state_is_forgotten_and_truncation_is_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    f = ml_filter(**{"multiline.parser": "java", "multiline.key_content": "log"})
    f.limit = 100
    out = f.filter(mk_batch([rec(JAVA[0]), rec("\tat " + "x" * 200 + "\n")]))
    assert [len(b["log"]) for b in out.bodies] == [100]  # type: ignore[index,call-overload]
    assert f.counters["emit_truncated"] == 1
    f.filter(mk_batch([rec("plain\n")], tag="other"))
    assert len(f.groups) == 2 and f.tick() == []
    now = mlf._monotonic()
    monkeypatch.setattr(mlf, "_monotonic", lambda: now + mlf.IDLE_SECONDS + 1)
    assert f.tick() == [] and f.groups == {}


def test_buffer_off_flushes_at_the_end_of_each_batch() -> None:
    f = ml_filter(**{"multiline.parser": "python", "multiline.key_content": "log",
                     "buffer": "off"})
    out = f.filter(mk_batch([rec(x) for x in PYTHON[:2]], ack="tok"))
    assert logs(out) == ["".join(PYTHON[:2])]
    refs = list(out.ack)  # type: ignore[arg-type]
    assert {r.token for r in refs} == {"tok"} and refs[0].holds == len(refs)


def test_records_without_key_content_and_bytes_bodies_pass_through() -> None:
    f = ml_filter(**{"multiline.parser": "java", "multiline.key_content": "log"})
    body = orjson.dumps(rec(JAVA[0]))
    out = f.filter(mk_batch([{"other": 1}, b"not json", body, rec("tail\n")]))
    assert out.bodies[:2] == [{"other": 1}, b"not json"]
    assert logs(Batch("t", [], out.bodies[2:], 0)) == [JAVA[0], "tail\n"]


def test_docker_parser_in_the_filter_needs_json_in_key_content() -> None:
    # Fluent Bit's docker parser pre-parses the key_content text as a Docker JSON line.
    f = ml_filter(**{"multiline.parser": "docker"})
    parts = [{"log": '{"log":"part-1 ","stream":"stdout","time":"2024-05-01T10:00:00.1Z"}'},
             {"log": '{"log":"part-2\\n","stream":"stdout","time":"2024-05-01T10:00:00.2Z"}'},
             {"log": "plain text"}]
    out = f.filter(mk_batch(parts))
    assert out.bodies == [{"log": "part-1 part-2\n", "stream": "stdout",
                           "time": "2024-05-01T10:00:00.1Z"}, {"log": "plain text"}]
    assert out.times[0] == 1714557600_100000000


def test_bad_input_never_raises() -> None:
    f = ml_filter(**{"multiline.parser": "java, python, go, ruby, docker, cri",
                     "multiline.key_content": "log"})
    junk: list[Any] = [{}, {"log": None}, {"log": 3, "stream": 4}, b"{", b"[]", b"null",
                       {"log": "\ud800", "stream": ["x"]}, {"log": ""}, rec("x" * 5000)]
    for _ in range(3):
        out = f.filter(mk_batch(list(junk), ack="t"))
        assert len(out.bodies) <= len(junk)
    f.tick(final=True)


# --- partial_message mode ------------------------------------------------------------------

def test_partial_message_mode_joins_docker_split_records() -> None:
    f = ml_filter(**{"mode": "partial_message", "multiline.key_content": "log"})
    parts = [
        {"container_id": "c1", "log": "first ", "partial_message": "true", "partial_id": "p1",
         "partial_ordinal": "1", "partial_last": "false"},
        {"container_id": "c1", "log": "unrelated"},
        {"container_id": "c1", "log": "second ", "partial_message": "true",
         "partial_id": "p1", "partial_ordinal": "2", "partial_last": "false"},
        {"container_id": "c1", "log": "third", "partial_message": "true", "partial_id": "p1",
         "partial_ordinal": "3", "partial_last": "true"},
    ]
    out = f.filter(mk_batch(parts, ack="a"))
    assert out.bodies == [{"container_id": "c1", "log": "unrelated"},
                          {"container_id": "c1", "log": "first second third"}]
    assert out.times == [T0 + 1, T0]
    # Split over batches: the first parts wait, their ack is held until the last part.
    r1, r2 = AckRef("b1"), AckRef("b2")
    out1 = f.filter(mk_batch([parts[0]], ack=r1))
    assert out1.bodies == [] and r1.holds == 2
    out2 = f.filter(mk_batch([parts[3]], ack=r2))
    assert out2.bodies == [{"container_id": "c1", "log": "first third"}]
    assert out2.ack.count(r1) == 1  # type: ignore[union-attr]
    # A partial with no partial_id, or no key_content, passes unchanged.
    odd = [{"log": "x", "partial_message": "true"}, {"partial_message": "true", "partial_id": 1}]
    assert f.filter(mk_batch(odd)).bodies == odd


def test_partial_message_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    f = ml_filter(**{"mode": "partial_message", "multiline.key_content": "log",
                     "flush_ms": "500"})
    f.filter(mk_batch([{"log": "a", "partial_message": "True", "partial_id": "x"}]))
    assert f.tick() == []
    now = mlf._monotonic()
    monkeypatch.setattr(mlf, "_monotonic", lambda: now + 1)
    (out,) = f.tick()
    assert out.bodies == [{"log": "a"}]


# --- configuration errors ------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "message"), [
    ({}, "requires at least one 'multiline.parser'"),
    ({"mode": "partial_message"}, "requires 'multiline.key_content'"),
    ({"mode": "partial_message", "multiline.key_content": "log", "buffer": "off"},
     "requires 'Buffer' to be 'On'"),
    ({"multiline.parser": "java", "flush_ms": "100"}, "too low"),
    ({"multiline.parser": "java, nope"}, "parser 'nope' not registered"),
])
def test_bad_option_combinations_are_startup_errors(settings: dict[str, str],
                                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ml_filter(**settings)


def test_config_error_through_the_pipeline() -> None:
    with pytest.raises(ConfigError, match="not registered"):
        make_pipeline(inputs=[{"name": "dummy"}],
                      filters=[{"name": "multiline", "match": "*", "multiline.parser": "x"}],
                      outputs=[{"name": "null", "match": "*"}])


# --- through the engine --------------------------------------------------------------------

def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 30))
    return wrapper


def setup(flush_ms: int, key: str) -> tuple[Feed, Sink, Any]:
    plugins.STATE[f"in-{key}"] = f = Feed()
    plugins.STATE[f"out-{key}"] = s = Sink()
    pipeline = make_pipeline(
        inputs=[{"name": "test_feed", "id": f"in-{key}"}],
        filters=[{"name": "multiline", "match": "*", "multiline.parser": "java",
                  "multiline.key_content": "log", "flush_ms": flush_ms},
                 {"name": "test_mark", "match": "*", "mark": "after"}],
        outputs=[{"name": "test_sink", "id": f"out-{key}", "match": "*"}])
    return f, s, pipeline


@async_test
async def test_engine_holds_acks_until_the_joined_record_is_delivered() -> None:
    f, s, pipeline = setup(60_000, "hold")
    s.gate = asyncio.Event()
    async with running(pipeline):
        f.put(mk_batch([rec("one\n"), *[rec(x) for x in JAVA[:2]]], ack="b1"))
        await wait_for(lambda: len(s.calls) == 1)
        assert [b["log"] for b in s.calls[0][1]] == ["one\n"]
        s.gate.set()
        await asyncio.sleep(0.2)
        assert f.acks == []  # b1's trace lines are still in the filter
        f.put(mk_batch([*[rec(x) for x in JAVA[2:]], rec("two\n")], ack="b2"))
        await wait_for(lambda: len(s.delivered) == 3)
        await wait_for(lambda: sorted(f.acks) == [("b1", True), ("b2", True)])
    assert [b["log"] for b in s.delivered] == ["one\n", "".join(JAVA), "two\n"]
    assert all(b["marks"] == ["after"] for b in s.delivered)


@async_test
async def test_engine_ticks_release_a_message_after_flush_ms() -> None:
    f, s, pipeline = setup(500, "tick")
    async with running(pipeline) as engine:
        f.put(mk_batch([rec(x) for x in JAVA[:3]], ack="b1"))
        await wait_for(lambda: len(s.delivered) == 1, timeout=5)
        assert s.delivered[0]["log"] == "".join(JAVA[:3])
        # Released records continue through the filters after the multiline filter only.
        assert s.delivered[0]["marks"] == ["after"]
        await wait_for(lambda: f.acks == [("b1", True)])
        counters = engine.pipeline.metrics.snapshot()["filter"]
        assert counters["multiline.0"]["emit_records"] == 1


@async_test
async def test_engine_shutdown_releases_pending_messages() -> None:
    f, s, pipeline = setup(60_000, "stop")
    async with running(pipeline):
        f.put(mk_batch([rec(x) for x in JAVA[:4]], ack="b1"))
        await wait_for(lambda: f.queue.empty() and not f.emitting)
        await asyncio.sleep(0.1)
        assert s.delivered == []
    assert [b["log"] for b in s.delivered] == ["".join(JAVA[:4])]
    assert f.acks == [("b1", True)]


def test_ack_tokens_shared_between_batches_reach_the_input_once() -> None:
    ref = AckRef("tok", owner=None).hold(2)
    chunk = Chunk("t", "in")
    chunk.append(Batch("t", [1], [{}], 1, AckList([ref])))
    chunk.append(Batch("t", [1], [{}], 1, ref))
    assert chunk.acks == [ref, ref]
    assert not ref.release(True) and not ref.release(False) and ref.release(True)
    assert ref.complete is False
