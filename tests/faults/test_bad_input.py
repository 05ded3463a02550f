"""A generated bad-input corpus (hypothesis) through the seed pipeline: tail with the docker
parser (Skip_Long_Lines On, as the seed), then either the nginx regex parser on every line
(hostile input for a regex) or the seed's kubernetes filter (Merge_Log On into `data`,
K8S-Logging.Parser On with a pod annotated `fluentbit.io/parser: nginx`, K8S-Logging.Exclude On),
into a capturing output.

More than 1,000 generated lines in all: invalid JSON, invalid UTF-8, truncated multi-byte
characters, binary garbage, lines far over Buffer_Max_Size, malformed CRI lines, and text built
to make regexes backtrack. Checked for every example: the agent does not crash, no plugin
counts an error, every record serializes, and every line is accounted for (a record, or a
counted skip).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rillet.engine.chunk import body_json
from rillet.outputs.formats import bodies_fb_json
from tests.inputs.tail.helpers import running

BUFFER_MAX = 32 * 1024

# --- line strategies ----------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"),
                max_size=200)
_junk = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" "))


def _docker(log: bytes, stream: bytes = b"stdout", time: bytes = b"2026-11-28T08:00:00.5Z"
            ) -> bytes:
    return b'{"log":"' + log + b'","stream":"' + stream + b'","time":"' + time + b'"}'


valid = _text.map(lambda t: _docker(orjson.dumps(t)[1:-1] + b"\\n"))
invalid_json = st.one_of(
    _text.map(lambda t: b'{"log":"' + t.encode()),                    # unterminated
    _text.map(lambda t: b'{"log":' + t.encode() + b"}"),              # bare value
    st.sampled_from([b"[1,2,3]", b"42", b"null", b'"str"', b"{", b"}", b'{"log":1}',
                     b'{"log":null,"stream":7,"time":[]}', b'{"log":"x","time":"yesterday"}',
                     b'{"log":"x","time":"2026-13-45T99:99:99Z"}', b'{"a":{"b":{"c":[{}]}}}',
                     b'{"log":"\\ud800"}', b'{"log":"\\u0000"}', b"\x00\x00\x00"]),
)
invalid_utf8 = st.tuples(_text, st.binary(min_size=1, max_size=8)).map(
    lambda p: _docker(p[0].encode()[:50].replace(b'"', b"") + b"\xff\xfe" + p[1].replace(
        b"\n", b"").replace(b'"', b"").replace(b"\\", b"")))
truncated_multibyte = st.sampled_from(["é", "€", "𝄞", "中"]).map(
    lambda c: _docker(b"cut " + c.encode()[:-1]))
binary = _junk
huge = st.integers(min_value=BUFFER_MAX - 64, max_value=3 * BUFFER_MAX).map(
    lambda n: _docker(b"y" * n))
malformed_cri = st.sampled_from([
    b"2026-11-28T08:00:00.1Z stdout", b"2026-11-28T08:00:00.1Z stdout X text",
    b"not-a-time stdout F text", b"2026-11-28T08:00:00.1Z stdcat F text",
    b"2026-11-28T08:00:00.1Z stdout P", b"   ", b""])
hostile_regex = st.sampled_from([
    b" " * 5000, b'"' * 3000, b"- - [" * 1000, b"a" * 4000 + b"!",
    b'1.2.3.4 - - [' + b"x" * 3000, b'1.2.3.4 - - [28/Nov/2026:08:00:00 +0000] "' + b"G" * 3000,
]).map(lambda t: _docker(t))

hostile_line = st.one_of(valid, invalid_json, invalid_utf8, truncated_multibyte, binary, huge,
                         malformed_cri, hostile_regex)

_PARSER = {"name": "parser", "match": "*", "key_name": "log", "parser": "nginx",
           "reserve_data": "on"}


def _seed_filters(folder: Path) -> list[dict[str, str]]:
    """The seed's kubernetes filter, metadata from a preload folder holding one nginx pod."""
    meta = folder / "meta"
    meta.mkdir(exist_ok=True)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                        "labels": {"app": "web"},
                        "annotations": {"fluentbit.io/parser": "nginx"}},
           "spec": {"nodeName": "node-a", "containers": [{"name": "nginx", "image": "nginx"}]},
           "status": {"podIP": "10.0.0.9"}}
    (meta / "shop_web.meta").write_bytes(orjson.dumps(pod))
    return [{"name": "kubernetes", "match": "kube.*", "merge_log": "on", "merge_log_key": "data",
             "k8s-logging.parser": "on", "k8s-logging.exclude": "on",
             "kube_tag_prefix": "kube." + str(folder).strip("/").replace("/", ".") + ".",
             "kube_meta_preload_cache_dir": str(meta), "kube_url": "http://127.0.0.1:9",
             "kube_start_wait": "0"}]


async def _run(lines: list[bytes], path: Path, filters: list[dict[str, str]]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    tail = {"path": str(path), "read_from_head": "on", "parser": "docker",
            "skip_long_lines": "on", "buffer_max_size": str(BUFFER_MAX), "tag": "kube.*"}
    async with running(tail, extra_filters=filters) as run:
        want = len(lines)

        def settled() -> bool:
            return len(run.sink.delivered) + run.counters.get("long_line_skipped", 0) >= want

        deadline = asyncio.get_running_loop().time() + 20
        while not settled() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # nothing more may arrive
        skipped = run.counters.get("long_line_skipped", 0)
        delivered = run.sink.delivered
        assert len(delivered) + skipped == want, (len(delivered), skipped, want)
        assert skipped == sum(1 for line in lines if len(line) > BUFFER_MAX)
        assert bodies_fb_json(delivered)  # every record serializes
        for inst in (*run.engine.pipeline.inputs, *run.engine.pipeline.filters,
                     *run.engine.pipeline.outputs):
            assert inst.counters.get("errors", 0) == 0, inst.name
            if inst.name.startswith("kubernetes"):
                # Every record was enriched: the pod was known, nothing passed without metadata.
                assert inst.counters.get("kube_unenriched_records", 0) == 0
                assert all(b"kubernetes" in body_json(b) for b in delivered)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(lines=st.lists(hostile_line, min_size=25, max_size=40))
def test_hostile_lines_are_kept_or_counted(lines: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "hostile.log"
    asyncio.run(_run(lines, path, [_PARSER]))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(lines=st.lists(hostile_line, min_size=25, max_size=40))
def test_hostile_lines_through_the_kubernetes_filter(lines: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / f"web_shop_nginx-{'0' * 64}.log"
    path.unlink(missing_ok=True)
    asyncio.run(_run(lines, path, _seed_filters(tmp_path)))
