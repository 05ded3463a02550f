"""Entry points (rillet.config.loader): format choice, parsers files, classic/YAML parity."""

from __future__ import annotations

import os

import pytest

from rillet.config.loader import is_yaml, load_config, load_parsers_file
from rillet.config.model import ConfigError, ConfigModel, Entry

from .conftest import Write

PARSERS_CONF = (
    "[PARSER]\n"
    "    Name        docker\n"
    "    Format      json\n"
    "    Time_Key    time\n"
    "    Time_Format %Y-%m-%dT%H:%M:%S.%L\n"
    "\n"
    "[MULTILINE_PARSER]\n"
    "    name  ml\n"
    "    type  regex\n"
    "    rule  \"start_state\"  \"/^\\d+/\"  \"cont\"\n"
)

PARSERS_YAML = (
    "parsers:\n"
    "  - name: docker\n"
    "    format: json\n"
    "    time_key: time\n"
    "    time_format: '%Y-%m-%dT%H:%M:%S.%L'\n"
    "multiline_parsers:\n"
    "  - name: ml-yaml\n"
    "    type: regex\n"
    "    rules:\n"
    "      - {state: start_state, regex: '/^\\d+/', next_state: cont}\n"
)


def errors_of(path: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.errors


@pytest.mark.parametrize(("name", "expected"), [
    ("fluent-bit.yaml", True), ("FB.YML", True), ("a.Yaml", True),
    ("fluent-bit.conf", False), ("fluent-bit", False), ("yaml", False), ("x.yaml.bak", False),
])
def test_format_follows_the_extension(name: str, expected: bool) -> None:
    assert is_yaml(name) is expected


def test_classic_with_parsers_files_of_both_formats(write: Write, root: str) -> None:
    write("etc/parsers.conf", PARSERS_CONF)
    write("etc/more/parsers.yaml", PARSERS_YAML)
    main = write("etc/fb.conf", (
        "[SERVICE]\n"
        "    Parsers_File parsers.conf\n"
        "    Parsers_File more/parsers.yaml\n"
        "[INPUT]\n"
        "    Name tail\n"
    ))
    model = load_config(main)
    assert [p.name for p in model.parsers] == ["docker", "docker"]
    assert [p.name for p in model.multiline_parsers] == ["ml", "ml-yaml"]
    assert model.multiline_parsers[0].get("rule") == '"start_state"  "/^\\d+/"  "cont"'
    assert model.multiline_parsers[1].get("rules") == [
        {"state": "start_state", "regex": "/^\\d+/", "next_state": "cont"}]
    assert model.files == [main, f"{root}/etc/parsers.conf", f"{root}/etc/more/parsers.yaml"]
    assert model.parsers[0].file == f"{root}/etc/parsers.conf"


def test_yaml_main_with_inline_parsers_and_a_parsers_file(write: Write) -> None:
    write("parsers.conf", PARSERS_CONF)
    main = write("fb.yml", (
        "service:\n  parsers_file: parsers.conf\n"
        "parsers:\n  - name: inline\n    format: logfmt\n"))
    assert [p.name for p in load_config(main).parsers] == ["inline", "docker"]


def test_parsers_file_value_is_expanded(write: Write) -> None:
    write("p/parsers.conf", PARSERS_CONF)
    main = write("fb.conf", "@SET DIR=p\n[SERVICE]\n    Parsers_File ${DIR}/parsers.conf\n")
    assert [p.name for p in load_config(main).parsers] == ["docker"]


def test_parser_sections_in_the_main_classic_file_are_errors(write: Write) -> None:
    main = write("fb.conf", "[PARSER]\n    Name p\n[MULTILINE_PARSER]\n    Name m\n")
    reason = "sections are not valid in the main configuration file; they belong in a parsers_file"
    assert errors_of(main) == [f"{main}:1: [PARSER] {reason}",
                               f"{main}:3: [MULTILINE_PARSER] {reason}"]


def test_parsers_files_may_only_define_parsers(write: Write, root: str) -> None:
    write("parsers.conf", "[PARSER]\n    Name p\n[OUTPUT]\n    Name stdout\n")
    write("parsers.yaml", "parsers: []\nservice:\n  flush: 1\n")
    main = write("fb.conf", (
        "[SERVICE]\n    Parsers_File parsers.conf\n    Parsers_File parsers.yaml\n"))
    assert errors_of(main) == [
        f"{root}/parsers.conf:3: [OUTPUT] sections are not valid in a parsers file",
        f"{root}/parsers.yaml:2: 'service' is not valid in a parsers file",
    ]


def test_missing_parsers_files_point_at_their_entries(write: Write) -> None:
    main = write("fb.conf", (
        "[SERVICE]\n    Flush 1\n    Parsers_File nope.conf\n    Parsers_File /abs/nope.yaml\n"))
    assert errors_of(main) == [
        f"{main}:3: [SERVICE]: parsers_file: cannot open parsers file 'nope.conf': no such file",
        f"{main}:4: [SERVICE]: parsers_file: cannot open parsers file '/abs/nope.yaml': "
        "no such file",
    ]


def test_missing_parsers_file_in_yaml(write: Write) -> None:
    main = write("fb.yaml", "service:\n  flush: 1\n  parsers_file:\n    - a.conf\n")
    assert errors_of(main) == [
        f"{main}:4: [SERVICE]: parsers_file: cannot open parsers file 'a.conf': no such file"]


def test_load_parsers_file_for_the_command_line(write: Write, root: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    write("cli/parsers.conf", PARSERS_CONF)
    monkeypatch.chdir(os.path.join(root, "cli"))
    model = ConfigModel.empty()
    load_parsers_file("parsers.conf", model)
    assert [p.name for p in model.parsers] == ["docker"]
    assert model.files == ["parsers.conf"]
    with pytest.raises(ConfigError) as info:
        load_parsers_file("other.conf", model)
    assert info.value.errors == ["other.conf: cannot open parsers file 'other.conf': no such file"]


def test_load_parsers_file_with_an_origin_entry(write: Write) -> None:
    model = ConfigModel.empty()
    origin = Entry("parsers_file", "gone.conf", "<cli>", 0)
    with pytest.raises(ConfigError) as info:
        load_parsers_file("gone.conf", model, origin)
    assert info.value.errors == [
        "<cli>: [SERVICE]: parsers_file: cannot open parsers file 'gone.conf': no such file"]


def test_relative_parsers_file_is_found_from_the_working_directory_first(
        write: Write, root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    write("cwd/parsers.conf", "[PARSER]\n    Name from-cwd\n")
    write("etc/parsers.conf", "[PARSER]\n    Name from-config-dir\n")
    main = write("etc/fb.conf", "[SERVICE]\n    Parsers_File parsers.conf\n")
    monkeypatch.chdir(os.path.join(root, "cwd"))
    assert [p.name for p in load_config(main).parsers] == ["from-cwd"]
    monkeypatch.chdir(root)
    assert [p.name for p in load_config(main).parsers] == ["from-config-dir"]


def test_errors_of_the_main_file_come_before_parsers_files_are_read(write: Write) -> None:
    main = write("fb.conf", "[SERVICE]\n    Parsers_File nope.conf\n[INPUT]\n  Name x\n Tag y\n")
    assert errors_of(main) == [f"{main}:4: indentation level is too low",
                               f"{main}:5: indentation level is too low"]


# -- the same pipeline in both formats -------------------------------------------------------------

CLASSIC = """\
@SET LOG_LEVEL=info
[SERVICE]
    Flush          5
    Log_Level      ${LOG_LEVEL}
    HTTP_Server    On
    Parsers_File   parsers.conf

[INPUT]
    Name              tail
    Tag               kube.*
    Path              /var/log/containers/*.log
    Parser            docker
    DB                /var/log/flb_kube.db
    Mem_Buf_Limit     5MB
    Skip_Long_Lines   On
    Refresh_Interval  10

[INPUT]
    Name   cpu
    Tag    metrics.cpu

[FILTER]
    Name                kubernetes
    Match               kube.*
    Kube_URL            https://kubernetes.default.svc.cluster.local:443
    Merge_Log           On
    K8S-Logging.Parser  On

[OUTPUT]
    Name               cloudwatch_logs
    Match              kube.*
    region             us-east-1
    log_group_name     /eks/fluent-bit
    log_stream_prefix  from-fluent-bit-
    auto_create_group  true

[OUTPUT]
    Name   stdout
    Match  metrics.*
    Format json_lines
"""

YAML = """\
env:
  LOG_LEVEL: info
service:
  flush: 5
  logLevel: ${LOG_LEVEL}
  http_server: On
  parsers_file: parsers.yaml
pipeline:
  inputs:
    - name: tail
      tag: kube.*
      path: /var/log/containers/*.log
      parser: docker
      db: /var/log/flb_kube.db
      mem_buf_limit: 5MB
      skip_long_lines: On
      refreshInterval: 10
    - name: cpu
      tag: metrics.cpu
  filters:
    - name: kubernetes
      match: kube.*
      kube_url: https://kubernetes.default.svc.cluster.local:443
      merge_log: On
      k8s-logging.parser: On
  outputs:
    - name: cloudwatch_logs
      match: kube.*
      region: us-east-1
      log_group_name: /eks/fluent-bit
      log_stream_prefix: from-fluent-bit-
      autoCreateGroup: true
    - name: stdout
      match: metrics.*
      format: json_lines
"""

PARITY_PARSERS_YAML = (
    "parsers:\n"
    "  - name: docker\n"
    "    format: json\n"
    "    time_key: time\n"
    "    time_format: '%Y-%m-%dT%H:%M:%S.%L'\n"
)


def shape(model: ConfigModel) -> list[tuple[str, list[tuple[str, object]]]]:
    """Kinds, keys and values in order; a parsers_file value reduced to its base name."""
    def value(key: str, raw: object) -> object:
        return os.path.splitext(str(raw))[0] if key == "parsers_file" else raw

    sections = [model.service, *model.pipeline(), *model.parsers, *model.multiline_parsers]
    return [(s.kind, [(e.key, value(e.key, e.value)) for e in s.entries]) for s in sections]


def test_classic_and_yaml_give_the_same_model(write: Write) -> None:
    write("parsers.conf", PARSERS_CONF.split("\n\n")[0] + "\n")
    write("parsers.yaml", PARITY_PARSERS_YAML)
    classic = load_config(write("fluent-bit.conf", CLASSIC))
    yaml = load_config(write("fluent-bit.yaml", YAML))
    assert shape(classic) == shape(yaml)
    assert len(classic.inputs) == 2 and len(classic.filters) == 1 and len(classic.outputs) == 2
    assert classic.parsers[0].get("time_format") == "%Y-%m-%dT%H:%M:%S.%L"
    assert classic.service.get("log_level") == "info"
    assert classic.warnings == yaml.warnings == []
