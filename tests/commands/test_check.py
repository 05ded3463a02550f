"""``rillet check`` on crafted configurations: each warning, each error, the exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rillet.commands.check import backtracking_risk, globs_intersect, tail_tag_patterns

RILLET = [sys.executable, "-m", "rillet"]


def check(conf: Path, *extra: str) -> tuple[int, list[str], list[str], str]:
    res = subprocess.run([*RILLET, "check", "-c", str(conf), *extra], capture_output=True,
                         text=True, timeout=30)
    lines = res.stdout.splitlines()
    errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
    warnings = [line[len("warning: "):] for line in lines if line.startswith("warning: ")]
    return res.returncode, errors, warnings, res.stdout


def write(tmp_path: Path, text: str, name: str = "fluent-bit.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


CLEAN = """\
[INPUT]
    Name  tail
    Tag   kube.*
    Path  /var/log/containers/*.log
    Mem_Buf_Limit 5MB

[OUTPUT]
    Name  stdout
    Match kube.*
"""


def test_a_clean_configuration_exits_zero(tmp_path: Path) -> None:
    conf = write(tmp_path, CLEAN)
    for extra in ((), ("--strict",)):
        code, errors, warnings, out = check(conf, *extra)
        assert (code, errors, warnings) == (0, [], []), out
        assert out.strip() == "configuration test is successful"


def test_each_warning(tmp_path: Path) -> None:
    write(tmp_path, """\
[PARSER]
    Name   risky
    Format regex
    Regex  ^(?<msg>(\\w+\\s?)+)$

[PARSER]
    Name   fine
    Format regex
    Regex  ^(?<host>[a-z0-9]+(?:\\.[a-z0-9]+)*) (?<rest>.*)$
""", "parsers.conf")
    conf = write(tmp_path, """\
[SERVICE]
    Parsers_File parsers.conf

[INPUT]
    Name  tail
    Tag   kube.*
    Path  /var/log/pods/*/*/*.log
    Mem_Buf_Limit 1MB

[INPUT]
    Name  dummy
    Tag   lonely

[OUTPUT]
    Name  stdout
    Match kube.*

[OUTPUT]
    Name  null
    Match other.*
""")
    code, errors, warnings, out = check(conf)
    assert code == 0 and errors == [], out
    f = str(conf)
    assert warnings == [
        f"{f}:12: [INPUT] dummy: no output matches its records (tag 'lonely'): they are "
        "dropped",
        f"{f}:20: [OUTPUT] null: Match 'other.*' fits no input's tag: the output receives no "
        "records",
        f"{tmp_path / 'parsers.conf'}:4: [PARSER] risky: regex risks catastrophic "
        "backtracking: nested unbounded repetition",
        f"{f}:8: [INPUT] tail: Mem_Buf_Limit 1MB (1000000 bytes) is smaller than one chunk "
        "(2048000 bytes): the input will pause before a chunk fills",
    ], out
    assert "1 warning" not in out and "with 4 warning(s)" in out
    assert check(conf, "--strict")[0] == 1


KUBE = """\
[INPUT]
    Name  tail
    Tag   {tag}
    Path  {path}

[FILTER]
    Name  kubernetes
    Match kube.*
{extra}
[OUTPUT]
    Name  null
    Match *
"""


@pytest.mark.parametrize(("tag", "path", "extra", "expected"), [
    ("kube.*", "/var/log/containers/*.log", "", None),
    ("kube.*", "/var/log/pods/*/*/*.log", "", "cannot match"),
    ("kube.*", "/var/log/containers/*.log", "    Kube_Tag_Prefix kube.var.log.pods.\n",
     "cannot match"),
    ("kube.*", "/var/log/app/current.log", "    Kube_Tag_Prefix kube.var.log.app.\n",
     "never have the <pod>_<namespace>_<container>-<id>.log form"),
    ("kube.<namespace>.<pod>", "/var/log/containers/*.log",
     "    Kube_Tag_Prefix kube.\n", None),
])
def test_kube_tag_prefix_against_the_tail_tags(tmp_path: Path, tag: str, path: str, extra: str,
                                               expected: str | None) -> None:
    text = KUBE.format(tag=tag, path=path, extra=extra)
    if "<" in tag:
        text = text.replace(f"Path  {path}\n", f"Path  {path}\n    Tag_Regex "
                            "(?<pod>[^_]+)_(?<namespace>[^_]+)_.*\n")
    conf = write(tmp_path, text)
    from rillet.commands.check import warnings_for
    from rillet.config.loader import load_config

    kube = [w for w in warnings_for(load_config(str(conf))) if "Kube" in w or "kube" in w]
    if expected is None:
        assert kube == []
    else:
        assert len(kube) == 1 and expected in kube[0], kube
        assert "[FILTER] kubernetes" in kube[0]


def test_errors_exit_two_and_are_all_listed(tmp_path: Path) -> None:
    conf = write(tmp_path, """\
[SERVICE]
    Flush  soon

[INPUT]
    Name   dummy
    Ratee  5

[OUTPUT]
    Name   nosuch
    Match  *
""")
    code, errors, _, out = check(conf)
    assert code == 2, out
    f = str(conf)
    assert errors == [f"{f}:2: [SERVICE]: flush: invalid number 'soon'",
                      f"{f}:6: [INPUT] dummy: ratee: unknown configuration property 'ratee'",
                      f"{f}:9: [OUTPUT] nosuch: name: unknown output plugin 'nosuch'"]
    assert "configuration test failed: 3 error(s)" in out
    assert check(tmp_path / "missing.conf")[0] == 2


def test_dry_run_prints_the_same_warnings(tmp_path: Path) -> None:
    conf = write(tmp_path, CLEAN.replace("Match kube.*", "Match other.*"))
    res = subprocess.run([*RILLET, "-c", str(conf), "--dry-run"], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0
    assert "no output matches its records (tag 'kube.var.log.containers.*.log')" in res.stderr
    assert "Match 'other.*' fits no input's tag" in res.stderr
    assert res.stdout.strip() == "configuration test is successful"


def test_tag_patterns_and_glob_intersection() -> None:
    assert tail_tag_patterns("kube.*", ["/var/log/containers/*.log"], None) == \
        ["kube.var.log.containers.*.log"]
    assert tail_tag_patterns("app.*.x*", ["C:\\logs\\a.log"], None) == ["app.C.logs.a.log.x"]
    assert tail_tag_patterns("k.<a>.<b>", ["/x"], "(?<a>.)") == ["k.*.*"]
    assert globs_intersect("kube.*", "kube.var.*.log")
    assert globs_intersect("*.log", "kube.*")
    assert globs_intersect("a*b*c", "*x*")
    assert not globs_intersect("kube.var.log.containers.*", "kube.var.log.pods.*")
    assert not globs_intersect("abc", "abd")
    assert not globs_intersect("a*", "b*")
    assert backtracking_risk("^(a+)+$")
    assert backtracking_risk("^(?<x>[a-z]+(?:\\.[a-z]+)*)$") is None
    assert backtracking_risk("(?>a+)+") is None


def test_sender_chosen_tags_are_not_reported_as_unmatched(tmp_path: Path) -> None:
    """FireLens: forward without Tag keeps the sender's tags (``app-firelens-...``), so Match
    patterns cannot be checked against it; with a Tag the check applies again."""
    firelens = """\
[INPUT]
    Name forward
    unix_path /var/run/fluent.sock

[OUTPUT]
    Name  cloudwatch_logs
    Match *-firelens-*
    region us-west-2
    log_group_name app
    log_stream_prefix x-
"""
    code, errors, warnings, out = check(write(tmp_path, firelens))
    assert code == 0 and errors == [] and warnings == [], out
    tagged = firelens.replace("    Name forward\n", "    Name forward\n    Tag  fixed\n")
    _, _, warnings, out = check(write(tmp_path, tagged, "tagged.conf"))
    assert any("no output matches its records (tag 'fixed')" in w for w in warnings), out
    assert any("fits no input's tag" in w for w in warnings), out
