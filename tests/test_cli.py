"""The command line, run as a real process: fluent-bit's flags, dry run, signals, log format."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

RILLET = [sys.executable, "-m", "rillet"]
LOG_LINE = re.compile(r"^\[\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\] \[(error| warn| info|debug|trace)\] "
                      r"\[[^\]]+\] ")


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RILLET, *args], capture_output=True, text=True, timeout=timeout)


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*RILLET, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> tuple[bytes, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    return out, err.decode()


def wait_started(proc: subprocess.Popen[bytes], timeout: float = 10) -> bytes:
    """Wait for the engine's 'started' line; return the stderr read so far (stdout untouched)."""
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        chunk = proc.stderr.read() or b""
        seen += chunk
        if b"[engine] started" in seen:
            os.set_blocking(proc.stderr.fileno(), True)
            return seen
        time.sleep(0.02)
    raise AssertionError(f"engine did not start: {seen!r}")


def test_version() -> None:
    res = run("-V")
    assert res.returncode == 0
    assert res.stdout.startswith("rillet v")


def test_help_lists_plugins() -> None:
    res = run("-h")
    assert res.returncode == 0
    assert "--dry-run" in res.stdout and "dummy" in res.stdout and "stdout" in res.stdout


def test_plugin_help_prints_the_option_table() -> None:
    for args in (("-h", "dummy"), ("-i", "dummy", "-h")):
        res = run(*args)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("input plugin 'dummy': Generate dummy data")
        for name in ("samples", "rate", "copies", "fixed_timestamp", "mem_buf_limit", "tag"):
            assert re.search(rf"^  {re.escape(name)} ", res.stdout, re.M), name


def test_unknown_plugin_help_is_an_error() -> None:
    res = run("-h", "nosuch")
    assert res.returncode == 1
    assert "unknown plugin 'nosuch'" in res.stderr


def test_prop_without_a_plugin_is_a_usage_error() -> None:
    res = run("-p", "a=b")
    assert res.returncode == 1
    assert "'-p' must follow an input, filter or output" in res.stderr


def test_input_output_from_flags_then_sigterm_exits_zero() -> None:
    proc = start("-i", "dummy", "-p", "samples=3", "-p", "rate=50", "-t", "t1",
                 "-o", "stdout", "-m", "t*", "-p", "format=json_lines",
                 "-p", "json_date_key=false", "-f", "0.1")
    wait_started(proc)
    time.sleep(0.8)
    out, err = stop(proc)
    assert proc.returncode == 0, err
    assert out.splitlines() == [b'{"message":"dummy"}'] * 3


def test_sigterm_delivers_what_is_buffered_within_grace(tmp_path: Path) -> None:
    # Flush is 60 s away: only the shutdown drain can deliver these records.
    proc = start("-i", "dummy", "-p", "samples=4", "-p", "rate=100", "-p", "copies=2",
                 "-o", "stdout", "-p", "format=json_lines", "-f", "60")
    wait_started(proc)
    time.sleep(0.5)
    out, err = stop(proc, signal.SIGINT)
    assert proc.returncode == 0, err
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert len(lines) == 8
    assert all(rec["message"] == "dummy" and isinstance(rec["date"], float) for rec in lines)
    assert "SIGINT received" in err


def test_log_lines_have_fluent_bit_format() -> None:
    proc = start("-i", "dummy", "-o", "null")
    seen = wait_started(proc)
    _, err = stop(proc)
    text = seen.decode() + err
    lines = [line for line in text.splitlines() if line]
    assert lines, text
    assert all(LOG_LINE.match(line) for line in lines), text
    assert re.search(r"\[ info\] \[engine\] started", text)


GOOD = """\
[SERVICE]
    Flush        1
    Log_Level    info

[INPUT]
    Name    dummy
    Tag     app.one
    Rate    5

[OUTPUT]
    Name    stdout
    Match   app.*
    Format  json_lines
"""

BAD = """\
[SERVICE]
    Flush        soon

[INPUT]
    Name    dummy
    Ratee   5
    Samples x

[FILTER]
    Name    nosuchfilter
    Match   *

[OUTPUT]
    Name         stdout
    Match        *
    Retry_Limit  sometimes
"""


def test_dry_run_success(tmp_path: Path) -> None:
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(GOOD)
    res = run("-c", str(conf), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "configuration test is successful"


def test_dry_run_reports_every_error_with_file_line_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(BAD)
    res = run("-c", str(conf), "-D")
    assert res.returncode != 0
    errors = [line.split("[config] ", 1)[1] for line in res.stderr.splitlines()
              if "[error] [config]" in line]
    f = str(conf)
    assert errors == [
        f"{f}:2: [SERVICE]: flush: invalid number 'soon'",
        f"{f}:6: [INPUT] dummy: ratee: unknown configuration property 'ratee'",
        f"{f}:7: [INPUT] dummy: samples: invalid integer 'x'",
        f"{f}:10: [FILTER] nosuchfilter: name: unknown filter plugin 'nosuchfilter'",
        f"{f}:16: [OUTPUT] stdout: retry_limit: invalid value 'sometimes' "
        "(a number, no_limits or no_retries)",
    ]
    assert "configuration test failed: 5 error(s)" in res.stderr


def test_config_errors_fail_at_startup_too(tmp_path: Path) -> None:
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(BAD)
    res = run("-c", str(conf))
    assert res.returncode != 0
    assert "ratee: unknown configuration property" in res.stderr


def test_yaml_config_runs(tmp_path: Path) -> None:
    conf = tmp_path / "fluent-bit.yaml"
    conf.write_text("""\
service:
  flush: 0.1
pipeline:
  inputs:
    - name: dummy
      tag: y
      samples: 2
      rate: 50
  outputs:
    - name: stdout
      match: '*'
      format: json_lines
      json_date_key: 'false'
""")
    proc = start("-c", str(conf))
    wait_started(proc)
    time.sleep(0.6)
    out, err = stop(proc)
    assert proc.returncode == 0, err
    assert out.splitlines() == [b'{"message":"dummy"}'] * 2


ROOT = Path(__file__).resolve().parent.parent


def test_hello_example_passes_dry_run() -> None:
    res = run("-c", str(ROOT / "examples" / "hello.conf"), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "configuration test is successful" in res.stdout


def test_external_plugin_flags_of_the_aws_image_are_accepted_with_a_warning() -> None:
    """aws-for-fluent-bit starts fluent-bit with -e /fluent-bit/<go plugin>.so."""
    res = run("-e", "/fluent-bit/firehose.so", "--plugin=/fluent-bit/kinesis.so",
              "-i", "dummy", "-o", "null", "-m", "*", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "-e /fluent-bit/firehose.so: external plugins are not loaded" in res.stderr
    assert "-e /fluent-bit/kinesis.so: external plugins are not loaded" in res.stderr
    assert run("-e").returncode != 0   # a value is required


def test_plugins_and_custom_sections_are_warned_about(tmp_path: Path) -> None:
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text("[PLUGINS]\n    Path /fluent-bit/firehose.so\n\n[CUSTOM]\n    Name calyptia\n\n"
                    "[INPUT]\n    Name dummy\n\n[OUTPUT]\n    Name null\n    Match *\n")
    res = run("-c", str(conf), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert f"{conf}:1: [PLUGINS]: ignored (rillet loads no external" in res.stderr
    assert f"{conf}:4: [CUSTOM] calyptia: ignored" in res.stderr
