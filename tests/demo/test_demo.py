"""`make run` (`rillet demo`) end to end: real processes and servers on loopback, output checked."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _events(out: str) -> list[dict[str, Any]]:
    """The records the demo printed (indented JSON blocks, two-space margin)."""
    blocks = re.findall(r"^  \{\n.*?^  \}$", out, flags=re.S | re.M)
    return [orjson.loads(b) for b in blocks]


def _summary(out: str) -> dict[str, str]:
    rows = {}
    for line in out.split("\nsummary\n", 1)[1].splitlines():
        m = re.match(r"  (\S+(?: \S+)*?)\s{2,}([\d,.]+)\s", line)
        if m:
            rows[m.group(1)] = m.group(2).replace(",", "")
    return rows


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of an exited child counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _started(out: str) -> tuple[int, int, Path]:
    """(moto port, rillet pid, the demo's folder) from the demo's output."""
    moto = int(re.search(r"moto \(CloudWatch Logs\)\s+http://127\.0\.0\.1:(\d+)", out)[1])  # type: ignore[index]
    pid = int(re.search(r"rillet\s+pid (\d+)", out)[1])  # type: ignore[index]
    folder = re.search(r"(/\S*rillet-demo-[^/\s]+)", out)
    return moto, pid, Path(folder[1]) if folder else Path("/nonexistent")


def test_make_run_ships_the_seed_records_and_cleans_up() -> None:
    proc = subprocess.run(["make", "--no-print-directory", "run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=170)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    nginx, app = _events(out)
    # The nginx event as the seed shows it: the access line parsed by the annotated parser.
    assert list(nginx)[:5] == ["log", "stream", "time", "data", "kubernetes"]
    assert nginx["data"]["agent"] == "hey/0.0.1" and nginx["data"]["code"] == "200"
    assert nginx["data"]["method"] == "GET" and nginx["data"]["path"] == "/"
    kube = nginx["kubernetes"]
    assert kube["annotations"]["fluentbit.io/parser"] == "nginx"
    assert kube["container_name"] == "nginx" and kube["container_image"] == "nginx:1.17-alpine"
    assert kube["pod_name"].startswith("nginx-5468c5d4d7-") and kube["namespace_name"] == "default"
    assert re.fullmatch(r"[0-9a-f]{64}", kube["docker_id"])
    assert nginx["log"].endswith('"hey/0.0.1" "52.95.4.2"\n')
    # The JSON app: its object decoded under data, the original text kept in log.
    assert app["data"]["service"] == "user-service"
    assert orjson.loads(app["log"]) == app["data"]
    assert app["kubernetes"]["namespace_name"] == "shop"
    stream = re.search(r"log stream (fluentbit-kube\.\S+nginx-\S+\.log)", out)
    assert stream and ".var.log.containers.nginx-5468c5d4d7-" in stream[1]
    rows = _summary(out)
    written, delivered = int(rows["lines written"]), int(rows["records delivered"])
    excluded = int(rows["records excluded"])
    assert excluded > 0 and delivered > 0 and delivered + excluded == written
    assert int(rows["streams"]) == 7            # 3 nginx, 3 JSON apps, 1 Java; none excluded
    assert 0 < float(rows["seconds"]) < 60
    assert float(rows["rillet CPU seconds"]) > 0 and re.search(r"peak RSS \d+ MB", out)
    assert "MISMATCH" not in out and "rillet demo failed" not in out
    moto, pid, folder = _started(out)
    assert _port_closed(moto) and _gone(pid) and not folder.exists()


def _demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "rillet", "demo", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 90) -> str:
    assert proc.stdout is not None
    out = ""
    deadline = time.monotonic() + timeout
    while marker not in out:
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {marker!r} in the demo's output:\n{out}")
        out += line
    return out


def test_keep_leaves_servers_up_until_ctrl_c() -> None:
    proc = _demo("--keep", "--lines", "200", "-n", "30")
    out = _read_until(proc, "echo '")
    moto, pid, folder = _started(out)
    assert "describe-log-streams --log-group-name fluentbit-cloudwatch" in out
    assert not _port_closed(moto) and not _gone(pid) and folder.is_dir()
    kubeconfig = re.search(r"kubectl --kubeconfig (\S+)", out)
    assert kubeconfig and Path(kubeconfig[1]).is_file()
    # The printed command appends a line that arrives in CloudWatch Logs while --keep runs.
    echo = re.search(r"echo '(.+)' >> (\S+)", out)
    assert echo is not None
    with open(echo[2], "a", encoding="utf-8") as f:
        f.write(echo[1] + "\n")
    from rillet.devtools.moto_server import MotoServer

    logs = MotoServer(moto).client("logs", "us-east-2")
    name = "fluentbit-kube." + echo[2].strip("/").replace("/", ".")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = logs.get_log_events(logGroupName="fluentbit-cloudwatch", logStreamName=name,
                                  startFromHead=False, limit=1)["events"]
        if got and "hello from --keep" in got[0]["message"]:
            break
        time.sleep(0.3)
    else:
        pytest.fail("the appended line did not arrive")
    assert orjson.loads(got[0]["message"])["data"] == {"message": "hello from --keep"}
    assert proc.poll() is None                      # still serving
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + rest
    assert "interrupted" in rest
    assert _port_closed(moto) and _gone(pid) and not folder.exists()


def test_ctrl_c_while_the_pipeline_runs_stops_everything() -> None:
    proc = _demo("--lines", "20000")
    out = _read_until(proc, "load: hey")
    moto, pid, folder = _started(out)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + rest
    assert "interrupted" in rest
    assert _port_closed(moto) and _gone(pid) and not folder.exists()
