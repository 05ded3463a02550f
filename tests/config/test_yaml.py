"""The YAML reader (rillet.config.yaml_reader)."""

from __future__ import annotations

import pytest

from rillet.config.model import ConfigError
from rillet.config.yaml_reader import PARSER_KEYS, read_yaml, translate_key

from .conftest import Write, pairs

_VARIANT = "variant values are only valid in the extensions section"


def errors_of(path: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        read_yaml(path, **kwargs)  # type: ignore[arg-type]
    return info.value.errors


def test_pipeline_sections_values_and_lines(write: Write) -> None:
    path = write("fb.yaml", (
        "service:\n"                       # 1
        "  flush: 1\n"                     # 2
        "  log_level: info\n"              # 3
        "pipeline:\n"                      # 4
        "  inputs:\n"                      # 5
        "    - name: tail\n"               # 6
        "      path: /var/log/*.log\n"     # 7
        "  filters:\n"                     # 8
        "    - name: grep\n"               # 9
        "      regex: log  a b\n"          # 10
        "  outputs:\n"                     # 11
        "    - name: stdout\n"             # 12
        "      match: '*'\n"               # 13
    ))
    model = read_yaml(path)
    assert pairs(model.service) == [("flush", "1"), ("log_level", "info")]
    assert (model.service.file, model.service.line) == (path, 1)
    [tail] = model.inputs
    assert (tail.kind, tail.file, tail.line) == ("input", path, 6)
    assert pairs(tail) == [("name", "tail"), ("path", "/var/log/*.log")]
    assert [e.line for e in tail.entries] == [6, 7]
    assert pairs(model.filters[0]) == [("name", "grep"), ("regex", "log  a b")]
    assert pairs(model.outputs[0]) == [("name", "stdout"), ("match", "*")]
    assert model.files == [path]
    assert model.warnings == []


def test_scalars_stay_as_written(write: Write) -> None:
    path = write("fb.yaml", (
        "pipeline:\n"
        "  inputs:\n"
        "    - name: tail\n"
        "      skip_long_lines: on\n"
        "      mem_buf_limit: 5MB\n"
        "      refresh_interval: 1.0\n"
        "      read_from_head: true\n"
        "      buffer_chunk_size: 0x10\n"
        "      rotate_wait: 010\n"
        "      db: ~\n"
        "      tag: \"quoted: text\"\n"
        "      exclude_path: ''\n"
        "      parser:\n"
    ))
    assert pairs(read_yaml(path).inputs[0])[1:] == [
        ("skip_long_lines", "on"), ("mem_buf_limit", "5MB"), ("refresh_interval", "1.0"),
        ("read_from_head", "true"), ("buffer_chunk_size", "0x10"), ("rotate_wait", "010"),
        ("db", "~"), ("tag", "quoted: text"), ("exclude_path", ""), ("parser", "")]


def test_camel_case_keys_are_translated(write: Write) -> None:
    path = write("fb.yaml", (
        "service:\n"
        "  logLevel: debug\n"
        "  HTTP_Server: on\n"
        "  storage.maxChunksUp: 64\n"
        "  Flush: 1\n"
        "  hc_Errors_Count: 5\n"
    ))
    assert [e.key for e in read_yaml(path).service.entries] == [
        "log_level", "http_server", "storage.max_chunks_up", "flush", "hc_errors_count"]


@pytest.mark.parametrize(("key", "expected"), [
    ("logLevel", "log_level"),
    ("httpServer", "http_server"),
    ("storage.maxChunksUp", "storage.max_chunks_up"),
    ("aBC", "a_b_c"),
    ("log_Level", "log_level"),      # has an underscore: only lower-cased
    ("LogLevel", "loglevel"),        # starts upper-case: only lower-cased
    ("k8s-logging.parser", "k8s-logging.parser"),
    ("name", "name"),
    ("", ""),
])
def test_translate_key(key: str, expected: str) -> None:
    assert translate_key(key) == expected


def test_list_values_become_repeated_entries(write: Write) -> None:
    path = write("fb.yaml", (
        "service:\n"
        "  parsers_file: [a.conf, b.yaml]\n"
        "pipeline:\n"
        "  inputs:\n"
        "    - name: tail\n"
        "      multiline.parser:\n"
        "        - docker\n"
        "        - cri\n"
    ))
    model = read_yaml(path)
    assert model.service.get_all("parsers_file") == ["a.conf", "b.yaml"]
    tail = model.inputs[0]
    assert tail.get_all("multiline.parser") == ["docker", "cri"]
    assert [e.line for e in tail.entries if e.key == "multiline.parser"] == [7, 8]


def test_nested_values_are_refused_outside_extensions(write: Write) -> None:
    path = write("fb.yaml", (
        "pipeline:\n"
        "  outputs:\n"
        "    - match: '*'\n"
        "      header:\n"
        "        a: b\n"
        "      tags: [{a: b}]\n"
        "      name: http\n"
        "extensions:\n"
        "  opamp:\n"
        "    endpoint: 127.0.0.1:4318\n"
    ))
    assert errors_of(path) == [
        f"{path}:4: [OUTPUT] http: header: {_VARIANT}",
        f"{path}:6: [OUTPUT] http: tags: {_VARIANT}",
    ]


def test_processors_are_not_supported_yet(write: Write) -> None:
    path = write("fb.yaml", (
        "pipeline:\n"
        "  inputs:\n"
        "    - name: dummy\n"
        "      processors:\n"
        "        logs:\n"
        "          - name: content_modifier\n"
    ))
    assert errors_of(path) == [
        f"{path}:4: [INPUT] dummy: processors: processors are not supported yet"]


def test_unknown_pipeline_component(write: Write) -> None:
    path = write("fb.yaml", "pipeline:\n  input:\n    - name: dummy\n")
    assert errors_of(path) == [
        f"{path}:2: the pipeline component 'input' is not valid. Try one of these values: "
        "inputs, filters or outputs."]


def test_pipeline_items_must_be_maps(write: Write) -> None:
    path = write("fb.yaml", "pipeline:\n  inputs:\n    - dummy\n  outputs:\n    name: x\n")
    assert errors_of(path) == [
        f"{path}:2: every item of 'inputs' must be a map",
        f"{path}:4: 'outputs' must be a list of maps",
    ]


def test_top_level_keys(write: Write) -> None:
    path = write("fb.yaml", (
        "servce:\n  flush: 1\nstream_processor:\n  - name: x\nextensions:\n  anything: [1]\n"))
    assert errors_of(path) == [
        f"{path}:1: unknown top-level key 'servce'",
        f"{path}:3: stream processor is not supported",
    ]


def test_duplicated_service(write: Write) -> None:
    inc = write("inc.yaml", "service:\n  grace: 5\n")
    path = write("fb.yaml", "service:\n  flush: 1\nincludes:\n  - inc.yaml\n")
    assert errors_of(path) == [f"{inc}:1: duplicated definition of 'service'"]


def test_parsers_and_multiline_parsers(write: Write) -> None:
    path = write("parsers.yaml", (
        "parsers:\n"
        "  - name: json\n"
        "    format: json\n"
        "    time_key: time\n"
        "multiline_parsers:\n"
        "  - name: multiline-regex-test\n"
        "    type: regex\n"
        "    flushTimeout: 1000\n"
        "    rules:\n"
        "      - state: start_state\n"
        "        regex: '/([a-zA-Z]+ \\d+ \\d+\\:\\d+\\:\\d+)(.*)/'\n"
        "        next_state: cont\n"
        "      - {state: cont, regex: '/^\\s+at.*/', next_state: cont}\n"
    ))
    model = read_yaml(path, allowed=PARSER_KEYS, role="a parsers file")
    assert pairs(model.parsers[0]) == [("name", "json"), ("format", "json"), ("time_key", "time")]
    ml = model.multiline_parsers[0]
    assert pairs(ml) == [
        ("name", "multiline-regex-test"), ("type", "regex"), ("flush_timeout", "1000"),
        ("rules", [
            {"state": "start_state", "regex": r"/([a-zA-Z]+ \d+ \d+\:\d+\:\d+)(.*)/",
             "next_state": "cont"},
            {"state": "cont", "regex": r"/^\s+at.*/", "next_state": "cont"},
        ])]
    assert ml.find("rules") is not None and ml.find("rules").line == 9  # type: ignore[union-attr]


def test_bad_multiline_rules(write: Write) -> None:
    path = write("p.yaml", (
        "multiline_parsers:\n"
        "  - name: ml\n"
        "    rules: {state: a}\n"
        "  - name: ml2\n"
        "    rules:\n"
        "      - state: a\n"
        "        regex: [x]\n"
    ))
    reason = "rules must be a list of maps of plain values (state, regex, next_state)"
    assert errors_of(path) == [
        f"{path}:3: [MULTILINE_PARSER] ml: rules: {reason}",
        f"{path}:5: [MULTILINE_PARSER] ml2: rules: {reason}",
    ]


def test_keys_outside_allowed_are_errors(write: Write) -> None:
    path = write("p.yaml", "parsers:\n  - name: a\npipeline:\n  inputs: []\n")
    assert errors_of(path, allowed=PARSER_KEYS, role="a parsers file") == [
        f"{path}:3: 'pipeline' is not valid in a parsers file"]


def test_plugins_upstream_servers_and_customs(write: Write) -> None:
    path = write("fb.yaml", (
        "plugins:\n"
        "  - /opt/out_gstdout.so\n"
        "  - /opt/other.so\n"
        "upstream_servers:\n"
        "  - name: forward-balancing\n"
        "    nodes:\n"
        "      - name: node-1\n"
        "        host: 127.0.0.1\n"
        "        port: 43000\n"
        "      - name: node-2\n"
        "        host: 127.0.0.1\n"
        "customs:\n"
        "  - name: calyptia\n"
        "    api_key: abc\n"
    ))
    model = read_yaml(path)
    assert [pairs(s) for s in model.plugins] == [
        [("path", "/opt/out_gstdout.so"), ("path", "/opt/other.so")]]
    assert [(s.kind, pairs(s)) for s in model.upstreams] == [
        ("upstream", [("name", "forward-balancing")]),
        ("node", [("name", "node-1"), ("host", "127.0.0.1"), ("port", "43000")]),
        ("node", [("name", "node-2"), ("host", "127.0.0.1")]),
    ]
    assert [(s.kind, pairs(s)) for s in model.customs] == [
        ("custom", [("name", "calyptia"), ("api_key", "abc")])]


# -- env and ${VAR} ------------------------------------------------------------------------


def test_env_map_form(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TAG", "from-env")
    path = write("fb.yaml", (
        "pipeline:\n"
        "  inputs:\n"
        "    - name: dummy\n"
        "      tag: ${RT_TAG}.${FLUSH_INTERVAL}\n"
        "      ${KEY}: ${KEY}\n"
        "      samples: ${RT_UNSET:-3}\n"
        "env:\n"
        "  FLUSH_INTERVAL: 1\n"
        "  KEY: value\n"
    ))
    model = read_yaml(path)
    assert pairs(model.inputs[0]) == [
        ("name", "dummy"), ("tag", "from-env.1"), ("${key}", "value"), ("samples", "3")]
    assert model.variables == {"FLUSH_INTERVAL": "1", "KEY": "value"}


def test_env_list_form(write: Write) -> None:
    path = write("fb.yaml", (
        "env:\n"
        "  - name: RT_X\n"
        "    value: on\n"
        "  - name: EMPTY\n"
        "service:\n"
        "  flush: ${RT_X}${EMPTY}\n"
    ))
    model = read_yaml(path)
    assert model.service.get("flush") == "on"
    assert model.variables == {"RT_X": "on", "EMPTY": ""}


def test_env_list_form_errors(write: Write) -> None:
    path = write("fb.yaml", (
        "env:\n"
        "  - name: SECRET\n"
        "    uri: file:///run/secrets/s\n"
        "    refresh_interval: 10s\n"
        "  - value: x\n"
        "  - name: A\n"
        "    colour: red\n"
        "  - just-a-name\n"
    ))
    assert errors_of(path) == [
        f"{path}:1: every item of 'env' must be a map",
        f"{path}:3: env: 'uri' is not supported",
        f"{path}:4: env: 'refresh_interval' is not supported",
        f"{path}:5: env: an entry of the list form needs a 'name'",
        f"{path}:7: env: invalid field 'colour' (use name and value)",
    ]


def test_unset_variable_warns_with_location(write: Write) -> None:
    path = write("fb.yaml", "service:\n  log_file: /x/${RT_UNSET}\n")
    model = read_yaml(path)
    assert model.service.get("log_file") == "/x/"
    assert model.warnings == [f"{path}:2: [env] variable ${{RT_UNSET}} is used but not set"]


# -- includes ------------------------------------------------------------------------------


def test_includes_relative_to_the_including_file(write: Write, root: str) -> None:
    main = write("fb.yaml", (
        "service:\n  flush: ${RT_X}\nincludes:\n  - conf/inputs.yaml\n"
        "pipeline:\n  inputs:\n    - name: last\n"))
    write("conf/inputs.yaml", (
        "env:\n  RT_X: '2'\npipeline:\n  inputs:\n    - name: included\n"
        "includes:\n  - outputs.yaml\n"))
    write("conf/outputs.yaml", "pipeline:\n  outputs:\n    - name: stdout\n")
    model = read_yaml(main)
    assert model.files == [main, f"{root}/conf/inputs.yaml", f"{root}/conf/outputs.yaml"]
    assert [(s.name, s.file) for s in model.inputs] == [
        ("included", f"{root}/conf/inputs.yaml"), ("last", main)]
    assert model.outputs[0].name == "stdout"
    assert model.service.get("flush") == "2"


def test_include_glob_and_single_scalar(write: Write, root: str) -> None:
    write("inc/b.yaml", "pipeline:\n  inputs:\n    - name: b\n")
    write("inc/a.yaml", "pipeline:\n  inputs:\n    - name: a\n")
    main = write("fb.yaml", "includes: inc/*.yaml\n")
    assert [s.name for s in read_yaml(main).inputs] == ["a", "b"]


def test_include_errors(write: Write, root: str) -> None:
    write("a.yaml", "pipeline:\n  inputs:\n    - name: a\n")
    main = write("fb.yaml", (
        "includes:\n"
        "  - a.yaml\n"
        "  - a.yaml\n"
        "  - fb.yaml\n"
        "  - missing.yaml\n"
        "  - none/*.yaml\n"
        "  - {nested: map}\n"
    ))
    assert errors_of(main) == [
        f"{main}:1: 'includes' must be a list of plain values",
        f"{main}:3: file '{root}/a.yaml' is already included",
        f"{main}:4: file '{root}/fb.yaml' is already included",
        f"{main}:5: cannot open included file '{root}/missing.yaml': No such file or directory",
        f"{main}:6: includes: pattern '{root}/none/*.yaml' matched no files",
    ]


# -- syntax, encodings ---------------------------------------------------------------------


def test_invalid_yaml_names_the_line(write: Write) -> None:
    path = write("fb.yaml", "service:\n  flush: 1\n  grace 5\n  log_level: info\n")
    [message] = errors_of(path)
    assert message.startswith(f"{path}:4: invalid YAML: ")


def test_top_level_must_be_a_map(write: Write) -> None:
    path = write("fb.yaml", "- name: dummy\n")
    assert errors_of(path) == [f"{path}:1: the top level of a YAML configuration must be a map"]


def test_empty_file_is_an_empty_configuration(write: Write) -> None:
    model = read_yaml(write("fb.yaml", "# nothing yet\n"))
    assert model.pipeline() == [] and model.service.entries == []


def test_crlf_and_byte_order_mark(write: Write) -> None:
    text = "service:\r\n  flush: 2\r\n\r\npipeline:\r\n  inputs:\r\n    - name: cpu\r\n"
    path = write("fb.yaml", b"\xef\xbb\xbf" + text.encode())
    model = read_yaml(path)
    assert model.service.get("flush") == "2"
    assert (model.inputs[0].name, model.inputs[0].line) == ("cpu", 6)
