"""Bad input never crashes the tail input; what is skipped is counted."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

from rillet.outputs.formats import bodies_fb_json
from tests.inputs.tail.helpers import aio, running

DOCKER = {"docker_mode": "on", "parser": "docker", "read_from_head": "on"}


@aio
async def test_invalid_json_docker_lines_are_kept_raw(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b'{"log":"fine\\n","stream":"stdout","time":"2024-05-01T10:00:00.1Z"}\n'
                    b'{"log":"unterminated\n'
                    b'[1,2,3]\n'
                    b'{"log":"after\\n","stream":"stdout","time":"2024-05-01T10:00:01.2Z"}\n')
    async with running({"path": str(log), **DOCKER}) as run:
        recs = await run.wait_records(4)
        assert recs == [
            {"log": "fine\n", "stream": "stdout", "time": "2024-05-01T10:00:00.1Z"},
            {"log": '{"log":"unterminated'}, {"log": "[1,2,3]"},
            {"log": "after\n", "stream": "stdout", "time": "2024-05-01T10:00:01.2Z"}]
        assert run.engine.pipeline.inputs[0].counters.get("errors", 0) == 0


@aio
async def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"ok \xc3\xa9\n"
                    b"bad \xff\xfe end\n"
                    b'{"log":"bad \xff\\n","stream":"stdout","time":"2024-05-01T10:00:00Z"}\n')
    async with running({"path": str(log), "read_from_head": "on"}) as run:
        recs = await run.wait_records(3)
        assert recs[0] == {"log": "ok é"}
        assert recs[1] == {"log": "bad \ufffd\ufffd end"}
        assert bodies_fb_json(run.sink.delivered)  # every record serializes
    async with running({"path": str(log), **DOCKER}) as run:
        recs = await run.wait_records(3)
        assert recs[2]["log"] == "bad \ufffd\n"


@aio
async def test_a_10_mb_line_is_skipped_and_the_file_kept(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    with log.open("wb") as fh:
        fh.write(b"before\n")
        fh.write(b"z" * 10_000_000 + b"\n")
        fh.write(b"after\n")
    async with running({"path": str(log), "read_from_head": "on",
                        "db": str(tmp_path / "db")}) as run:
        recs = await run.wait_records(2, timeout=15)
        assert recs == [{"log": "before"}, {"log": "after"}]
        assert run.counters["long_line_skipped"] == 1
        with log.open("ab") as fh:
            fh.write(b"still followed\n")
        await run.wait_records(3)


@aio
async def test_long_lines_truncated_when_asked(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"x" * 50_000 + b"\n" + "é".encode() * 40_000 + b"\nshort\n")
    async with running({"path": str(log), "read_from_head": "on",
                        "truncate_long_lines": "on"}) as run:
        recs = await run.wait_records(3)
        assert len(recs[0]["log"]) == 32767
        assert recs[1]["log"] == "é" * (32767 // 2)  # never half a character
        assert recs[2] == {"log": "short"}
        assert run.counters["long_line_truncated"] == 2


@aio
async def test_binary_garbage_and_nul_bytes(tmp_path: Path) -> None:
    rng = random.Random(3)
    garbage = bytes(rng.getrandbits(8) for _ in range(300_000))
    log = tmp_path / "a.log"
    log.write_bytes(b"\x00" * 5000 + b"after a hole\n" + garbage + b"\nend\n")
    for props in ({"read_from_head": "on"}, DOCKER):
        async with running({"path": str(log), **props}) as run:
            await asyncio.sleep(0.2)
            await run.wait_records(3, timeout=10)
            logs = run.logs()
            assert logs[0] == "after a hole"
            assert logs[-1] == "end"
            bodies_fb_json(run.sink.delivered)
            counters = run.counters
            assert counters["long_line_skipped"] >= 0


@aio
async def test_file_truncated_under_the_reader(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    async with running({"path": str(log), "read_from_head": "on",
                        "db": str(tmp_path / "db")}) as run:
        await run.wait_records(5000)
        with log.open("r+") as fh:
            fh.truncate(100)
        await asyncio.sleep(0.3)
        with log.open("a") as fh:
            fh.write("fresh\n")
        # Truncated to 100 bytes (13 lines and "line 1"), then "fresh\n": read from 0.
        await run.wait_records(5000 + 14)
        assert run.logs()[-14:] == [f"line {i}" for i in range(13)] + ["line 1fresh"]
        with log.open("r+") as fh:  # truncated to nothing, then written past the old size
            fh.truncate(0)
        os.truncate(log, 0)
        await asyncio.sleep(0.3)
        with log.open("a") as fh:
            fh.write("again\n")
        recs = await run.wait_records(5015)
        assert recs[-1] == {"log": "again"}
