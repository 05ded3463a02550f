"""Hot reload: in-process under load, an invalid configuration, and the real CLI with SIGHUP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from rillet.config.model import ConfigError
from rillet.engine.pipeline import Pipeline
from tests.engine.harness import wait_for
from tests.monitor.client import get_json, request
from tests.monitor.helpers import agent_running, make, port


def _dummy_to_file(out: Path, message: str, rate: int = 2000) -> Any:
    return make({"hot_reload": "on", "flush": 0.05, "grace": 5},
                inputs=[{"name": "dummy", "tag": "d", "rate": rate,
                         "dummy": orjson.dumps({"m": message}).decode()}],
                outputs=[{"name": "file", "match": "*", "path": str(out), "file": "out.log",
                          "format": "plain"}])


def test_reload_under_load_loses_nothing(tmp_path: Path) -> None:
    configs = iter([_dummy_to_file(tmp_path, f"gen{i}") for i in range(1, 4)])

    def reload() -> Pipeline:
        result: Pipeline = next(configs)()
        return result

    async def main() -> tuple[int, list[str]]:
        async with agent_running(_dummy_to_file(tmp_path, "gen0"), reload) as agent:
            p = port(agent)
            engines = []
            for n in range(1, 4):
                await asyncio.sleep(0.3)
                engines.append(agent.engine)
                status, _, body = await request(p, "/api/v2/reload", "POST", b"{}")
                assert (status, orjson.loads(body)) == (200, {"reload": "done", "status": 0})
                await wait_for(lambda n=n: agent.reloads == n and agent.readiness() == "ready",
                               10)
            assert await get_json(p, "/api/v2/reload") == (200, {"hot_reload_count": 3})
            _, _, text = await request(p, "/api/v2/metrics/prometheus")
            assert b"fluentbit_hot_reloaded_times{hostname=" in text
            assert any(line.endswith(" 3") and line.startswith("fluentbit_hot_reloaded_times")
                       for line in text.decode().splitlines())
            await asyncio.sleep(0.3)
            final = agent.engine
        assert final is not None
        generated = sum(e["metrics"]["input"]["dummy.0"]["records"] for e in agent.finished)
        generated += final.pipeline.metrics.groups["input"]["dummy.0"]["records"]
        assert all(e["undelivered_records"] == 0 for e in agent.finished)
        return generated, (tmp_path / "out.log").read_text().splitlines()

    generated, lines = asyncio.run(main())
    assert generated > 1000
    assert len(lines) == generated  # every record of every generation, no loss, no duplicate
    messages = [orjson.loads(line)["m"] for line in lines]
    # Generations follow each other: all of gen0, then gen1, ...
    assert messages == sorted(messages)
    assert set(messages) == {"gen0", "gen1", "gen2", "gen3"}


def test_invalid_reload_keeps_the_old_pipeline(tmp_path: Path) -> None:
    def broken() -> Pipeline:
        raise ConfigError(["new.conf:3: [INPUT] dummy: ratee: unknown configuration property "
                           "'ratee'"])

    async def main() -> None:
        async with agent_running(_dummy_to_file(tmp_path, "old"), broken) as agent:
            p = port(agent)
            engine = agent.engine
            status, _, body = await request(p, "/api/v2/reload", "PUT")
            answer = orjson.loads(body)
            assert status == 400
            assert answer["reload"] == "failed" and "ratee" in answer["errors"][0]
            assert agent.engine is engine and agent.readiness() == "ready"
            assert agent.reloads == 0 and agent.reload_failures == 1
            assert engine is not None
            before = engine.pipeline.metrics.groups["output"]["file.0"]["proc_records"]
            await wait_for(lambda: engine.pipeline.metrics.groups["output"]["file.0"]
                           ["proc_records"] > before + 100, 5)
            _, _, text = await request(p, "/api/v2/metrics/prometheus")
            assert b"rillet_hot_reload_failures_total 1\n" in text
            assert await get_json(p, "/api/v2/reload") == (200, {"hot_reload_count": 0})

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return orjson.loads(resp.read())


CONF = """\
[SERVICE]
    Flush        0.1
    Grace        5
    HTTP_Listen  127.0.0.1
    Log_Level    info

[INPUT]
    Name    dummy
    Tag     d
    Rate    200
    Dummy   {{"m": "{message}"}}

[OUTPUT]
    Name    file
    Match   *
    Path    {out}
    File    out.log
    Format  plain
"""


def _wait(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_sighup_reloads_the_cli_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(CONF.format(message="one", out=tmp_path))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rillet", "-c", str(conf), "-H", "-P",
                             str(port), "-Y"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait(lambda: _get(port, "/api/v2/ready") == {"status": "ready"})
        _wait(lambda: '"one"' in (tmp_path / "out.log").read_text())
        conf.write_text(CONF.format(message="two", out=tmp_path))
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: _get(port, "/api/v2/reload") == {"hot_reload_count": 1})
        _wait(lambda: '"two"' in (tmp_path / "out.log").read_text())
        # A broken file: refused, the running pipeline goes on.
        conf.write_text(CONF.format(message="three", out=tmp_path).replace("Rate ", "Ratee "))
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert _get(port, "/api/v2/reload") == {"hot_reload_count": 1}
        assert _get(port, "/api/v2/ready") == {"status": "ready"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "[http_server] listen iface=127.0.0.1 tcp_port=" in text
    assert "hot reload done (1 so far)" in text
    assert "ratee: unknown configuration property 'ratee'" in text
    assert "hot reload failed: 1 error(s) in the new configuration" in text
    lines = (tmp_path / "out.log").read_text().splitlines()
    assert {orjson.loads(line)["m"] for line in lines} == {"one", "two"}
    assert os.path.exists(conf)


def test_reload_with_tail_resumes_from_the_committed_offsets(tmp_path: Path) -> None:
    """A writer appends while the pipeline is reloaded twice: every line arrives, once."""
    log = tmp_path / "app.log"
    log.write_text("")
    out = tmp_path / "out"
    out.mkdir()

    def tail_to_file() -> Pipeline:
        result: Pipeline = make({"hot_reload": "on", "flush": 0.05, "grace": 5},
                                inputs=[{"name": "tail", "tag": "app", "path": str(log),
                                         "db": str(tmp_path / "tail.db"),
                                         "read_from_head": "on", "refresh_interval": "0.2"}],
                                outputs=[{"name": "file", "match": "*", "path": str(out),
                                          "file": "out.log", "format": "plain"}])()
        return result

    total = 6000

    async def main() -> None:
        async with agent_running(tail_to_file) as agent:
            p = port(agent)
            with log.open("a") as fh:
                for i in range(total):
                    fh.write(f"line {i}\n")
                    if i % 200 == 0:
                        fh.flush()
                        await asyncio.sleep(0.01)
                    if i in (2000, 4000):
                        fh.flush()
                        status, _, _ = await request(p, "/api/v2/reload", "POST")
                        assert status == 200
                        await wait_for(lambda i=i: agent.reloads == i // 2000
                                       and agent.readiness() == "ready", 10)
            path = out / "out.log"
            await wait_for(lambda: path.exists()
                           and len(path.read_text().splitlines()) >= total, 15)
            await asyncio.sleep(0.3)

    asyncio.run(main())
    got = [orjson.loads(line)["log"] for line in (out / "out.log").read_text().splitlines()]
    assert set(got) == {f"line {i}" for i in range(total)}
    assert len(got) == total  # the drain delivered and committed everything: no duplicate
