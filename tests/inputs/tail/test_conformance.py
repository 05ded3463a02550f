"""Fluent Bit's tail runtime cases (tests/runtime/in_tail.c), one test per upstream case.

Each case tails a file of /work/shared/conformance/fluent-bit/tests/runtime/data/tail/log with
``read_from_head`` through the real engine; every record is rendered as Fluent Bit's JSON and
must contain one of the lines of ``out/<case>.out``; the number of such records must be the
upstream "expected" count. Settings per case: the conformance README §2.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rillet.outputs.formats import bodies_fb_json
from tests.inputs.tail.helpers import CONFORMANCE, aio, running

pytestmark = pytest.mark.skipif(not CONFORMANCE.exists(), reason="/work/shared is absent")

SERVICE = {"flush": 0.05, "grace": 1, "log_level": "error"}


def out_lines(case: str) -> list[str]:
    text = (CONFORMANCE / "out" / f"{case}.out").read_text()
    return [line for line in text.splitlines() if line]


async def collect(props: dict[str, Any], parsers: str | None, settle: float = 0.6,
                  expected: int = 0, timeout: float = 8.0) -> list[str]:
    pf = CONFORMANCE / parsers if parsers else None
    async with running({"read_from_head": "true", **props}, SERVICE, pf) as run:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(run.sink.delivered) < expected and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(settle)  # nothing more must come
        return [b.decode() for b in bodies_fb_json(run.sink.delivered)]


def matches(records: list[str], case: str) -> int:
    lines = out_lines(case)
    return sum(1 for rec in records if any(line in rec for line in lines))


async def docker_case(case: str, expected: int, **extra: str) -> list[str]:
    records = await collect({"path": str(CONFORMANCE / "log" / f"{case}.log"),
                             "docker_mode": "on", "parser": "docker", **extra},
                            "parsers.conf", expected=expected,
                            settle=0.3 if not extra else 1.6)
    assert matches(records, case) == expected, records
    return records


@aio
async def test_in_tail_dockermode() -> None:
    records = await docker_case("dockermode", 3)
    assert records == out_lines("dockermode")


@aio
async def test_in_tail_dockermode_splitted_line() -> None:
    records = await docker_case("dockermode_splitted_line", 2)
    assert records == out_lines("dockermode_splitted_line")


@aio
async def test_in_tail_dockermode_multiple_lines() -> None:
    records = await docker_case("dockermode_multiple_lines", 2,
                                docker_mode_parser="docker_multiline", docker_mode_flush="1")
    assert records == out_lines("dockermode_multiple_lines")


@aio
async def test_in_tail_dockermode_splitted_multiple_lines() -> None:
    records = await docker_case("dockermode_splitted_multiple_lines", 2,
                                docker_mode_parser="docker_multiline", docker_mode_flush="1")
    assert records == out_lines("dockermode_splitted_multiple_lines")


@aio
async def test_in_tail_dockermode_firstline_detection() -> None:
    records = await docker_case("dockermode_firstline_detection", 5,
                                docker_mode_parser="docker_multiline", docker_mode_flush="1")
    assert records == out_lines("dockermode_firstline_detection")


@aio
async def test_in_tail_multiline_json_and_regex() -> None:
    records = await collect({"path": str(CONFORMANCE / "log" / "multiline_001.log"),
                             "multiline.parser": "multiline-json-regex"},
                            "parsers_multiline_json.conf", expected=1, settle=0.3,
                            timeout=6.0)
    assert matches(records, "multiline_001") == 1, records
    assert len(records) == 1


ENCODINGS = [("big5", "BIG5", 10), ("gb18030", "GB18030", 12), ("gbk", "GBK", 11),
             ("sjis", "ShiftJIS", 11), ("win1250", "WIN1250", 6), ("win1251", "WIN1251", 9),
             ("win1252", "WIN1252", 14), ("win1253", "WIN1253", 8), ("win1254", "WIN1254", 13),
             ("win1255", "WIN1255", 8), ("win1256", "WIN1256", 8)]


async def enc_case(name: str, enc: str, expected: int) -> None:
    case = f"generic_enc_{name}"
    records = await collect({"path": str(CONFORMANCE / "log" / f"{case}.log"),
                             "generic.encoding": enc}, "parsers.conf", expected=expected,
                            settle=0.2)
    assert matches(records, case) >= expected, records


@aio
async def test_in_tail_generic_enc_big5() -> None:
    await enc_case(*ENCODINGS[0])


@aio
async def test_in_tail_generic_enc_gb18030() -> None:
    await enc_case(*ENCODINGS[1])


@aio
async def test_in_tail_generic_enc_gbk() -> None:
    await enc_case(*ENCODINGS[2])


@aio
async def test_in_tail_generic_enc_sjis() -> None:
    await enc_case(*ENCODINGS[3])


@aio
async def test_in_tail_generic_enc_win1250() -> None:
    await enc_case(*ENCODINGS[4])


@aio
async def test_in_tail_generic_enc_win1251() -> None:
    await enc_case(*ENCODINGS[5])


@aio
async def test_in_tail_generic_enc_win1252() -> None:
    await enc_case(*ENCODINGS[6])


@aio
async def test_in_tail_generic_enc_win1253() -> None:
    await enc_case(*ENCODINGS[7])


@aio
async def test_in_tail_generic_enc_win1254() -> None:
    await enc_case(*ENCODINGS[8])


@aio
async def test_in_tail_generic_enc_win1255() -> None:
    await enc_case(*ENCODINGS[9])


@aio
async def test_in_tail_generic_enc_win1256() -> None:
    await enc_case(*ENCODINGS[10])


async def unicode_case(log: str) -> list[str]:
    records = await collect({"path": str(CONFORMANCE / "log" / log),
                             "unicode.encoding": "auto"}, None, expected=1, settle=0.2)
    assert len(records) >= 1
    raw = (CONFORMANCE / "log" / log).read_bytes()
    codec = "utf-16-le" if raw[:2] == b"\xff\xfe" else "utf-16-be"
    text = raw[2:].decode(codec)
    expected = [line for line in text.split("\n")]
    if expected and expected[-1] == "":
        expected.pop()
    assert [r for r in records] == [bodies_fb_json([{"log": t}])[0].decode() for t in expected]
    return records


@aio
async def test_in_tail_utf16le_c() -> None:
    await unicode_case("unicode_c.log")


@aio
async def test_in_tail_utf16be_c() -> None:
    await unicode_case("unicode_be_c.log")


@aio
async def test_in_tail_utf16le_j() -> None:
    await unicode_case("unicode_j.log")


@aio
async def test_in_tail_utf16be_j() -> None:
    await unicode_case("unicode_be_j.log")


@aio
async def test_in_tail_utf16le_subdivision_flags() -> None:
    await unicode_case("unicode_subdivision_flags.log")


@aio
async def test_in_tail_utf16be_subdivision_flags() -> None:
    await unicode_case("unicode_subdivision_flags_be.log")


@aio
async def test_in_tail_issue_3943() -> None:
    records = await collect({"path": str(CONFORMANCE / "log" / "3943.log")}, None,
                            expected=2, settle=0.2)
    assert records == ['{"log":"bbb"}', '{"log":""}']
    assert matches(records, "3943") == 2


@aio
async def test_in_tail_skip_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    path.write_bytes(b"before_long_line\n" + b"0123456789abcdef" * 2 * 1024 + b"\n"
                     b"after_long_line\n")
    records = await collect({"path": str(path), "skip_long_lines": "on"}, None, expected=2,
                            settle=0.2)
    assert matches(records, "skip_long_lines") == 2
    assert records == out_lines("skip_long_lines")
