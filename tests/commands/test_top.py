"""``rillet top`` against a running agent (a real ``rillet`` process with -H)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rillet.commands.top import render

RILLET = [sys.executable, "-m", "rillet"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_top_renders_a_running_agent(tmp_path: Path) -> None:
    conf = tmp_path / "f.conf"
    conf.write_text("""\
[SERVICE]
    Flush        0.1
    HTTP_Listen  127.0.0.1

[INPUT]
    Name   dummy
    Tag    app
    Rate   200
    Alias  generator

[OUTPUT]
    Name   null
    Match  *
    Alias  sink
""")
    port = _free_port()
    agent = subprocess.Popen([*RILLET, "-c", str(conf), "-H", "-P", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/ready", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(0.3)
        res = subprocess.run([*RILLET, "top", "-P", str(port), "--once", "-i", "0.5"],
                             capture_output=True, text=True, timeout=30)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=20)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "\x1b[" not in out  # not a terminal: no colors
    assert out.startswith(f"rillet top  127.0.0.1:{port}  status ready  uptime ")
    row = next(line for line in out.splitlines() if line.startswith("generator"))
    rate = float(row.split()[1])
    assert 100 <= rate <= 300, row  # ~200 records/s
    assert re.search(r"^generator .* no +0\.0 +0$", row), row
    sink = next(line for line in out.splitlines() if line.startswith("sink"))
    assert re.search(r" ago$", sink), sink
    for header in ("INPUT", "FILTER", "OUTPUT"):
        assert re.search(rf"^{header} ", out, re.M)


def test_top_without_an_agent_fails_cleanly() -> None:
    res = subprocess.run([*RILLET, "top", "-P", str(_free_port()), "--once"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert "cannot read http://127.0.0.1:" in res.stderr


def test_render_marks_paused_inputs_and_stalled_outputs() -> None:
    before = {"time": 100.0, "input": {"tail.0": {"records": 0, "bytes": 0}},
              "output": {"cw": {"proc_records": 0, "proc_bytes": 0}}}
    now = {"time": 102.0, "status": "ready", "uptime_sec": 3700, "hot_reload_count": 2,
           "input": {"tail.0": {"records": 2000, "bytes": 4000, "paused": True,
                                "paused_seconds": 12.5, "bytes_behind": 5_000_000,
                                "files": {"/var/log/a.log": 5_000_000}}},
           "filter": {},
           "output": {"cw": {"proc_records": 0, "proc_bytes": 0, "pending_records": 10,
                             "last_success": None, "seconds_since_last_success": 300.0}}}
    frame = render(now, before, "h:1", color=True)
    plain = render(now, before, "h:1", color=False)
    assert "uptime 1h01m  reloads 2" in plain
    row = next(line for line in plain.splitlines() if line.startswith("tail.0"))
    assert row.split()[1:4] == ["1.0K", "2.0K", "2.0K"]
    assert "yes" in row and "12.5" in row and "5.0M" in row
    assert "    /var/log/a.log: 5.0MB behind" in plain
    assert "\x1b[33mtail.0" in frame  # paused: yellow
    assert "\x1b[31mcw" in frame  # pending and nothing delivered for 5 minutes: red
    assert re.search(r"^cw .* never$", plain, re.M)
