"""The ``rewrite_tag`` filter and its ``emitter`` input: rules with record accessor keys, $n
groups and $TAG parts, KEEP, the emitter's limit and name, loops guarded per Recursion_Action,
and end to end through the engine: re-emitted records are routed by their new tag and the source
input is acknowledged only once they are delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from rillet.config.loader import load_config
from rillet.config.model import ConfigError, ConfigModel, Section
from rillet.engine.chunk import AckRef, Batch, body_dict
from rillet.engine.pipeline import Pipeline, build
from rillet.filters.rewrite_tag import RewriteTagFilter
from rillet.inputs.emitter import Emitter, Upstream
from tests.engine import plugins
from tests.engine.harness import make_model, running, wait_for
from tests.engine.plugins import Feed, Sink
from tests.filters.filter_kit import batch, config_error, configure
from tests.plugin_kit import make_plugin

RECS = [
    {"log": "ok", "level": "info", "kubernetes": {"labels": {"app": "web"}}},
    {"log": "boom", "level": "error", "kubernetes": {"labels": {"app": "api"}}},
    {"log": "warn x", "level": "warning", "kubernetes": {"labels": {"app": "api"}}},
]


def rewrite(*rules: str, **settings: str) -> tuple[RewriteTagFilter, Emitter]:
    f = configure(RewriteTagFilter, *(("Rule", r) for r in rules), match="app.*", **settings)
    emitter = make_plugin(Emitter)
    f.attach_emitter(emitter)
    return f, emitter


def emitted(emitter: Emitter) -> list[tuple[str, list[Any]]]:
    return [(b.tag, [orjson.loads(x) for x in b.bodies]) for b in emitter.pending]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_groups_tag_parts_and_keep(as_bytes: bool) -> None:
    f, em = rewrite(r"$level ^(error|warn)\w*$ alerts.$1.$TAG[1] false")
    out = f.filter(batch(RECS, tag="app.prod", as_bytes=as_bytes))
    assert len(out.bodies) == 1 and len(out.times) == 1
    assert emitted(em) == [("alerts.error.prod", [RECS[1]]), ("alerts.warn.prod", [RECS[2]])]
    assert f.counters["emit_records"] == 2
    f, em = rewrite(r"$level ^error$ copy.$TAG true")
    out = f.filter(batch(RECS, tag="app.prod", as_bytes=as_bytes))
    assert len(out.bodies) == 3
    assert emitted(em) == [("copy.app.prod", [RECS[1]])]


def test_record_accessor_key_and_first_rule_wins() -> None:
    f, em = rewrite("$kubernetes['labels']['app'] ^(api)$ team.$kubernetes['labels']['app'] "
                    "false", "$log .* other false")
    out = f.filter(batch(RECS))
    assert out.bodies == []
    assert [t for t, _ in emitted(em)] == ["other", "team.api"]
    assert [len(r) for _, r in emitted(em)] == [1, 2]


def test_emitted_copies_are_independent_and_missing_values_print_empty() -> None:
    f, em = rewrite("$log ^ok$ x.$nope.$2 true")
    b = batch(RECS[:1])
    f.filter(b)
    (tag, recs), = emitted(em)
    assert tag == "x.."
    recs[0]["log"] = "changed"
    assert b.bodies[0]["log"] == "ok"  # type: ignore[index,call-overload]


def test_regex_with_spaces_in_quotes() -> None:
    f, em = rewrite('$log "^warn x$" w false')
    assert len(f.filter(batch(RECS)).bodies) == 2
    assert emitted(em)[0][0] == "w"


def test_recursion_actions(caplog: pytest.LogCaptureFixture) -> None:
    rule = "$level ^error$ app.$level false"
    f, em = rewrite(rule, recursion_action="drop")
    assert len(f.filter(batch(RECS)).bodies) == 2 and not em.pending
    f, em = rewrite(rule, recursion_action="drop_and_log")
    f.filter(batch(RECS))
    assert "recursion occurred. tag=app.error" in caplog.text and not em.pending
    f, em = rewrite(rule, recursion_action="none")
    f.filter(batch(RECS))
    assert emitted(em) == [("app.error", [RECS[1]])]
    f, em = rewrite(rule)  # exit: the record stays, the agent is asked to stop

    class Ctx:
        exits = 0

        def request_exit(self) -> None:
            Ctx.exits += 1
    em.ctx = Ctx()  # type: ignore[assignment]
    assert len(f.filter(batch(RECS)).bodies) == 3
    assert Ctx.exits == 1 and not em.pending


def test_emitter_limit_keeps_records_in_place() -> None:
    f, em = rewrite("$level .* x false", emitter_mem_buf_limit="100")
    out = f.filter(batch(RECS, as_bytes=True))
    assert len(em.pending) == 1 and len(em.pending[0]) == 1  # ~95 bytes fit
    assert len(out.bodies) == 2
    assert f.counters["emit_refused"] == 2


def test_acks_are_held_by_the_emitted_batch() -> None:
    plugins.STATE["rt-unit"] = feed = Feed()

    class Runtime:  # the shape of the engine's input runtime: .inst.plugin
        class inst:
            plugin = make_plugin(plugins.FeedInput, id="rt-unit")
    f, em = rewrite("$level ^error$ x false")
    ref = AckRef("tok", Runtime())
    f.filter(batch(RECS, ack=ref))
    assert ref.holds == 2
    ref.release(True)  # the original batch is done
    assert feed.acks == []
    (b,) = em.pending
    assert type(b.ack) is Upstream
    em.on_ack(b.ack, False)  # the re-emitted copy was given up on
    assert ref.holds == 0
    assert feed.acks == [("tok", False)]


def test_options_and_config_errors() -> None:
    f, _ = rewrite("$a b c true", emitter_name="re_emitted", **{"emitter_storage.type":
                                                               "filesystem"})
    assert f.emitter_request() == ("re_emitted", 10_000_000, "filesystem")
    assert "at least one Rule" in config_error(RewriteTagFilter)
    assert "expected '$KEY REGEX NEW_TAG KEEP'" in config_error(RewriteTagFilter,
                                                               ("Rule", "$a b c"))
    assert "rule '$a (x c true'" in config_error(RewriteTagFilter, ("Rule", "$a (x c true"))
    assert "rule '$a b c maybe'" in config_error(RewriteTagFilter, ("Rule", "$a b c maybe"))


# --- through the engine ----------------------------------------------------------------------

def build_with(model: ConfigModel, filters: list[list[tuple[str, str]]]) -> Pipeline:
    """``model`` with filter sections given as ordered (key, value) pairs (keys repeat)."""
    for pairs in filters:
        sec = Section("filter", "test.conf", 1)
        for key, value in pairs:
            sec.set(key, value, "test.conf", 1)
        model.filters.append(sec)
    return build(model)


def test_engine_routes_by_new_tag_and_holds_source_ack() -> None:
    async def main() -> None:
        plugins.STATE["rt-in"] = feed = Feed()
        plugins.STATE["rt-app"] = app = Sink()
        plugins.STATE["rt-alerts"] = alerts = Sink()
        alerts.gate = asyncio.Event()
        pipeline = build_with(make_model(
            inputs=[{"name": "test_feed", "id": "rt-in", "tag": "app.prod"}],
            outputs=[{"name": "test_sink", "id": "rt-app", "match": "app.*"},
                     {"name": "test_sink", "id": "rt-alerts", "match": "alerts.*"}]),
            [[("name", "rewrite_tag"), ("match", "app.*"),
                      ("rule", "$level ^(error)$ alerts.$1 false"),
                      ("rule", "$level ^warning$ alerts.warn true"),
                      ("emitter_name", "re_em"), ("emitter_mem_buf_limit", "1M")],
             # Only the copies (tag alerts.*) pass here: they re-entered from the start.
             [("name", "modify"), ("match", "alerts.*"), ("add", "routed alerts")]])
        assert [i.name for i in pipeline.inputs] == ["test_feed.0", "re_em"]
        assert pipeline.inputs[1].mem_buf_limit == 1_000_000
        async with running(pipeline):
            feed.put(Batch("app.prod", [1, 2, 3], [dict(r) for r in RECS], 300, "t1"))
            await wait_for(lambda: len(app.delivered) == 2 and len(alerts.calls) >= 1)
            await asyncio.sleep(0.1)
            assert feed.acks == []  # the alerts copies are not delivered yet
            alerts.gate.set()
            await wait_for(lambda: feed.acks == [("t1", True)])
        got = sorted((body_dict(b)["log"], body_dict(b)["routed"]) for b in alerts.delivered)
        assert got == [("boom", "alerts"), ("warn x", "alerts")]
        assert sorted(body_dict(b)["log"] for b in app.delivered) == ["ok", "warn x"]
        assert all("routed" not in body_dict(b) for b in app.delivered)
    asyncio.run(main())


def test_engine_emitter_name_collision_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        build_with(make_model(
            inputs=[{"name": "test_feed", "id": "x", "alias": "dup"}],
            outputs=[{"name": "test_sink", "id": "y", "match": "*"}]),
            [[("name", "rewrite_tag"), ("match", "*"), ("rule", "$a b c true"),
              ("emitter_name", "dup")]])
    assert "emitter_name 'dup' already exists" in str(info.value)


def test_classic_configuration_file_with_every_common_filter(tmp_path: Path) -> None:
    """A Fluent Bit classic file: repeated Rule/Regex/rule keys, $ groups and accessors."""
    plugins.STATE["cf-out"] = sink = Sink()
    plugins.STATE["cf-alerts"] = alerts = Sink()
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text("""
[SERVICE]
    Flush 0.05
    Grace 2

[INPUT]
    Name   dummy
    Tag    app.web
    Dummy  {"log": "ERROR disk full", "level": "error", "k8s": {"app": "web"}, "n": 1}
    Samples 1

[FILTER]
    Name   rewrite_tag
    Match  app.*
    Rule   $level ^(error)$ alerts.$1.$k8s['app'] true

[FILTER]
    Name   grep
    Match  *
    Regex  $k8s['app'] ^web$
    Exclude log ^DEBUG

[FILTER]
    Name   modify
    Match  *
    Rename n count
    Set    cluster prod

[FILTER]
    Name   nest
    Match  alerts.*
    Operation nest
    Wildcard level
    Wildcard count
    Nest_under meta

[FILTER]
    Name   record_modifier
    Match  app.*
    Remove_key k8s

[FILTER]
    Name   lua
    Match  alerts.*
    code   function f(tag, ts, r) r["tag"] = tag return 2, ts, r end
    call   f

[FILTER]
    Name   throttle
    Match  *
    Rate   100

[OUTPUT]
    Name   test_sink
    Match  app.*
    id     cf-out

[OUTPUT]
    Name   test_sink
    Match  alerts.*
    id     cf-alerts
""")
    pipeline = build(load_config(str(conf)))

    async def main() -> None:
        async with running(pipeline):
            await wait_for(lambda: sink.delivered and alerts.delivered)
    asyncio.run(main())
    assert [body_dict(b) for b in sink.delivered] == [
        {"log": "ERROR disk full", "level": "error", "count": 1, "cluster": "prod"}]
    assert [body_dict(b) for b in alerts.delivered] == [
        {"log": "ERROR disk full", "k8s": {"app": "web"}, "cluster": "prod",
         "meta": {"level": "error", "count": 1}, "tag": "alerts.error.web"}]


def test_emitter_sends_in_order_and_drains_at_shutdown() -> None:
    class Ctx:
        def __init__(self) -> None:
            self.got: list[str] = []
            self.paused = False

        async def emit(self, batch: Batch) -> None:
            self.got.append(batch.tag)
            await asyncio.sleep(0)

    async def main() -> None:
        em = make_plugin(Emitter)
        ctx = Ctx()
        task = asyncio.create_task(em.run(ctx))  # type: ignore[arg-type]
        em.add(Batch("a", [1], [b"{}"], 2))
        em.add(Batch("b", [1], [b"{}"], 2))
        await wait_for(lambda: ctx.got == ["a", "b"])
        assert em.pending_bytes == 0
        # Added just before the stop: still sent while the engine drains.
        em.add(Batch("c", [1], [b"{}"], 2))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ctx.got == ["a", "b", "c"]
        assert em.closed and not em.room(1)  # a stopped emitter takes nothing more

        # Paused at shutdown: nothing is forced through; the records stay unacknowledged.
        em2 = make_plugin(Emitter)
        ctx2 = Ctx()
        blocked = asyncio.Event()

        async def emit_and_pause(batch: Batch) -> None:
            ctx2.got.append(batch.tag)
            ctx2.paused = True  # the emitter's Mem_Buf_Limit was reached
            blocked.set()
            await asyncio.Event().wait()
        ctx2.emit = emit_and_pause  # type: ignore[method-assign]
        task2 = asyncio.create_task(em2.run(ctx2))  # type: ignore[arg-type]
        em2.add(Batch("d", [1], [b"{}"], 2))
        await blocked.wait()
        em2.add(Batch("e", [1], [b"{}"], 2))
        task2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task2
        assert ctx2.got == ["d"] and [b.tag for b in em2.pending] == ["e"]
    asyncio.run(main())


def test_stopped_emitter_keeps_records_in_place() -> None:
    f, em = rewrite("$level ^error$ x false")
    em.closed = True
    out = f.filter(batch(RECS))
    assert len(out.bodies) == 3 and not em.pending
    assert f.counters["emit_refused"] == 1


def test_emitter_storage_filesystem_writes_the_copies_to_storage_path(tmp_path: Path) -> None:
    """Emitter_Storage.type filesystem: the re-emitted copies are chunk files under
    storage.path/<emitter>/ until delivered (and the source is acknowledged once they are on
    disk, the filesystem model), and it needs storage.path like any filesystem input."""
    async def main() -> None:
        plugins.STATE["fs-in"] = feed = Feed()
        plugins.STATE["fs-alerts"] = alerts = Sink()
        alerts.gate = asyncio.Event()
        pipeline = build_with(make_model(
            service={"storage.path": str(tmp_path)},
            inputs=[{"name": "test_feed", "id": "fs-in", "tag": "app.prod"}],
            outputs=[{"name": "test_sink", "id": "fs-alerts", "match": "alerts.*"}]),
            [[("name", "rewrite_tag"), ("match", "app.*"),
              ("rule", "$level ^(error)$ alerts.$1 false"),
              ("emitter_name", "fs_em"), ("emitter_storage.type", "filesystem")]])
        assert pipeline.inputs[1].storage == "filesystem"
        async with running(pipeline):
            feed.put(Batch("app.prod", [1, 2, 3], [dict(r) for r in RECS], 300, "t1"))
            await wait_for(lambda: list((tmp_path / "fs_em").glob("*.flb")), timeout=5)
            await wait_for(lambda: feed.acks == [("t1", True)])  # copies durable on disk
            assert alerts.delivered == []
            alerts.gate.set()
            await wait_for(lambda: len(alerts.delivered) == 1)
            await wait_for(lambda: not list((tmp_path / "fs_em").glob("*.flb")))
        assert body_dict(alerts.delivered[0])["log"] == "boom"
    asyncio.run(main())
    with pytest.raises(ConfigError, match=r"emitter_storage\.type.*needs storage\.path"):
        build_with(make_model(
            inputs=[{"name": "test_feed", "id": "x2"}],
            outputs=[{"name": "test_sink", "id": "y2", "match": "*"}]),
            [[("name", "rewrite_tag"), ("match", "*"), ("rule", "$a b c true"),
              ("emitter_storage.type", "filesystem")]])
