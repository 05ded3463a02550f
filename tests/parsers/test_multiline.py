"""Multiline parsers and MultilineGroup: Fluent Bit's test vectors (tests/internal/multiline.c),
real traces, per-stream grouping, flush timeout, buffer limit, bad input."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from rillet.config.classic import PARSER_KINDS, read_classic
from rillet.config.model import ConfigModel, Section
from rillet.config.options import resolve
from rillet.parsers import definitions
from rillet.parsers.definitions import MULTILINE_OPTIONS
from rillet.parsers.multiline import (
    BUILTIN_NAMES,
    MultilineGroup,
    MultilineParser,
    build,
    builtin,
)
from rillet.parsers.registry import ParserRegistry, builtin_names
from tests.shared_data import CONFORMANCE

T0 = 1_700_000_000_000_000_000
CONF = str(CONFORMANCE / "runtime" / "data" / "tail")


def registry(*sections: dict[str, Any]) -> ParserRegistry:
    """A registry with the built-ins plus [PARSER]/[MULTILINE_PARSER] sections given as dicts."""
    model = ConfigModel.empty("test.conf")
    for props in sections:
        kind = props.pop("_kind", "multiline_parser")
        sec = Section(kind, "test.conf", 1)
        for key, value in props.items():
            for v in value if isinstance(value, list) else [value]:
                sec.set(key, str(v), "test.conf", 1)
        (model.parsers if kind == "parser" else model.multiline_parsers).append(sec)
    errors: list[str] = []
    parsers, multiline = definitions.validate(model, errors, builtin=builtin_names())
    assert errors == []
    return ParserRegistry(parsers, multiline)


def feed_all(group: MultilineGroup, lines: list[str], flush: bool = True) -> list[dict[str, Any]]:
    out: list[tuple[int, dict[str, Any]]] = []
    for i, line in enumerate(lines):
        out += group.feed(T0 + i, line)
    if flush:
        out += group.flush_all()
    return [r for _, r in out]


def logs(records: list[dict[str, Any]], key: str = "log") -> list[str]:
    return [r[key] for r in records]


# --- Fluent Bit's vectors (tests/internal/multiline.c) ---------------------------------------

DOCKER_IN = [
    '{"log": "aa\\n", "stream": "stdout", "time": "2021-02-01T16:45:03.01231z"}',
    '{"log": "aa\\n", "stream": "stderr", "time": "2021-02-01T16:45:03.01231z"}',
    '{"log": "bb", "stream": "stdout", "time": "2021-02-01T16:45:03.01232z"}',
    '{"log": "cc\\n", "stream": "stdout", "time": "2021-02-01T16:45:03.01233z"}',
    '{"log": "dd", "stream": "stderr", "time": "2021-02-01T16:45:03.01233z"}',
    "single line to force pending flush of the previous line",
    '{"log": "ee\\n", "stream": "stderr", "time": "2021-02-01T16:45:03.01234z"}',
]
DOCKER_OUT = ["aa\n", "aa\n", "bbcc\n", "dd",
              "single line to force pending flush of the previous line", "ee\n"]

CRI_IN = [
    "2019-05-07T18:57:50.904275087+00:00 stdout P 1a. some ",
    "2019-05-07T18:57:51.904275088+00:00 stdout P multiline ",
    "2019-05-07T18:57:52.904275089+00:00 stdout F log",
    "2019-05-07T18:57:50.904275087+00:00 stderr P 1b. some ",
    "2019-05-07T18:57:51.904275088+00:00 stderr P multiline ",
    "2019-05-07T18:57:52.904275089+00:00 stderr F log",
    "2019-05-07T18:57:53.904275090+00:00 stdout P 2a. another ",
    "2019-05-07T18:57:54.904275091+00:00 stdout P multiline ",
    "2019-05-07T18:57:55.904275092+00:00 stdout F log",
    "2019-05-07T18:57:53.904275090+00:00 stderr P 2b. another ",
    "2019-05-07T18:57:54.904275091+00:00 stderr P multiline ",
    "2019-05-07T18:57:55.904275092+00:00 stderr F log",
    "2019-05-07T18:57:56.904275093+00:00 stdout F 3a. non multiline 1",
    "2019-05-07T18:57:57.904275094+00:00 stdout F 4a. non multiline 2",
    "2019-05-07T18:57:56.904275093+00:00 stderr F 3b. non multiline 1",
    "2019-05-07T18:57:57.904275094+00:00 stderr F 4b. non multiline 2",
]
CRI_OUT = ["1a. some multiline log", "1b. some multiline log", "2a. another multiline log",
           "2b. another multiline log", "3a. non multiline 1", "4a. non multiline 2",
           "3b. non multiline 1", "4b. non multiline 2"]

MIX_IN = [
    '{"log": "a1\\n", "stream": "stdout", "time": "2021-02-01T16:45:03.01231z"}',
    '{"log": "a2\\n", "stream": "stderr", "time": "2021-02-01T16:45:03.01231z"}',
    '{"log": "bb", "stream": "stdout", "time": "2021-02-01T16:45:03.01232z"}',
    '{"log": "cc", "stream": "stdout", "time": "2021-02-01T16:45:03.01233z"}',
    '{"log": "dd", "stream": "stderr", "time": "2021-02-01T16:45:03.01232z"}',
    '{"log": "ee\\n", "stream": "stderr", "time": "2021-02-01T16:45:03.01233z"}',
    "2019-05-07T18:57:52.904275089+00:00 stdout F single full",
    "2019-05-07T18:57:50.904275087+00:00 stdout P 1a. some ",
    "2019-05-07T18:57:51.904275088+00:00 stdout P multiline ",
    "2019-05-07T18:57:52.904275089+00:00 stdout F log",
    "2019-05-07T18:57:50.904275087+00:00 stderr P 1b. some ",
    "2019-05-07T18:57:51.904275088+00:00 stderr P multiline ",
    "2019-05-07T18:57:52.904275089+00:00 stderr F log",
    '{"log": "dd-out\\n", "stream": "stdout", "time": "2021-02-01T16:45:03.01234z"}',
    '{"log": "dd-err\\n", "stream": "stderr", "time": "2021-02-01T16:45:03.01234z"}',
]
MIX_OUT = ["a1\n", "a2\n", "ddee\n", "single full", "1a. some multiline log",
           "1b. some multiline log", "bbccdd-out\n", "dd-err\n"]

JAVA_IN = [
    'Exception in thread "main" java.lang.IllegalStateException: ..null property\n',
    "     at com.example.myproject.Author.getBookIds(xx.java:38)\n",
    "     at com.example.myproject.Bootstrap.main(Bootstrap.java:14)\n",
    "Caused by: java.lang.NullPointerException\n",
    "     at com.example.myproject.Book.getId(Book.java:22)\n",
    "     at com.example.myproject.Author.getBookIds(Author.java:35)\n",
    "     ... 1 more\n",
    "single line\n",
]

PYTHON_IN = [
    "Traceback (most recent call last):\n",
    '  File "/base/data/home/runtimes/python27/python27_lib/versions/third_party/'
    'webapp2-2.5.2/webapp2.py", line 1535, in __call__\n',
    "    rv = self.handle_exception(request, response, e)\n",
    '  File "/base/data/home/apps/s~nearfieldspy/1.378705245900539993/nearfieldspy.py", '
    "line 17, in start\n",
    "    return get()\n",
    '  File "/base/data/home/apps/s~nearfieldspy/1.378705245900539993/nearfieldspy.py", '
    "line 5, in get\n",
    "    raise Exception('spam', 'eggs')\n",
    "Exception: ('spam', 'eggs')\n",
    "hello world, not multiline\n",
]

RUBY_IN = [
    "/app/config/routes.rb:6:in `/': divided by 0 (ZeroDivisionError)",
    "\tfrom /app/config/routes.rb:6:in `block in <main>'",
    "\tfrom /var/lib/gems/3.0.0/gems/actionpack-7.0.4/lib/action_dispatch/routing/"
    "route_set.rb:428:in `instance_exec'",
    "\tfrom /var/lib/gems/3.0.0/gems/actionpack-7.0.4/lib/action_dispatch/routing/"
    "route_set.rb:428:in `eval_block'",
    "\tfrom /var/lib/gems/3.0.0/gems/actionpack-7.0.4/lib/action_dispatch/routing/"
    "route_set.rb:410:in `draw'",
    "\tfrom /app/config/routes.rb:1:in `<main>'",
    "hello world, not multiline\n",
]

GO_TRACE = [
    "panic: my panic\n", "\n", "goroutine 4 [running]:\n", "panic(0x45cb40, 0x47ad70)\n",
    "\t/usr/local/go/src/runtime/panic.go:542 +0x46c fp=0xc42003f7b8 sp=0xc42003f710 "
    "pc=0x422f7c\n",
    "main.main.func1(0xc420024120)\n",
    "\tfoo.go:6 +0x39 fp=0xc42003f7d8 sp=0xc42003f7b8 pc=0x451339\n",
    "runtime.goexit()\n",
    "\t/usr/local/go/src/runtime/asm_amd64.s:2337 +0x1 fp=0xc42003f7e0 sp=0xc42003f7d8 "
    "pc=0x44b4d1\n",
    "created by main.main\n", "\tfoo.go:5 +0x58\n", "\n",
    "goroutine 1 [chan receive]:\n",
    "runtime.gopark(0x4739b8, 0xc420024178, 0x46fcd7, 0xc, 0xc420028e17, 0x3)\n",
    "\t/usr/local/go/src/runtime/proc.go:280 +0x12c fp=0xc420053e30 sp=0xc420053e00 "
    "pc=0x42503c\n",
    "main.main()\n",
    "\tfoo.go:9 +0x6f fp=0xc420053f80 sp=0xc420053f50 pc=0x4512ef\n",
    "\n",
    "goroutine 2 [force gc (idle)]:\n",
    "runtime.forcegchelper()\n",
    "\t/usr/local/go/src/runtime/proc.go:238 +0xcc fp=0xc42003e7e0 sp=0xc42003e7a8 "
    "pc=0x424e5c\n",
    "created by runtime.init.4\n",
    "\t/usr/local/go/src/runtime/proc.go:227 +0x35\n",
]


def test_builtin_names_and_lookup() -> None:
    assert BUILTIN_NAMES == ("docker", "cri", "go", "python", "java", "ruby")
    reg = registry()
    for name in BUILTIN_NAMES:
        parser = builtin(name, reg)
        assert isinstance(parser, MultilineParser) and parser.name == name
        assert reg.multiline(name) is parser
    assert builtin("nope", reg) is None
    assert reg.multiline("nope") is None


def test_fb_parser_docker() -> None:
    # Fluent Bit loads cri first here, so the raw line comes out under cri's key_content "log".
    group = MultilineGroup([builtin("cri"), builtin("docker")])  # type: ignore[list-item]
    assert logs(feed_all(group, DOCKER_IN)) == DOCKER_OUT


def test_fb_parser_cri() -> None:
    group = MultilineGroup([builtin("docker"), builtin("cri")])  # type: ignore[list-item]
    records = feed_all(group, CRI_IN)
    assert logs(records) == CRI_OUT
    # Fluent Bit's record for a joined CRI message: the first part's keys, log replaced.
    assert list(records[0]) == ["time", "stream", "_p", "log"]
    assert records[0] == {"time": "2019-05-07T18:57:50.904275087+00:00", "stream": "stdout",
                          "_p": "P", "log": "1a. some multiline log"}


def test_fb_container_mix() -> None:
    group = MultilineGroup([builtin("docker"), builtin("cri")])  # type: ignore[list-item]
    assert logs(feed_all(group, MIX_IN)) == MIX_OUT


def test_fb_docker_cri_chain_flushes_at_once() -> None:
    group = MultilineGroup([builtin("docker"), builtin("cri")])  # type: ignore[list-item]
    lines = ["2025-09-22T19:07:06.115398289Z stdout F first message",
             "2025-09-22T19:07:06.116725604Z stdout F second message",
             "2025-09-22T19:07:08.582112316Z stdout F third message"]
    out = [r for line in lines for _, r in group.feed(T0, line)]
    assert logs(out) == ["first message", "second message", "third message"]
    assert not group.pending


def test_fb_parser_java_records_with_key_content() -> None:
    group = MultilineGroup([builtin("java")], key_content="log")  # type: ignore[list-item]
    out: list[dict[str, Any]] = []
    for line in JAVA_IN:
        out += [r for _, r in group.feed_record(T0, {"log": line})]
    out += [r for _, r in group.flush_all()]
    assert logs(out) == ["".join(JAVA_IN[:-1]), "single line\n"]


def test_fb_parser_python_text() -> None:
    group = MultilineGroup([builtin("python")])  # type: ignore[list-item]
    assert logs(feed_all(group, PYTHON_IN)) == ["".join(PYTHON_IN[:-1]), PYTHON_IN[-1]]


def test_fb_issue_4949_python_then_java() -> None:
    group = MultilineGroup([builtin("python"), builtin("java")])  # type: ignore[list-item]
    assert logs(feed_all(group, PYTHON_IN)) == ["".join(PYTHON_IN[:-1]), PYTHON_IN[-1]]


def test_fb_parser_ruby_text() -> None:
    group = MultilineGroup([builtin("ruby")])  # type: ignore[list-item]
    joined = "\n".join(RUBY_IN[:-1]) + "\n"
    # Fluent Bit appends "\n" to the trace (raw text mode); see test_raw_text_trailing_newline.
    assert logs(feed_all(group, RUBY_IN)) == [joined.rstrip("\n"), RUBY_IN[-1]]


def test_fb_parser_go_text() -> None:
    group = MultilineGroup([builtin("go")])  # type: ignore[list-item]
    lines = [*GO_TRACE, "one more line, no multiline"]
    assert logs(feed_all(group, lines)) == ["".join(GO_TRACE), "one more line, no multiline"]


def test_fb_parser_elastic_custom_rules() -> None:
    parser = MultilineParser("elastic", "regex", flush_timeout=1000, key_content="log",
                             rules=[("start_state", r"/^\[/", "elastic_cont"),
                                    ("elastic_cont", r"/^\s+/", "elastic_cont")])
    lines = ["[some weird test] IndexNotFoundException[no such index]\n",
             "    at org.elasticsearch.cluster.metadata.IndexNameExpressionResolver....\n",
             "    at org.elasticsearch.cluster.metadata.IndexNameExpressionResolver.java:133)\n",
             "    at org.elasticsearch.action.admin.indices.delete.java:75)\n",
             "another separate log line\n"]
    group = MultilineGroup([parser])
    out = [r for line in lines for _, r in group.feed_record(T0, {"log": line})]
    out += [r for _, r in group.flush_all()]
    assert logs(out) == ["".join(lines[:-1]), lines[-1]]


def test_fb_endswith_negate() -> None:
    parser = MultilineParser("endswith", "endswith", match_string="\\", negate=True,
                             flush_timeout=1000)
    lines = ["1a. some multiline log \\", "1b. some multiline log",
             "2a. another multiline log\\", "2b. another multiline log",
             "3a. non multiline 1", "4a. non multiline 2"]
    # Fluent Bit's expected records end with an added "\n" (raw text mode), which rillet omits.
    assert logs(feed_all(MultilineGroup([parser]), lines)) == [
        "1a. some multiline log \\\n1b. some multiline log",
        "2a. another multiline log\\\n2b. another multiline log",
        "3a. non multiline 1", "4a. non multiline 2"]


def test_fb_issue_3817_cri_then_custom_parser() -> None:
    reg = registry({"name": "parser_3817", "type": "regex", "key_content": "log",
                    "flush_timeout": 1000,
                    "rule": ['"start_state" "/- $/" "cont"', '"cont" "/^([1-9]).*$/" "cont"']})
    first = MultilineGroup([builtin("cri")])  # type: ignore[list-item]
    lines = ["2021-05-17T17:35:01.184675702Z stdout F [DEBUG] 1 start multiline - ",
             "2021-05-17T17:35:01.184747208Z stdout F 1 cont A",
             "2021-05-17T17:35:01.184675702Z stdout F [DEBUG] 2 start multiline - ",
             "2021-05-17T17:35:01.184747208Z stdout F 2 cont B",
             "another isolated line"]
    stage1 = [item for line in lines for item in first.feed(T0, line)]
    second = MultilineGroup([reg.multiline("parser_3817")])  # type: ignore[list-item]
    out = [r for t, rec in stage1 for _, r in second.feed_record(t, rec)]
    out += [r for _, r in second.flush_all()]
    assert logs(out) == ["[DEBUG] 1 start multiline - \n1 cont A",
                         "[DEBUG] 2 start multiline - \n2 cont B",
                         "another isolated line"]


def test_fb_issue_4034_cri_on_records() -> None:
    group = MultilineGroup([builtin("cri")], key_content="log")  # type: ignore[list-item]
    out = [r for line in CRI_IN for _, r in group.feed_record(T0, {"log": line})]
    out += [r for _, r in group.flush_all()]
    assert logs(out) == CRI_OUT


def test_fb_buffer_limit_truncation_counts_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    parser = MultilineParser("test-concat", "regex", key_content="log",
                             rules=[("start_state", "/./", "cont"), ("cont", "/./", "cont")])
    group = MultilineGroup([parser], buffer_limit=80)
    line1 = '{"log": "12345678901234567890", "stream": "stdout"}'
    line2 = '{"log": "abcdefghijklmnopqrstuvwxyz", "stream": "stdout"}'
    with caplog.at_level(logging.WARNING, logger="rillet.multiline"):
        assert group.feed(T0, line1) == []
        out = group.feed(T0 + 1, line2)
        group.feed(T0 + 2, line2)
    # The second line crosses the 80-byte limit: the message is cut there and emitted at once.
    assert [len(r["log"].encode()) for _, r in out] == [80]
    assert out[0][1]["log"] == (line1 + "\n" + line2)[:80]
    assert group.truncated == 1
    assert sum("truncated due to buffer limit" in m for m in caplog.messages) == 1


def test_buffer_limit_zero_disables_it() -> None:
    parser = builtin("docker")
    group = MultilineGroup([parser], buffer_limit=0)  # type: ignore[list-item]
    part = orjson.dumps({"log": "x" * 10_000, "stream": "stdout"}).decode()
    for _ in range(50):
        assert group.feed(T0, part) == []
    (_, rec), = group.feed(T0, '{"log": "end\\n", "stream": "stdout"}')
    assert len(rec["log"]) == 500_004 and group.truncated == 0


def test_buffer_limit_cuts_docker_partials_on_a_character_boundary() -> None:
    group = MultilineGroup([builtin("docker")], buffer_limit=1000)  # type: ignore[list-item]
    part = orjson.dumps({"log": "é" * 300, "stream": "stdout"}).decode()  # 600 bytes each
    assert group.feed(T0, part) == []
    (_, rec), = group.feed(T0 + 1, part)
    assert rec["log"] == "é" * 500 and group.truncated == 1
    # The next partials start a new message.
    assert group.feed(T0 + 2, part) == []
    assert group.pending


# --- conformance: tail multiline_001 (parsers_multiline_json.conf) -----------------------------

@pytest.mark.skipif(not os.path.isdir(CONF), reason="/work/shared conformance data absent")
def test_conformance_multiline_001_json_and_regex() -> None:
    model = read_classic(f"{CONF}/parsers_multiline_json.conf", allowed=PARSER_KINDS,
                         role="a parsers file")
    errors: list[str] = []
    parsers, multiline = definitions.validate(model, errors, builtin=builtin_names())
    assert errors == []
    reg = ParserRegistry(parsers, multiline)
    parser = reg.multiline("multiline-json-regex")
    assert parser is not None and parser.flush_timeout == 2000
    group = MultilineGroup([parser])
    with open(f"{CONF}/log/multiline_001.log", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    _, records = group.feed_many([T0] * len(lines), lines)
    assert records == [] and group.pending
    out = group.flush_all()
    with open(f"{CONF}/out/multiline_001.out", "rb") as fh:
        expected = orjson.loads(fh.read())
    assert [r for _, r in out] == [expected]
    assert list(out[0][1]) == list(expected)


# --- real traces interleaved on stdout and stderr ----------------------------------------------

JAVA_TRACE = [
    "2024-05-01 10:00:00.123 ERROR 1 --- [main] o.s.boot.SpringApplication : failed",
    "java.lang.IllegalStateException: Failed to execute CommandLineRunner",
    "\tat org.springframework.boot.SpringApplication.callRunner(SpringApplication.java:787)",
    "\tat org.springframework.boot.SpringApplication.run(SpringApplication.java:315)",
    "Caused by: java.lang.NullPointerException: null",
    "\tat com.example.App.run(App.java:42)",
    "\t... 5 common frames omitted",
]
PY_TRACE = [
    "Traceback (most recent call last):",
    '  File "/app/main.py", line 10, in <module>',
    "    main()",
    '  File "/app/main.py", line 6, in main',
    "    raise ValueError('bad value')",
    "ValueError: bad value",
]
RUBY_TRACE = [
    "/app/lib/worker.rb:12:in `perform': undefined method `id' for nil (NoMethodError)",
    "\tfrom /app/lib/runner.rb:5:in `block in run'",
    "\tfrom /app/lib/runner.rb:3:in `each'",
]


def docker_lines(stream_lines: list[tuple[str, str]]) -> list[str]:
    return [orjson.dumps({"log": text + "\n", "stream": stream,
                          "time": f"2024-05-01T10:00:{i:02d}.000000001Z"}).decode()
            for i, (stream, text) in enumerate(stream_lines)]


def interleave(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i in range(max(len(a), len(b))):
        if i < len(a):
            out.append(("stdout", a[i]))
        if i < len(b):
            out.append(("stderr", b[i]))
    return out


@pytest.mark.parametrize(("name", "trace"), [
    ("java", JAVA_TRACE[1:]), ("python", PY_TRACE), ("go", [g.rstrip("\n") for g in GO_TRACE]),
    ("ruby", RUBY_TRACE)])
def test_builtin_regex_parser_per_stream_with_key_group(name: str, trace: list[str]) -> None:
    """A [MULTILINE_PARSER] reusing a built-in's rules with key_group stream and a json
    pre-parser keeps interleaved stdout/stderr traces apart."""
    reg = registry({"_kind": "parser", "name": "js", "format": "json"})
    parser = MultilineParser(f"{name}-streams", "regex", parser=reg.get("js"),
                             key_content="log", key_group="stream",
                             rules=builtin(name).rules_source())  # type: ignore[union-attr]
    group = MultilineGroup([parser])
    other = ["plain stderr line"] * 3
    lines = docker_lines([*interleave(trace, other), ("stdout", "after the trace")])
    records = feed_all(group, lines)
    stdout = [r["log"] for r in records if r["stream"] == "stdout"]
    stderr = [r["log"] for r in records if r["stream"] == "stderr"]
    assert stdout[0] == "".join(t + "\n" for t in trace)
    assert stdout[-1] == "after the trace\n"
    assert stderr == ["plain stderr line\n"] * 3


def test_builtin_parsers_on_raw_traces_with_noise() -> None:
    for name, trace in (("java", JAVA_TRACE[1:]), ("python", PY_TRACE), ("ruby", RUBY_TRACE)):
        group = MultilineGroup([builtin(name)])  # type: ignore[list-item]
        records = feed_all(group, ["before", *trace, "after"])
        assert logs(records) == ["before", "\n".join(trace), "after"], name


def test_java_trace_with_header_line_is_one_message_from_the_exception() -> None:
    group = MultilineGroup([builtin("java")])  # type: ignore[list-item]
    records = feed_all(group, JAVA_TRACE)
    assert logs(records) == [JAVA_TRACE[0], "\n".join(JAVA_TRACE[1:])]


def test_docker_and_cri_interleaved_stdout_stderr_partials() -> None:
    group = MultilineGroup([builtin("docker"), builtin("cri")])  # type: ignore[list-item]
    lines = [
        '{"log":"out-1 ","stream":"stdout","time":"2024-05-01T10:00:00.1Z"}',
        '{"log":"err-1 ","stream":"stderr","time":"2024-05-01T10:00:00.2Z"}',
        '{"log":"out-2\\n","stream":"stdout","time":"2024-05-01T10:00:00.3Z"}',
        '{"log":"err-2\\n","stream":"stderr","time":"2024-05-01T10:00:00.4Z"}',
    ]
    t, recs = group.feed_many([T0] * 4, lines)
    assert recs == [{"log": "out-1 out-2\n", "stream": "stdout",
                     "time": "2024-05-01T10:00:00.1Z"},
                    {"log": "err-1 err-2\n", "stream": "stderr",
                     "time": "2024-05-01T10:00:00.2Z"}]
    # Record time: the first part's time, from the pre-parser.
    assert t == [1714557600_100000000, 1714557600_200000000]
    cri = ["2024-05-01T10:00:01.000000001Z stdout P a-",
           "2024-05-01T10:00:01.000000002Z stderr P b-",
           "2024-05-01T10:00:01.000000003Z stderr F b-end",
           "2024-05-01T10:00:01.000000004Z stdout F a-end"]
    t, recs = group.feed_many([T0] * 4, cri)
    assert [(r["stream"], r["log"], r["_p"]) for r in recs] == [
        ("stderr", "b-b-end", "P"), ("stdout", "a-a-end", "P")]
    assert t == [1714557601_000000002, 1714557601_000000001]


# --- regex / endswith / equal types, negate ----------------------------------------------------

def test_equal_type_on_raw_lines_with_negate() -> None:
    # "equal" completes a message on a line equal to match_string; negated, on any other line.
    eq = MultilineParser("eq", "eq", match_string="END")
    assert logs(feed_all(MultilineGroup([eq]), ["a", "b", "END", "c"], flush=False)) == [
        "a\nb\nEND"]
    neq = MultilineParser("neq", "equal", match_string="...", negate=True)
    assert logs(feed_all(MultilineGroup([neq]), ["x", "...", "y", "z"])) == ["x", "...\ny",
                                                                             "z"]


def test_endswith_key_pattern_and_key_content_on_records() -> None:
    parser = MultilineParser("ew", "endswith", match_string="$", key_content="msg",
                             key_pattern="flag")
    group = MultilineGroup([parser])
    out = [r for rec in ({"msg": "a", "flag": "x", "n": 1}, {"msg": "b", "flag": "x$", "n": 2},
                         {"other": 1})
           for _, r in group.feed_record(T0, rec)]
    # Structured content is concatenated as is; the first record's keys stay; a record without
    # key_content passes unchanged.
    assert out == [{"msg": "ab", "flag": "x", "n": 1}, {"other": 1}]


def test_regex_negative_lookahead_rules_from_fluent_bit_parsers_file() -> None:
    reg = registry({"name": "multiline-regex", "type": "regex", "flush_timeout": 2000,
                    "rule": [r'"start_state" "/^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}\]/" '
                             r'"cont"',
                             r'"cont" "/^(?!\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}\]).*/" '
                             r'"cont"']})
    group = MultilineGroup([reg.multiline("multiline-regex")])  # type: ignore[list-item]
    lines = ["[2024-01-01 00:00:00,000] first", "  detail", "",
             "[2024-01-01 00:00:01,000] second", "orphan? no: continuation"]
    # An empty continuation line adds "\n" after the separator (Fluent Bit's flb_ml_rule.c).
    assert logs(feed_all(group, lines)) == ["[2024-01-01 00:00:00,000] first\n  detail\n\n",
                                            "[2024-01-01 00:00:01,000] second\n"
                                            "orphan? no: continuation"]


def test_python_message_ends_on_the_exception_line_without_waiting() -> None:
    group = MultilineGroup([builtin("python")])  # type: ignore[list-item]
    out: list[dict[str, Any]] = []
    for line in PY_TRACE:
        out += [r for _, r in group.feed(T0, line)]
    assert logs(out) == ["\n".join(PY_TRACE)] and not group.pending


def test_message_time_is_the_first_lines_time() -> None:
    group = MultilineGroup([builtin("python")])  # type: ignore[list-item]
    times = [T0 + i for i in range(len(PY_TRACE))]
    t, recs = group.feed_many(times, PY_TRACE)
    assert t == [T0] and len(recs) == 1


def test_unknown_to_state_and_bad_definitions_are_value_errors() -> None:
    with pytest.raises(ValueError, match="to_state='nowhere' is not registered"):
        MultilineParser("x", "regex", rules=[("start_state", "/a/", "nowhere")])
    with pytest.raises(ValueError, match="first rule must be for 'start_state'"):
        MultilineParser("x", "regex", rules=[("cont", "/a/", "cont")])
    with pytest.raises(ValueError, match="needs match_string"):
        MultilineParser("x", "endswith")
    with pytest.raises(ValueError, match="unknown type"):
        MultilineParser("x", "bogus", match_string="a")
    with pytest.raises(ValueError, match="rule regex"):
        MultilineParser("x", "regex", rules=[("start_state", r"/\G/", "start_state")])


def test_build_from_options_and_undefined_pre_parser() -> None:
    sec = Section("multiline_parser", "t.conf", 1)
    for k, v in (("name", "m"), ("type", "regex"), ("parser", "missing"),
                 ("rule", '"start_state" "/x/" "start_state"')):
        sec.set(k, v, "t.conf", 1)
    errors: list[str] = []
    opts = resolve(sec, MULTILINE_OPTIONS, errors, ignore=())
    with pytest.raises(ValueError, match="undefined parser 'missing'"):
        build(opts, ParserRegistry())
    opts["parser"] = None
    parser = build(opts, ParserRegistry())
    assert parser.type == "regex" and parser.flush_timeout == 4000


# --- flush timeout -----------------------------------------------------------------------------

def test_flush_timeout_releases_a_pending_message() -> None:
    parser = MultilineParser("p", "regex", flush_timeout=300,
                             rules=[("start_state", "/^start/", "cont"),
                                    ("cont", r"/^\s/", "cont")])
    group = MultilineGroup([parser])
    assert group.next_deadline() is None
    group.feed(T0, "start here")
    group.feed(T0 + 1, "  more")
    deadline = group.next_deadline()
    assert deadline is not None and group.pending
    assert group.flush_expired(deadline - 0.1) == []
    assert group.flush_expired(deadline) == [(T0, {"log": "start here\n  more"})]
    assert not group.pending and group.next_deadline() is None


def test_flush_ms_override_and_deadline_moves_with_each_line() -> None:
    group = MultilineGroup([builtin("docker")], flush_ms=1000)  # type: ignore[list-item]
    group.feed(T0, '{"log":"a","stream":"stdout"}')
    first = group.next_deadline()
    group.feed(T0, '{"log":"b","stream":"stdout"}')
    second = group.next_deadline()
    assert first is not None and second is not None and second >= first
    assert group.flush_expired(second + 0.001)[0][1]["log"] == "ab"


# --- bad input never raises --------------------------------------------------------------------

def test_bad_input_never_raises() -> None:
    rnd = random.Random(7)
    junk = ["", "{", "{}", "[]", "null", '{"log": 5, "stream": "stdout"}',
            '{"log": "x", "stream": 7}', '{"log": ""}', "\x00\x01\ud800 bad", " " * 3,
            "2019-05-07 stdout X y", "garbage stdout F", "\ud83d\ude00" * 10]
    junk += ["".join(chr(rnd.randrange(1, 0x2FFF)) for _ in range(rnd.randrange(0, 60)))
             for _ in range(200)]
    for names in (["docker", "cri"], ["cri"], ["java", "python", "go", "ruby"]):
        group = MultilineGroup([builtin(n) for n in names], buffer_limit=64)  # type: ignore
        n_out = 0
        for line in junk:
            n_out += len(group.feed(T0, line))
        for rec in ({"log": 1}, {"log": None}, {}, {"log": "\ud800"}, {"stream": ["x"]}):
            n_out += len(group.feed_record(T0, rec))
        n_out += len(group.flush_all())
        assert n_out > 0 and not group.pending


def test_a_line_no_parser_takes_keeps_its_text() -> None:
    group = MultilineGroup([builtin("docker"), builtin("cri")])  # type: ignore[list-item]
    assert group.feed(T0, "not json, not cri") == [(T0, {"log": "not json, not cri"})]
    # Fluent Bit packs nothing for an empty raw line.
    assert group.feed(T0, "") == []


def test_service_multiline_buffer_limit_reaches_the_plugins(tmp_path: Path) -> None:
    from rillet.config.loader import load_config
    from rillet.engine.pipeline import build

    conf = tmp_path / "a.conf"
    conf.write_text("[SERVICE]\n    multiline_buffer_limit 64k\n"
                    f"[INPUT]\n    Name tail\n    Path {tmp_path}/*.log\n"
                    "    multiline.parser docker, cri\n"
                    "[FILTER]\n    Name multiline\n    Match *\n    multiline.parser java\n"
                    "[OUTPUT]\n    Name null\n    Match *\n")
    pipeline = build(load_config(str(conf)))
    assert pipeline.parsers.multiline_buffer_limit == 64_000
    assert pipeline.inputs[0].plugin.ml_limit == 64_000  # type: ignore[attr-defined]
    assert pipeline.filters[0].plugin.limit == 64_000  # type: ignore[attr-defined]
