"""``rillet trace``: the seed's configuration and nginx line, Docker_Mode, filters and drops."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import tests.engine.plugins  # noqa: F401  (registers test_mark)
from rillet.commands.trace import render_text, trace
from rillet.config.loader import load_config
from rillet.engine import plugin as plugins
from tests.shared_data import SHARED

SEED = SHARED / "reference" / "seed" / "fluent-bit.conf"
NGINX = ('{"log":"10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] \\"GET / HTTP/1.1\\" 200 612 '
         '\\"-\\" \\"hey/0.0.1\\" \\"52.95.4.2\\"\\n","stream":"stdout",'
         '"time":"2019-12-19T17:41:12.70630778Z"}')
POD_FILE = ("/var/log/containers/nginx-5468c5d4d7-n2swr_default_nginx-"
            "b90a89309ac90fff2972822c66f11736933000c5aa6376dff0c11a441fa427ee.log")
TAG = "kube" + POD_FILE.replace("/", ".")


@pytest.fixture
def seed_conf(tmp_path: Path) -> Path:
    if not SEED.exists():
        pytest.skip("/work/shared is absent")
    # The seed names /fluent-bit/parsers/parsers.conf; rillet's built-in parsers are the same.
    text = SEED.read_text().replace("Parsers_File /fluent-bit/parsers/parsers.conf",
                                    "Log_Level info")
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(text)
    return conf


def test_seed_config_and_nginx_line(seed_conf: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "rillet", "trace", "-c", str(seed_conf),
                          "--path", POD_FILE, "--line", NGINX, "--json"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    (result,) = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert result["tag"] == TAG
    first = result["stages"][0]
    assert first["stage"] == "input" and first["plugin"] == "tail"
    # Parser docker (Time_Keep On) + Docker_Mode: the seed's record before the kubernetes filter.
    assert first["record"] == orjson.loads(NGINX)
    assert first["time"] == "2019-12-19T17:41:12.706307780Z"
    assert first["note"] == f"file {POD_FILE}; parser docker; Docker_Mode"
    kube = result["stages"][1]
    assert kube["stage"] == "filter" and kube["plugin"] == "kubernetes"
    if plugins.lookup("filter", "kubernetes") is None:
        assert "unknown filter plugin 'kubernetes'" in kube["note"]
    (out,) = result["outputs"]
    assert out["plugin"] == "cloudwatch"
    assert "fluentbit-cloudwatch" in out["destination"]
    assert f"fluentbit-{TAG}" in out["destination"]
    assert result["dropped_by"] is None

    text = subprocess.run([sys.executable, "-m", "rillet", "trace", "-c", str(seed_conf),
                           "--path", POD_FILE, "--line", NGINX], capture_output=True, text=True,
                          timeout=30).stdout
    assert f"record from line 1, tag {TAG}" in text
    assert "-> output cloudwatch_logs.0 (cloudwatch): log group 'fluentbit-cloudwatch'" in text \
        or "-> output cloudwatch.0 (cloudwatch)" in text


def test_docker_mode_rejoins_split_lines(seed_conf: Path, tmp_path: Path) -> None:
    lines = tmp_path / "lines.log"
    lines.write_text(
        '{"log":"first half, ","stream":"stdout","time":"2019-12-19T17:41:12.1Z"}\n'
        '{"log":"second half\\n","stream":"stdout","time":"2019-12-19T17:41:12.2Z"}\n'
        'not json at all\n')
    res = subprocess.run([sys.executable, "-m", "rillet", "trace", "-c", str(seed_conf),
                          "--path", POD_FILE, "--input", str(lines), "--json"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    results = [orjson.loads(line) for line in res.stdout.splitlines()]
    records = [r["stages"][0]["record"] for r in results]
    assert records[0]["log"] == "first half, second half\n"
    assert results[0]["line"] == 2
    assert records[1] == {"log": "not json at all"}


CONF = """\
[INPUT]
    Name  dummy
    Tag   app.web

[FILTER]
    Name  test_mark
    Match app.*
    Mark  one

[FILTER]
    Name  test_mark
    Match other.*
    Mark  never

[FILTER]
    Name  test_mark
    Match app.*
    Mark  two

[OUTPUT]
    Name  file
    Match app.*
    Path  /tmp/nowhere

[OUTPUT]
    Name  null
    Match other.*
"""


def test_filters_in_order_drops_and_outputs(tmp_path: Path) -> None:
    conf = tmp_path / "f.conf"
    conf.write_text(CONF)
    results = asyncio.run(trace(load_config(str(conf)),
                                [b'{"msg":"hi"}', b'{"msg":"bye","drop":true}']))
    kept, dropped = results
    assert [s.name for s in kept.stages] == ["dummy.0", "test_mark.0", "test_mark.2"]
    assert kept.stages[-1].record == {"msg": "hi", "marks": ["one", "two"]}
    assert kept.outputs == [{"name": "file.0", "plugin": "file",
                             "destination": "path '/tmp/nowhere'"}]
    assert dropped.dropped_by == "test_mark.0"
    assert dropped.outputs == []
    text = render_text(results)
    assert "test_mark.0 (test_mark): DROPPED" in text
    assert "-> output file.0 (file): path '/tmp/nowhere'" in text


def test_bad_arguments_and_configs(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rillet", "trace", *args],
                              capture_output=True, text=True, timeout=30)

    conf = tmp_path / "f.conf"
    conf.write_text("[INPUT]\n    Name  tail\n    Path  /x/*.log\n    Parser nosuch\n")
    res = run("-c", str(conf), "--line", "x")
    assert res.returncode == 2 and "nosuch" in res.stderr
    assert run("-c", str(conf)).returncode == 2  # no line given
    assert run("-c", str(tmp_path / "missing.conf"), "--line", "x").returncode == 2
