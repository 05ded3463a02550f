"""Fluent Bit's 93 kubernetes-filter log-file cases (conformance README §1), one test each.

Each case runs the pipeline the README describes, from a classic configuration file through
the real engine: tail (Docker_Mode, docker parser, Tag_Regex) -> kubernetes (preload dir,
Regex_Parser kubernetes-tag, Kube_Tag_Prefix kube., the case's options) -> an output that keeps
what it receives. Every record is rendered as Fluent Bit's lib output does (``[<time with 6
decimals>,{record}]``); a record of the case's stream counts when it contains the ``.out`` text;
the count must equal the expected matches (0: the stream was excluded).

All cases run concurrently in one event loop (a module fixture), so the whole file takes about
as long as the slowest case.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from rillet.config.loader import load_config
from rillet.config.options import Option, T
from rillet.engine.chunk import Chunk, body_json
from rillet.engine.engine import Engine
from rillet.engine.pipeline import build
from rillet.engine.plugin import FlushResult, Output, Status, register
from tests.shared_data import CONFORMANCE

DATA = CONFORMANCE / "runtime" / "data" / "kubernetes"
README = CONFORMANCE.parent / "README.md"

pytestmark = pytest.mark.skipif(not README.is_file(), reason="shared/ conformance data absent")


@dataclass
class Case:
    name: str
    log: str
    stream: str
    expected: int
    options: dict[str, str]
    lines: int = 0
    seen: int = 0  # records that went through the filter
    rendered: list[str] = field(default_factory=list)
    error: str = ""


# What each k8s_capture output instance received: id -> [(time_ns, body)].
CAPTURED: dict[str, list[tuple[int, Any]]] = {}


@register
class CaptureOutput(Output):
    """Keeps every record it is given, with its time (test output)."""

    name = "k8s_capture"
    description = "test output: keeps records and times"
    options = (Option("id", T.STR, None, "key in CAPTURED"),)

    async def flush(self, chunk: Chunk) -> FlushResult:
        CAPTURED.setdefault(self.opts["id"], []).extend(
            zip(chunk.times, chunk.bodies, strict=True))
        return Status.OK


def _cases() -> list[Case]:
    if not README.is_file():
        return []
    text = README.read_text()
    section = text[text.index("### Per-case settings"):text.index("Notes on the special rows")]
    cases = []
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 6 or not cells[0].isdigit() or cells[2].startswith("(special"):
            continue
        _, name, log, stream, expected, extra = cells
        options: dict[str, str] = {}
        if extra != "(defaults)":
            for item in extra.split(";"):
                key, _, value = item.strip().partition("=")
                options[key.strip()] = value.strip()
        cases.append(Case(name, log, "" if stream == "-" else stream, int(expected), options))
    return cases


CASES = _cases()


def _config(case: Case, tmp: Path) -> Path:
    log = DATA / "log" / case.log
    extra = "".join(f"    {k} {v}\n" for k, v in case.options.items())
    text = f"""\
[SERVICE]
    Flush        0.2
    Grace        1
    Log_Level    error
    Parsers_File {DATA / "parsers.conf"}

[INPUT]
    Name            tail
    Path            {log}
    Parser          docker
    Docker_Mode     On
    Read_From_Head  On
    Tag             kube.<namespace>.<pod>.<container>
    Tag_Regex       ^{DATA}/log/(?:[^/]+/)?(?<namespace>.+)_(?<pod>.+)_(?<container>.+)\\.log$

[FILTER]
    Name                        kubernetes
    Match                       kube.*
    Kube_URL                    http://127.0.0.1:8002
    Kube_Meta_Preload_Cache_Dir {DATA / "meta"}
    Regex_Parser                kubernetes-tag
    Kube_Tag_Prefix             kube.
{extra}
[OUTPUT]
    Name   k8s_capture
    Match  *
    id     {case.name}
"""
    path = tmp / f"{case.name}.conf"
    path.write_text(text)
    return path


def render(time_ns: int, body: Any) -> str:
    """Fluent Bit's lib output, format json: ``[<seconds with 6 decimals>,{record}]``."""
    seconds = float(time_ns // 1_000_000_000) + (time_ns % 1_000_000_000) / 1e9
    return f"[{seconds:.6f}," + body_json(body).decode() + "]"


async def _run(case: Case, tmp: Path) -> None:
    case.lines = sum(1 for line in (DATA / "log" / case.log).read_bytes().splitlines() if line)
    got = CAPTURED[case.name] = []
    engine = Engine(build(load_config(str(_config(case, tmp)))))
    flt = engine.pipeline.filters[0]
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(engine.started.wait(), 10)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8
        # Every line read and through the filter, then delivered (or dropped by it).
        while loop.time() < deadline:
            seen = flt.counters["records"]
            passed = seen - flt.counters["drop_records"]
            if seen >= case.lines and len(got) >= passed:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # nothing more may arrive
    finally:
        engine.request_stop("case done")
        await asyncio.wait_for(task, 15)
    case.seen = flt.counters["records"]
    case.rendered = [render(t, b) for t, b in got]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    tmp = tmp_path_factory.mktemp("k8s_conformance")

    async def main() -> None:
        outcomes = await asyncio.gather(*(_run(c, tmp) for c in CASES), return_exceptions=True)
        for case, outcome in zip(CASES, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                case.error = repr(outcome)

    asyncio.run(main())
    return {c.name: c for c in CASES}


def _expected_text(case: Case) -> str | None:
    if case.expected == 0:
        return None
    base = case.log.rsplit(".", 1)[0]
    suffix = f"_{case.stream}" if case.stream else ""
    for candidate in (f"{base}{suffix}.out", f"{base}.out"):
        path = DATA / "out" / candidate
        if path.is_file():
            return path.read_text().rstrip("\n")
    raise AssertionError(f"no .out file for {case.name}")


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_case(name: str, results: dict[str, Case]) -> None:
    case = results[name]
    assert not case.error, case.error
    assert case.seen == case.lines, "not every line of the file reached the filter"
    counted = [r for r in case.rendered
               if not case.stream or f'"stream":"{case.stream}"' in r]
    want = _expected_text(case)
    if want is None:
        assert counted == [], "records of an excluded stream were delivered"
        return
    matching = [r for r in counted if want in r]
    assert len(matching) == case.expected, (
        f"expected {case.expected} record(s) containing\n{want}\ngot:\n" + "\n".join(counted))


def test_every_case_is_here() -> None:
    """The README lists 96 tests, 3 of them special: 93 log-file cases run above."""
    assert len(CASES) == 93
    assert len({c.name for c in CASES}) == 93
    assert all(re.fullmatch(r"kube_[a-z0-9_\-]+", c.name) for c in CASES)
    assert orjson.loads(b"{}") == {}
