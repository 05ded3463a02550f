"""The kubernetes filter, called directly: identity from tags, blocks, Merge_Log, annotations,
holding records for metadata not known yet, options and their errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from rillet.config.model import Section
from rillet.config.options import resolve
from rillet.engine.chunk import AckList, AckRef, Batch
from rillet.engine.metrics import BY_KIND, Counters
from rillet.engine.plugin import full_table, lookup
from rillet.filters.kubernetes import KubernetesFilter
from rillet.filters.kubernetes import merge as mg
from rillet.filters.kubernetes import render as rd
from rillet.filters.kubernetes.preload import ChainSource, PreloadSource
from rillet.filters.kubernetes.source import Entry
from rillet.filters.kubernetes.tag import Identity
from rillet.parsers.definitions import PARSER_OPTIONS
from rillet.parsers.registry import ParserRegistry

DOCKER_ID = "ab" * 32
TAG = f"kube.var.log.containers.web-1_shop_nginx-{DOCKER_ID}.log"
T0 = 1_600_000_000_000_000_000

POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                 "labels": {"app": "web"},
                 "annotations": {"fluentbit.io/parser": "nginx"},
                 "ownerReferences": [{"kind": "ReplicaSet", "name": "web"}]},
    "spec": {"nodeName": "node-a"},
    "status": {"podIP": "10.0.0.7", "containerStatuses": [
        {"containerID": "containerd://" + "cd" * 32, "image": "other:1",
         "imageID": "docker.io/other@sha256:00", "name": "sidecar"},
        {"containerID": "docker://" + DOCKER_ID, "image": "nginx:1.25",
         "imageID": "docker-pullable://docker.io/nginx@sha256:ff", "name": "nginx"}]},
}
NGINX_LINE = ('10.1.2.3 - - [19/Dec/2019:17:41:12 +0000] "GET / HTTP/1.1" 200 612 "-" '
              '"hey/0.0.1" "52.95.4.2"\n')


class FakeSource:
    """A MetaSource answering from a dict; a missing key answers None (not known yet)."""

    def __init__(self, answers: dict[tuple[str, str, str], Entry] | None = None) -> None:
        self.answers = answers or {}
        self.lookups = 0
        self.started = self.stopped = False

    async def start(self, wait: float) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def lookup(self, kind: Any, namespace: str, name: str) -> Entry | None:
        self.lookups += 1
        return self.answers.get((kind, namespace, name))


def registry(**defs: dict[str, str]) -> ParserRegistry:
    parsed = {}
    for name, props in defs.items():
        sec = Section("parser", "test.conf", 1)
        sec.set("name", name)
        for k, v in props.items():
            sec.set(k, v)
        errors: list[str] = []
        parsed[name] = resolve(sec, PARSER_OPTIONS, errors, ignore=())
        assert errors == []
    return ParserRegistry(parsed)


def make(parsers: ParserRegistry | None = None, source: Any = None,
         opts: dict[str, str] | None = None, **settings: str) -> KubernetesFilter:
    """The filter with these settings (``opts`` for names that are not identifiers)."""
    section = Section("filter", "test.conf", 1)
    section.set("name", "kubernetes")
    for key, value in {"kube_url": "http://127.0.0.1:9", **settings, **(opts or {})}.items():
        section.set(key, value)
    errors: list[str] = []
    opts = resolve(section, full_table(KubernetesFilter), errors)
    assert errors == []
    flt = KubernetesFilter("kubernetes.0", opts, logging.getLogger("test.k8s"),
                           Counters(BY_KIND["filter"]), parsers or ParserRegistry())
    if source is not None:
        flt.source = source
    return flt


def known(pod: dict[str, Any] = POD, version: int = 1) -> FakeSource:
    return FakeSource({("pod", "shop", "web-1"): Entry(pod, version)})


def records(batch: Batch) -> list[dict[str, Any]]:
    return [orjson.loads(b) if isinstance(b, bytes) else b for b in batch.bodies]


def batch(*bodies: Any, tag: str = TAG, ack: Any = None) -> Batch:
    return Batch(tag, [T0 + i for i in range(len(bodies))], list(bodies), 100, ack)


# -- identity ---------------------------------------------------------------------------------

def test_block_layout_and_order() -> None:
    flt = make(source=known(), owner_references="on")
    out = records(flt.filter(batch({"log": "x\n", "stream": "stdout"})))
    assert list(out[0]) == ["log", "stream", "kubernetes"]
    k = out[0]["kubernetes"]
    assert list(k) == ["pod_name", "namespace_name", "pod_id", "labels", "annotations",
                       "ownerReferences", "host", "pod_ip", "container_name", "docker_id",
                       "container_hash", "container_image"]
    assert k["docker_id"] == DOCKER_ID  # from the tag
    assert k["container_hash"] == "docker.io/nginx@sha256:ff"  # scheme cut, own container
    assert k["container_image"] == "nginx:1.25"


def test_labels_annotations_off_and_missing_fields_omitted() -> None:
    pod = {"metadata": {"uid": "u"}, "status": {}}
    flt = make(source=known(pod), labels="off", annotations="off")
    k = records(flt.filter(batch({"log": "x"})))[0]["kubernetes"]
    assert k == {"pod_name": "web-1", "namespace_name": "shop", "pod_id": "u",
                 "container_name": "nginx", "docker_id": DOCKER_ID}


def test_docker_id_from_init_container_status_without_tag_id() -> None:
    pod = {"metadata": {}, "status": {"initContainerStatuses": [
        {"name": "init", "containerID": "containerd://" + "ef" * 32, "imageID": "sha256:aa",
         "image": "busybox"}]}}
    block = rd.pod_block(Identity("ns", "p", "init"), pod, rd.RenderOptions())
    assert block["docker_id"] == "ef" * 32
    assert block["container_hash"] == "sha256:aa"  # no '//': kept whole (Fluent Bit)


@pytest.mark.parametrize(("value", "want"), [
    ("docker://abc", "abc"), ("containerd://abc", "abc"), ("sha256:abc", "sha256:abc"),
    ("repo@sha256:abc", "repo@sha256:abc"), ("noscheme", None), ("", None), (None, None)])
def test_strip_scheme(value: Any, want: str | None) -> None:
    assert rd.strip_scheme(value) == want


def test_tag_without_prefix_passes_unchanged_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    flt = make(source=known())
    body = {"log": "x"}
    for _ in range(3):
        out = flt.filter(batch(dict(body), tag="app.other.tag"))
        assert out.bodies == [body]
    warnings = [r for r in caplog.records if "does not start with Kube_Tag_Prefix" in r.message]
    assert len(warnings) == 1
    assert flt.counters["kube_unenriched_records"] == 3


def test_invalid_pattern_passes_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    flt = make(source=known())
    out = flt.filter(batch({"log": "x"}, tag="kube.var.log.containers.not-a-k8s-file.log"))
    assert out.bodies == [{"log": "x"}]
    assert any("invalid pattern for given tag" in r.message for r in caplog.records)


def test_var_log_pods_paths() -> None:
    uid = "0209da6c-460c-4339-942d-a6d0adfd295b"
    flt = make(source=known())
    for tag in (f"kube.var.log.pods.shop_web-1_{uid}.nginx.0.log",
                f"/var/log/pods/shop_web-1_{uid}/nginx/3.log"):
        k = records(flt.filter(batch({"log": "x"}, tag=tag)))[0]["kubernetes"]
        assert (k["pod_name"], k["namespace_name"], k["container_name"]) == \
            ("web-1", "shop", "nginx")
        assert k["docker_id"] == DOCKER_ID  # from containerStatuses


def test_regex_parser_must_be_regex_and_known() -> None:
    tag_rx = r"^(?<namespace_name>[^.]+)\.(?<pod_name>.+)$"
    reg = registry(tagrx={"format": "regex", "regex": tag_rx}, js={"format": "json"})
    with pytest.raises(ValueError, match="not a regex parser"):
        make(reg, regex_parser="js")
    with pytest.raises(ValueError, match="invalid parser 'nope'"):
        make(reg, regex_parser="nope")
    with pytest.raises(ValueError, match="merge_parser"):
        make(reg, merge_parser="nope")
    flt = make(reg, regex_parser="tagrx", kube_tag_prefix="k.",
               source=FakeSource({("pod", "shop", "web-1"): Entry(POD, 1)}))
    k = records(flt.filter(batch({"a": 1}, tag="k.shop.web-1")))[0]["kubernetes"]
    assert k["pod_name"] == "web-1" and "container_name" not in k


# -- bodies -----------------------------------------------------------------------------------

def test_serialized_bodies_are_spliced_not_decoded() -> None:
    flt = make(source=known(), labels="off", annotations="off")
    out = flt.filter(batch(b'{"log":"a"}', b"{}", b"[1]"))
    assert all(isinstance(b, bytes) for b in out.bodies)
    assert isinstance(out.bodies[0], bytes) and isinstance(out.bodies[1], bytes)
    assert out.bodies[0].startswith(b'{"log":"a","kubernetes":{"pod_name":"web-1"')
    assert out.bodies[1].startswith(b'{"kubernetes":{')
    assert orjson.loads(out.bodies[1])["kubernetes"]["pod_id"] == "u-1"
    assert out.bodies[2] == b"[1]"


def test_api_failure_no_block_but_merge_applied() -> None:
    src = FakeSource({("pod", "shop", "web-1"): Entry(None, 3, "unreachable")})
    flt = make(source=src, merge_log="on")
    out = records(flt.filter(batch({"log": '{"a":1}\n'})))
    assert out == [{"log": '{"a":1}\n', "a": 1}]
    assert flt.counters["kube_unenriched_records"] == 1


# -- Merge_Log --------------------------------------------------------------------------------

def test_merge_log_json_objects_only() -> None:
    flt = make(source=known(), merge_log="on", merge_log_key="data", annotations="off",
               labels="off")
    out = records(flt.filter(batch({"log": '{"a":"x\\n","b":[1]}\n', "stream": "stderr"},
                                   {"log": "[1,2]\n"}, {"log": "plain\n"},
                                   {"log": "  {\"sp\": true}"})))
    assert out[0]["data"] == {"a": "x", "b": [1]} and list(out[0])[:3] == ["log", "stream", "data"]
    assert "data" not in out[1] and "data" not in out[2]
    assert out[3]["data"] == {"sp": True}


def test_merge_log_map_keep_log_off_and_parser_time() -> None:
    reg = registry(kv={"format": "regex", "regex": r"^(?<k>\w+)=(?<v>\S+) at (?<time>\S+)$",
                       "time_key": "time", "time_format": "%Y-%m-%dT%H:%M:%S"},
                   notime={"format": "regex", "regex": r"^(?<word>\w+)"})
    flt = make(reg, source=known(), merge_log="on", keep_log="off", merge_parser="kv")
    out = flt.filter(batch({"log": {"inner": 1}, "s": 1},
                           {"log": "key=val at 2020-01-02T03:04:05\n"},
                           {"log": "does not match\n"}))
    recs = records(out)
    assert recs[0]["inner"] == 1 and "log" not in recs[0]
    assert recs[1]["k"] == "key" and recs[1]["v"] == "val" and "log" not in recs[1]
    assert out.times[1] == 1_577_934_245_000_000_000
    assert recs[2]["log"] == "does not match\n" and out.times[2] == T0 + 2
    # A parser without a time: the record gets the current time (Fluent Bit).
    flt2 = make(reg, source=known(), merge_log="on", merge_parser="notime")
    out2 = flt2.filter(batch({"log": "hello there"}))
    assert records(out2)[0]["word"] == "hello" and out2.times[0] > T0


@pytest.mark.parametrize(("value", "want"), [
    ("abc\n", "abc"), ("abc\n\n", "abc"), ("abc\\n", "abc"), ("abc\\r\\n", "abc"),
    ("abc\r\n", "abc\r"), ("\n", "\n"), ("", ""), ("n", "n"), ("x\\n\n", "x")])
def test_trim(value: str, want: str) -> None:
    assert mg.trim(value) == want


def test_json_object_accepts_raw_control_characters() -> None:
    assert mg.json_object('{"a":"line\nbreak"}\n') == {"a": "line\nbreak"}
    assert mg.json_object('{"a":1}{"b":2}') is None
    assert mg.json_object("[1]") is None


# -- annotations ------------------------------------------------------------------------------

def _props(annotations: dict[str, str], container: str = "c1",
           **kw: Any) -> tuple[mg.Props, list[str]]:
    warned: list[str] = []
    reg = ParserRegistry()
    args = {"parser_on": True, "exclude_on": True, "merge_log": True, **kw}
    props = mg.annotation_props(annotations, container, get_parser=reg.get,
                                warn=warned.append, **args)
    return props, warned


def test_annotation_precedence() -> None:
    props, warned = _props({"fluentbit.io/parser_stdout-c1": "json",
                            "fluentbit.io/parser": "nginx",
                            "fluentbit.io/parser-c1": "apache",
                            "fluentbit.io/exclude_stderr": "yes",
                            "fluentbit.io/exclude-c2": "true"})
    assert warned == []
    assert props.parser_out is not None and props.parser_out.name == "json"
    assert props.parser_err is not None and props.parser_err.name == "apache"
    assert props.parser_any is None  # streams differ
    assert (props.exclude_out, props.exclude_err, props.exclude_any) == (False, True, False)


def test_annotation_warnings() -> None:
    _, warned = _props({"fluentbit.io/parser": "no-such-parser",
                        "fluentbit.io/exclude": "maybe", "fluentbit.io/exclude_": "true",
                        "fluentbit.io/other": "x", "unrelated/key": "x"})
    assert len(warned) == 4
    _, off = _props({"fluentbit.io/parser": "json", "fluentbit.io/exclude": "true"},
                    parser_on=False, exclude_on=False)
    assert all("not allowed" in w for w in off) and len(off) == 2
    _, no_merge = _props({"fluentbit.io/parser": "json"}, merge_log=False)
    assert "Merge_Log is Off" in no_merge[0]


def test_exclusion_by_stream_and_records_without_stream() -> None:
    pod = {"metadata": {"annotations": {"fluentbit.io/exclude_stdout": "true"}}}
    flt = make(source=known(pod), opts={"k8s-logging.exclude": "on"})
    out = records(flt.filter(batch({"log": "a", "stream": "stdout"},
                                   {"log": "b", "stream": "stderr"}, {"log": "c"})))
    assert [r["log"] for r in out] == ["b", "c"]
    assert flt.counters["kube_excluded_records"] == 1
    pod2 = {"metadata": {"annotations": {"fluentbit.io/exclude": "on"}}}
    flt2 = make(source=known(pod2), opts={"k8s-logging.exclude": "on"})
    assert flt2.filter(batch({"log": "c"}, b'{"stream":"stderr"}')).bodies == []


def test_annotation_parser_per_stream() -> None:
    flt = make(source=known(), merge_log="on", merge_log_key="data",
               opts={"k8s-logging.parser": "on"})
    out = flt.filter(batch({"log": NGINX_LINE, "stream": "stdout"}))
    rec = records(out)[0]
    assert rec["data"]["agent"] == "hey/0.0.1" and rec["data"]["code"] == "200"
    assert out.times[0] == 1_576_777_272_000_000_000


def test_namespace_block_and_namespace_exclude() -> None:
    ns = {"metadata": {"labels": {"team": "a"}, "annotations": {"fluentbit.io/exclude": "true",
                                                                "x": "y"}}}
    src = known()
    src.answers[("namespace", "shop", "shop")] = Entry(ns, 1)
    flt = make(source=src, namespace_labels="on")
    rec = records(flt.filter(batch({"log": "a"})))[0]
    assert list(rec) == ["log", "kubernetes", "kubernetes_namespace"]
    assert rec["kubernetes_namespace"] == {"name": "shop", "labels": {"team": "a"}}
    flt2 = make(source=src, namespace_exclude="on", opts={"k8s-logging.exclude": "on"})
    assert flt2.filter(batch({"log": "a"})).bodies == []


# -- holding records while metadata is not known yet -------------------------------------------

def test_hold_until_known_keeps_order_and_acks() -> None:
    src = FakeSource()
    flt = make(source=src, kube_meta_wait="5s", labels="off", annotations="off")
    a, b = AckRef("a"), AckRef("b")
    first = flt.filter(batch({"n": 1}, ack=a))
    assert first.bodies == [] and first.ack is None
    assert flt.filter(batch({"n": 2}, ack=b)).bodies == []
    assert flt.tick() == []  # still unknown, deadline not reached
    src.answers[("pod", "shop", "web-1")] = Entry(POD, 1)
    released = flt.tick()
    assert len(released) == 1
    assert [r["n"] for r in records(released[0])] == [1, 2]
    assert all("kubernetes" in r for r in records(released[0]))
    assert isinstance(released[0].ack, AckList) and list(released[0].ack) == [a, b]
    assert flt.counters["kube_held_batches"] == 2


def test_hold_released_by_next_batch_in_order() -> None:
    src = FakeSource()
    flt = make(source=src, kube_meta_wait="5s")
    flt.filter(batch({"n": 1}))
    src.answers[("pod", "shop", "web-1")] = Entry(POD, 1)
    out = flt.filter(batch({"n": 2}))
    assert [r["n"] for r in records(out)] == [1, 2]


def test_wait_expires_records_go_on_unenriched_and_no_second_hold() -> None:
    src = FakeSource()
    flt = make(source=src, kube_meta_wait="0.01")
    flt.filter(batch({"n": 1}))
    asyncio.run(asyncio.sleep(0.02))
    out = flt.tick()
    assert [r for r in records(out[0])] == [{"n": 1}]
    assert flt.counters["kube_wait_timeouts"] == 1
    assert flt.counters["kube_unenriched_records"] == 1
    # Right after a timeout the tag is not held again: records flow.
    assert records(flt.filter(batch({"n": 2}))) == [{"n": 2}]


def test_final_tick_releases_everything() -> None:
    flt = make(source=FakeSource(), kube_meta_wait="60")
    flt.filter(batch({"n": 1}))
    assert records(flt.tick(final=True)[0]) == [{"n": 1}]


def test_new_version_rerenders_block() -> None:
    src = known()
    flt = make(source=src)
    k1 = records(flt.filter(batch({"a": 1})))[0]["kubernetes"]
    pod2 = {**POD, "metadata": {**POD["metadata"], "labels": {"app": "v2"}}}
    src.answers[("pod", "shop", "web-1")] = Entry(pod2, 2)
    k2 = records(flt.filter(batch({"a": 1})))[0]["kubernetes"]
    assert k1["labels"] == {"app": "web"} and k2["labels"] == {"app": "v2"}


# -- other modes ------------------------------------------------------------------------------

def test_dummy_meta_and_tag_meta() -> None:
    rec = records(make(dummy_meta="on").filter(batch({"a": 1})))[0]
    assert list(rec["kubernetes"]) == ["dummy"]
    rec = records(make(use_tag_for_meta="on").filter(batch({"a": 1})))[0]
    assert rec["kubernetes"] == {"pod_name": "web-1", "namespace_name": "shop",
                                 "container_name": "nginx", "docker_id": DOCKER_ID}


def test_use_journal() -> None:
    name = "k8s_nginx_web-1_shop_d6c53deb-05a4-11e8-a8c4-080027435fb7_23"
    flt = make(source=known(), use_journal="on")
    out = records(flt.filter(batch({"CONTAINER_NAME": name, "MESSAGE": "m"}, {"MESSAGE": "x"},
                                   tag="journal")))
    assert out[0]["kubernetes"]["pod_name"] == "web-1"
    assert out[0]["kubernetes"]["container_name"] == "nginx"
    assert out[1] == {"MESSAGE": "x"}


def test_aws_pod_association_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    make(aws_use_pod_association="on")
    make(use_pod_association="on")
    assert sum("not implemented" in r.message for r in caplog.records) == 2


def test_trace_with_pod_and_lifecycle() -> None:
    flt = make()
    flt.trace_with_pod(POD)

    async def go() -> None:
        await flt.start()
        rec = records(flt.filter(batch({"a": 1})))[0]
        assert rec["kubernetes"]["pod_ip"] == "10.0.0.7"
        await flt.stop()

    asyncio.run(go())


def test_preload_then_api(tmp_path: Any) -> None:
    (tmp_path / "shop_web-1.meta").write_bytes(orjson.dumps(POD))
    (tmp_path / "bad_pod.meta").write_text("{not json")
    api = FakeSource({("pod", "other", "p"): Entry({"metadata": {"uid": "api"}}, 4)})
    chain = ChainSource(PreloadSource(str(tmp_path), logging.getLogger("t")), api)
    entry = chain.lookup("pod", "shop", "web-1")
    assert entry is not None and entry.obj == POD
    entry = chain.lookup("pod", "other", "p")
    assert entry is not None and entry.obj == {"metadata": {"uid": "api"}}
    assert chain.lookup("pod", "bad", "pod") is None  # unreadable file: the API is asked
    assert chain.lookup("namespace", "x", "x") is None
    asyncio.run(chain.stop())
    assert api.stopped


def test_preload_kubelet_list(tmp_path: Any) -> None:
    listing = {"items": [{"metadata": {"name": "a", "namespace": "n", "uid": "1"}},
                         {"metadata": {"name": "b", "namespace": "n", "uid": "2"}}]}
    (tmp_path / "n_b.meta").write_bytes(orjson.dumps(listing))
    (tmp_path / "n_c.meta").write_bytes(orjson.dumps(listing))
    src = PreloadSource(str(tmp_path), logging.getLogger("t"), use_kubelet=True)
    assert src.lookup("pod", "n", "b").obj == listing["items"][1]
    assert src.lookup("pod", "n", "c").obj == {}


def test_registered() -> None:
    assert lookup("filter", "kubernetes") is KubernetesFilter


# -- through the real engine ------------------------------------------------------------------

def test_engine_holds_records_and_acks_until_metadata_is_known(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod the source does not know yet: nothing is delivered nor acknowledged until it
    answers; then both batches go out in order, enriched, and both acks reach the input."""
    from tests.engine import plugins
    from tests.engine.harness import make_pipeline, running, wait_for
    from tests.engine.plugins import Feed, Sink

    src = FakeSource()

    async def start(self: KubernetesFilter) -> None:
        self.source = src

    monkeypatch.setattr(KubernetesFilter, "start", start)
    plugins.STATE["in-k8s"] = feed = Feed()
    plugins.STATE["out-k8s"] = sink = Sink()
    pipeline = make_pipeline(
        inputs=[{"name": "test_feed", "id": "in-k8s", "tag": "kube.x"}],
        filters=[{"name": "kubernetes", "match": "kube.*", "kube_url": "http://127.0.0.1:9",
                  "kube_meta_wait": "30s", "labels": "off", "annotations": "off"}],
        outputs=[{"name": "test_sink", "id": "out-k8s", "match": "*"}])

    async def go() -> None:
        async with running(pipeline):
            feed.put(batch({"n": 1}, ack="b1"))
            feed.put(batch({"n": 2}, ack="b2"))
            await wait_for(lambda: feed.queue.empty() and not feed.emitting)
            await asyncio.sleep(0.2)  # several flush ticks
            assert sink.delivered == [] and feed.acks == []
            src.answers[("pod", "shop", "web-1")] = Entry(POD, 1)
            await wait_for(lambda: len(sink.delivered) == 2)
            await wait_for(lambda: sorted(feed.acks) == [("b1", True), ("b2", True)])
        got = [orjson.loads(b) for b in sink.delivered]
        assert [r["n"] for r in got] == [1, 2]
        assert all(r["kubernetes"]["pod_ip"] == "10.0.0.7" for r in got)

    asyncio.run(go())
