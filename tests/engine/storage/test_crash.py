"""A real agent (``python -m rillet -c conf``) killed with SIGKILL, then restarted: with
filesystem storage every line is delivered at least once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

CONF = """\
[SERVICE]
    flush           0.2
    grace           2
    log_level       info
    scheduler.base  0.2
    scheduler.cap   0.5
    storage.path    {storage}

[INPUT]
    name            tail
    path            {log}
    db              {db}
    read_from_head  on
    refresh_interval 1
    storage.type    filesystem

[OUTPUT]
    name            file
    match           *
    path            {out}
    file            out.log
    format          plain
    retry_limit     no_limits
"""


def _write(log: Path, start: int, stop: int) -> None:
    with log.open("a") as fh:
        fh.write("".join(f"line-{i:06d}\n" for i in range(start, stop)))


def _start(conf: Path, tmp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "rillet", "-c", str(conf)],
                            cwd=os.getcwd(), stdout=subprocess.DEVNULL,
                            stderr=(tmp / "agent.log").open("ab"))


def _delivered(out: Path) -> list[str]:
    path = out / "out.log"
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    return [orjson.loads(line)["log"] for line in lines if line.endswith(b"}")]


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigkill_then_restart_loses_nothing(tmp_path: Path) -> None:
    storage, out, log = tmp_path / "storage", tmp_path / "out", tmp_path / "app.log"
    conf = tmp_path / "agent.conf"
    conf.write_text(CONF.format(storage=storage, log=log, db=tmp_path / "tail.db", out=out))
    _write(log, 0, 5000)

    # 1. The output's directory is missing: every flush fails and is retried. The chunks are
    #    on disk (so tail's offsets move on); the agent is killed during delivery.
    agent = _start(conf, tmp_path)
    try:
        assert _wait(lambda: any(storage.rglob("*.flb")), 15), (tmp_path / "agent.log")\
            .read_text()
        time.sleep(0.5)
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    assert list(storage.rglob("*.flb"))

    # 2. Output back, more lines, killed during ingestion this time.
    out.mkdir()
    _write(log, 5000, 60000)
    agent = _start(conf, tmp_path)
    try:
        assert _wait(lambda: len(_delivered(out)) > 0, 15)
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)

    # 3. A clean run delivers the rest.
    agent = _start(conf, tmp_path)
    try:
        expected = {f"line-{i:06d}" for i in range(60000)}
        assert _wait(lambda: set(_delivered(out)) >= expected, 30), \
            (tmp_path / "agent.log").read_text()[-3000:]
        assert _wait(lambda: not list(storage.rglob("*.flb")), 10)
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0
    lines = _delivered(out)
    assert set(lines) == expected  # nothing lost, nothing invented
    print(f"delivered {len(lines)} lines for {len(expected)}: "
          f"{len(lines) - len(expected)} duplicates")


def test_sigterm_with_output_down_persists_and_reads_nothing_twice(tmp_path: Path) -> None:
    storage, out, log = tmp_path / "storage", tmp_path / "out", tmp_path / "app.log"
    conf = tmp_path / "agent.conf"
    text = CONF.format(storage=storage, log=log, db=tmp_path / "tail.db", out=out)
    conf.write_text(text.replace("storage.type    filesystem", "storage.type    memory")
                    .replace("grace           2", "grace           1"))
    _write(log, 0, 3000)
    agent = _start(conf, tmp_path)
    try:  # the output's directory is missing: nothing can be delivered
        assert _wait(lambda: "failed to flush" in (tmp_path / "agent.log").read_text(), 15)
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0
    assert list(storage.rglob("*.flb"))  # memory storage, yet persisted at exit

    out.mkdir()
    agent = _start(conf, tmp_path)
    try:
        expected = [f"line-{i:06d}" for i in range(3000)]
        assert _wait(lambda: len(_delivered(out)) >= 3000, 20)
        time.sleep(0.5)
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0
    # Acknowledged when written, so tail did not read them again: exactly once, in order.
    assert _delivered(out) == expected
    assert not list(storage.rglob("*.flb"))
