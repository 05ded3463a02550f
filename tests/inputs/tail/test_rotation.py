"""Rotation under load: a writer process appends >= 20k lines/s and rotates every 2 MB."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from pathlib import Path

from tests.engine.harness import wait_for
from tests.inputs.tail.helpers import aio, running

WRITER = Path(__file__).with_name("writer.py")
LINES = 120_000  # 50 bytes each: 6 MB, two rotations
RATE = 25_000


async def write(path: Path, mode: str, report: Path, rate: int = RATE,
                lines: int = LINES) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), str(path), str(lines), str(rate), "2000000", mode,
        str(report))
    assert await proc.wait() == 0
    result: dict[str, object] = json.loads(report.read_text())
    return result


def numbers(logs: list[str]) -> list[int]:
    return [int(line.split(" ", 1)[0]) for line in logs]


@aio
async def test_rename_rotation_under_load_every_line_once_in_order(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    async with running({"path": str(log), "rotate_wait": "1", "refresh_interval": "1",
                        "db": str(tmp_path / "db")}, {"flush": 0.2}) as run:
        await asyncio.sleep(0.2)
        report = await write(log, "rename", tmp_path / "report.json")
        assert LINES / float(report["seconds"]) >= 20_000  # type: ignore[arg-type]
        await run.wait_records(LINES, timeout=30)
        await asyncio.sleep(0.3)
        got = numbers(run.logs())
        assert len(got) == LINES and sorted(got) == list(range(LINES))  # each line once
        starts = report["starts"]
        assert isinstance(starts, list) and len(starts) == 3
        # In order within every generation of the file.
        bounds = [*starts, LINES]
        for lo, hi in itertools.pairwise(bounds):
            gen = [n for n in got if lo <= n < hi]
            assert gen == list(range(lo, hi))
        await wait_for(lambda: run.counters["files_rotated"] == 2, 5)
        await wait_for(lambda: run.counters["files_closed"] == 2, 5)
        assert run.counters["files_opened"] == 3


@aio
async def test_copytruncate_under_load_loses_only_the_inherent_window(tmp_path: Path) -> None:
    """copytruncate: the lines written after the reader's last read and before the truncate
    are only in the copy (not followed), so they can be lost; nothing is duplicated, order
    is kept, and any gap ends exactly at a truncation point."""
    log = tmp_path / "app.log"
    log.touch()
    async with running({"path": str(log), "db": str(tmp_path / "db")},
                       {"flush": 0.2}) as run:
        await asyncio.sleep(0.2)
        report = await write(log, "copytruncate", tmp_path / "report.json")
        starts = report["starts"]
        assert isinstance(starts, list)
        await wait_for(lambda: run.sink.delivered and
                       run.logs()[-1].startswith(f"{LINES - 1:08d}"), 30)
        await asyncio.sleep(0.3)
        got = numbers(run.logs())
        assert got == sorted(set(got))  # in order, no duplicates
        missing = sorted(set(range(LINES)) - set(got))
        # Every missing run of lines ends right before a truncation point.
        runs: list[tuple[int, int]] = []
        for n in missing:
            if runs and runs[-1][1] == n:
                runs[-1] = (runs[-1][0], n + 1)
            else:
                runs.append((n, n + 1))
        assert all(end in starts for _, end in runs), runs
        assert len(missing) < LINES // 10
        print(f"copytruncate: {len(missing)} of {LINES} lines in the window")
        assert run.counters["files_rotated"] == 0


@aio
async def test_copytruncate_with_a_quiet_moment_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    async with running({"path": str(log)}, {"flush": 0.1}) as run:
        await asyncio.sleep(0.2)
        with log.open("a") as fh:
            fh.write("".join(f"{i:08d} a\n" for i in range(1000)))
        await run.wait_records(1000)
        subprocess.run(["cp", str(log), f"{log}.1"], check=True)
        log.write_text("")
        with log.open("a") as fh:
            fh.write("".join(f"{i:08d} b\n" for i in range(1000, 1500)))
        await run.wait_records(1500)
        assert numbers(run.logs()) == list(range(1500))


@aio
async def test_rotated_file_is_drained_while_the_input_is_paused(tmp_path: Path) -> None:
    """Mem_Buf_Limit pauses the input while the output is stuck; the file is rotated and the
    writer keeps writing; with Rotate_Wait 0 nothing of the old file may be dropped."""
    log = tmp_path / "app.log"
    log.write_text("".join(f"{i:08d} {'y' * 60}\n" for i in range(20_000)))
    async with running({"path": str(log), "read_from_head": "on", "rotate_wait": "0",
                        "mem_buf_limit": "100KB", "watcher_interval": "1"},
                       {"flush": 0.1}) as run:
        run.sink.gate = asyncio.Event()
        await wait_for(lambda: run.engine.inputs[0].paused, 5)
        log.rename(f"{log}.1")
        log.write_text("".join(f"{i:08d} new\n" for i in range(20_000, 20_100)))
        await asyncio.sleep(2.5)  # several watcher periods while paused
        run.sink.gate.set()
        await run.wait_records(20_100, timeout=20)
        assert sorted(numbers(run.logs())) == list(range(20_100))


@aio
async def test_rotated_file_not_delivered_before_a_stop_is_read_after_restart(
        tmp_path: Path) -> None:
    """The output never confirms the rotated file's last lines before the agent stops: the
    restarted agent finds the rotated file from its DB row and reads what is missing."""
    log, db = tmp_path / "app.log", tmp_path / "db"
    log.write_text("".join(f"{i:08d} a\n" for i in range(100)))
    props = {"path": str(log), "read_from_head": "on", "db": str(db), "rotate_wait": "30",
             "watcher_interval": "1"}
    async with running(props, {"grace": 0.3}) as run:
        await run.wait_records(100)
        await asyncio.sleep(0.4)  # committed
        run.sink.gate = asyncio.Event()  # from now on nothing is delivered
        with log.open("a") as fh:
            fh.write("".join(f"{i:08d} b\n" for i in range(100, 150)))
        log.rename(f"{log}.1")
        log.write_text("".join(f"{i:08d} c\n" for i in range(150, 160)))
        await wait_for(lambda: run.counters["files_rotated"] == 1, 5)
        await wait_for(lambda: len(run.sink.calls) >= 2, 5)
    async with running(props) as run:
        await run.wait_records(60, timeout=10)
        await asyncio.sleep(0.3)
        assert sorted(numbers(run.logs())) == list(range(100, 160))
