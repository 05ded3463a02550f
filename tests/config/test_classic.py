"""The classic ``.conf`` reader (rillet.config.classic)."""

from __future__ import annotations

import os

import pytest

from rillet.config.classic import PARSER_KINDS, check_indent, read_classic
from rillet.config.model import ConfigError, ConfigModel

from .conftest import Write, pairs


def errors_of(path: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        read_classic(path, **kwargs)  # type: ignore[arg-type]
    return info.value.errors


# -- sections and entries ------------------------------------------------------------------


def test_reads_sections_keys_values_and_locations(write: Write) -> None:
    path = write("fb.conf", (
        "[SERVICE]\n"
        "    Flush        5\n"
        "    Log_Level    debug\n"
        "\n"
        "[INPUT]\n"
        "    Name   tail\n"
        "    Path   /var/log/containers/*.log\n"
        "    Parser   docker   \n"
        "[FILTER]\n"
        "    Name    grep\n"
        "    Regex   log  a b  c\n"
        "[OUTPUT]\n"
        "    Name  stdout\n"
        "    Match *\n"
    ))
    model = read_classic(path)
    assert pairs(model.service) == [("flush", "5"), ("log_level", "debug")]
    assert (model.service.file, model.service.line) == (path, 1)
    [tail] = model.inputs
    assert pairs(tail) == [("name", "tail"), ("path", "/var/log/containers/*.log"),
                           ("parser", "docker")]
    assert (tail.kind, tail.file, tail.line) == ("input", path, 5)
    assert [(e.file, e.line) for e in tail.entries] == [(path, 6), (path, 7), (path, 8)]
    assert pairs(model.filters[0]) == [("name", "grep"), ("regex", "log  a b  c")]
    assert pairs(model.outputs[0]) == [("name", "stdout"), ("match", "*")]
    assert model.files == [path]
    assert model.warnings == []


def test_section_names_are_case_insensitive_and_every_kind_has_a_list(write: Write) -> None:
    path = write("fb.conf", "".join(
        f"[{name}]\n    Name n{i}\n" for i, name in enumerate(
            ["input", "Filter", "OUTPUT", "PLUGINS", "upstream", "Node", "custom", "Service"])))
    model = read_classic(path)
    assert [s.name for s in model.inputs] == ["n0"]
    assert [s.name for s in model.filters] == ["n1"]
    assert [s.name for s in model.outputs] == ["n2"]
    assert [s.name for s in model.plugins] == ["n3"]
    assert [(s.kind, s.name) for s in model.upstreams] == [("upstream", "n4"), ("node", "n5")]
    assert [s.name for s in model.customs] == ["n6"]
    assert pairs(model.service) == [("name", "n7")]


def test_parser_sections_go_to_their_lists(write: Write) -> None:
    path = write("parsers.conf", (
        "[PARSER]\n    Name json\n    Format json\n"
        "[MULTILINE_PARSER]\n    name ml\n    rule \"start_state\" \"/^a/\" \"cont\"\n"
    ))
    model = read_classic(path, allowed=PARSER_KINDS, role="a parsers file")
    assert pairs(model.parsers[0]) == [("name", "json"), ("format", "json")]
    assert pairs(model.multiline_parsers[0]) == [
        ("name", "ml"), ("rule", '"start_state" "/^a/" "cont"')]


def test_sections_outside_allowed_kinds_are_errors(write: Write) -> None:
    path = write("parsers.conf", "[PARSER]\n    Name p\n[INPUT]\n    Name dummy\n")
    assert errors_of(path, allowed=PARSER_KINDS, role="a parsers file") == [
        f"{path}:3: [INPUT] sections are not valid in a parsers file"]


def test_multiple_service_sections_merge(write: Write) -> None:
    path = write("fb.conf", (
        "[SERVICE]\n    Flush 1\n[INPUT]\n    Name dummy\n[service]\n    Grace 30\n"))
    model = read_classic(path)
    assert pairs(model.service) == [("flush", "1"), ("grace", "30")]
    assert model.service.line == 1


def test_keys_are_lower_cased_values_keep_case_and_hash(write: Write) -> None:
    path = write("fb.conf", (
        "[FILTER]\n"
        "    Name    Modify\n"
        "    K8S-Logging.Parser On\n"
        "    Add     color #ff0000 # not a comment\n"
    ))
    assert pairs(read_classic(path).filters[0]) == [
        ("name", "Modify"), ("k8s-logging.parser", "On"),
        ("add", "color #ff0000 # not a comment")]


def test_repeated_keys_are_kept_in_order(write: Write) -> None:
    path = write("fb.conf", "[SERVICE]\n    Parsers_File a.conf\n    Parsers_File b.conf\n")
    assert read_classic(path).service.get_all("parsers_file") == ["a.conf", "b.conf"]


def test_section_without_keys_is_only_a_warning(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n[OUTPUT]\n    Name stdout\n[FILTER]\n")
    model = read_classic(path)
    assert len(model.inputs) == 1 and len(model.filters) == 1
    assert model.warnings == [
        f"{path}:1: section [INPUT] did not have keys",
        f"{path}:4: section [FILTER] did not have keys",
    ]


def test_unknown_section_and_stream_task_are_errors(write: Write) -> None:
    path = write("fb.conf", (
        "[INPUTS]\n    Name tail\n[STREAM_TASK]\n    Name t\n    Exec SELECT 1;\n"
        "[ INPUT ]\n    Name x\n"))
    assert errors_of(path) == [
        f"{path}:1: unknown section [INPUTS]",
        f"{path}:3: [STREAM_TASK]: stream processor is not supported",
        f"{path}:6: unknown section [ INPUT ]",
    ]


def test_header_without_closing_bracket(write: Write) -> None:
    path = write("fb.conf", "[INPUT\n    Name tail\n[OUTPUT]\n    Name stdout\n")
    assert errors_of(path) == [f"{path}:1: bad header definition"]


def test_text_after_header_is_ignored(write: Write) -> None:
    path = write("fb.conf", "[INPUT] # the tail input\n    Name tail\n")
    assert read_classic(path).inputs[0].name == "tail"


def test_entry_before_any_section(write: Write) -> None:
    path = write("fb.conf", "    Name tail\n[INPUT]\n    Name dummy\n")
    assert errors_of(path) == [f"{path}:1: 'name' is not inside a section"]


def test_indented_group_lines_are_refused(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name tail\n    [rule]\n        a b\n")
    assert errors_of(path) == [
        f"{path}:3: groups ('[name]' lines inside a section) are not supported"]


# -- key and value -------------------------------------------------------------------------


def test_key_without_value_uses_the_section_name_found_later(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Path\n    Name tail\n")
    assert errors_of(path) == [
        f"{path}:2: [INPUT] tail: path: undefined value - check config is in valid classic "
        "format"]


def test_key_with_empty_value(write: Write) -> None:
    path = write("fb.conf", "[OUTPUT]\n    Name stdout\n    Match \n")
    assert errors_of(path) == [f"{path}:3: [OUTPUT] stdout: match: key has an empty value"]


def test_a_tab_is_not_a_key_value_separator(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name\ttail\n")
    assert errors_of(path) == [
        f"{path}:2: [INPUT]: name: undefined value - check config is in valid classic format "
        "(a tab does not separate a key from its value: use a space)"]


def test_trailing_tab_is_not_mistaken_for_a_separator(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name tail\n    Tag\t\n")
    assert errors_of(path) == [
        f"{path}:3: [INPUT] tail: tag: undefined value - check config is in valid classic format"]


def test_tabs_after_the_separating_space_are_trimmed(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name \t tail\t\n    Tag\t x\n")
    assert pairs(read_classic(path).inputs[0]) == [("name", "tail"), ("tag", "x")]


# -- indentation ---------------------------------------------------------------------------


def test_tab_indentation(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n\tName tail\n\tTag t\n[OUTPUT]\n\tName stdout\n")
    model = read_classic(path)
    assert pairs(model.inputs[0]) == [("name", "tail"), ("tag", "t")]


def test_indentation_level_too_low(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name tail\n  Tag t\n")
    assert errors_of(path) == [f"{path}:3: indentation level is too low"]


def test_unindented_entry_is_too_low(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\nName tail\n")
    assert errors_of(path) == [f"{path}:2: indentation level is too low"]


def test_inconsistent_tab_and_space(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name tail\n\tTag t\n  \tPath /x\n")
    assert errors_of(path) == [
        f"{path}:3: inconsistent use of tab and space",
        f"{path}:4: inconsistent use of tab and space",
    ]


def test_extra_indentation_level(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name tail\n      Tag t\n")
    assert errors_of(path) == [f"{path}:3: extra indentation level found"]


def test_exactly_twice_the_indent_is_accepted(write: Write) -> None:
    # Fluent Bit's check_indent treats it as "group content"; outside a group it is a key.
    path = write("fb.conf", "[INPUT]\n  Name tail\n    Tag t\n")
    assert pairs(read_classic(path).inputs[0]) == [("name", "tail"), ("tag", "t")]


def test_indent_is_fixed_once_per_file_not_per_section(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n  Name tail\n[OUTPUT]\n    Name stdout\n   Match *\n")
    assert errors_of(path) == [f"{path}:5: extra indentation level found"]


def test_check_indent_levels() -> None:
    assert check_indent("    Name x", "    ") == (4, None)
    assert check_indent("        Name x", "    ") == (8, None)
    assert check_indent("\t\tName x", "\t") == (2, None)
    assert check_indent("  Name x", "    ") == (0, "indentation level is too low")
    assert check_indent("  \tName x", "    ") == (0, "inconsistent use of tab and space")
    assert check_indent("     Name x", "    ") == (0, "extra indentation level found")


# -- comments, blank lines, encodings ------------------------------------------------------


def test_comments_and_blank_lines(write: Write) -> None:
    path = write("fb.conf", (
        "# header comment\n"
        "[INPUT]\n"
        "    # after the indent\n"
        "#   Tag commented\n"
        "    Name tail\n"
        "\n"
        "   \t \n"
        "    Tag t\n"
    ))
    model = read_classic(path)
    assert pairs(model.inputs[0]) == [("name", "tail"), ("tag", "t")]
    assert model.warnings == []


def test_comment_with_another_indent_is_an_indentation_error(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name tail\n  # note\n")
    assert errors_of(path) == [f"{path}:3: indentation level is too low"]


def test_crlf_line_endings_and_byte_order_mark(write: Write) -> None:
    text = "[INPUT]\r\n    Name tail\r\n    Tag t\r\n\r\n[OUTPUT]\r\n    Name stdout\r\n"
    path = write("fb.conf", b"\xef\xbb\xbf" + text.encode())
    model = read_classic(path)
    assert pairs(model.inputs[0]) == [("name", "tail"), ("tag", "t")]
    assert model.outputs[0].line == 5


def test_invalid_utf8_is_reported_with_its_line(write: Write) -> None:
    path = write("fb.conf", b"[INPUT]\n    Name t\xffil\n")
    assert errors_of(path) == [f"{path}:2: the file is not valid UTF-8 text"]


def test_missing_root_file(root: str) -> None:
    path = os.path.join(root, "nope.conf")
    assert errors_of(path) == [f"{path}: cannot open file: No such file or directory"]


# -- @INCLUDE ------------------------------------------------------------------------------


def test_include_relative_to_the_root_file_directory(write: Write, root: str) -> None:
    main = write("etc/fb.conf", "[SERVICE]\n    Flush 1\n@INCLUDE conf.d/inputs.conf\n")
    # Paths inside included files are relative to the root file too, not to the includer.
    write("etc/conf.d/inputs.conf", "[INPUT]\n  Name tail\n@INCLUDE conf.d/outputs.conf\n")
    write("etc/conf.d/outputs.conf", "[OUTPUT]\n\tName stdout\n")
    model = read_classic(main)
    inc = os.path.join(root, "etc", "conf.d")
    assert model.files == [main, f"{inc}/inputs.conf", f"{inc}/outputs.conf"]
    assert (model.inputs[0].name, model.inputs[0].file) == ("tail", f"{inc}/inputs.conf")
    assert model.outputs[0].entries[0].file == f"{inc}/outputs.conf"


def test_include_absolute_path_and_case_insensitive_command(write: Write) -> None:
    other = write("x/out.conf", "[OUTPUT]\n    Name stdout\n")
    main = write("fb.conf", f"@include {other}\n")
    assert read_classic(main).outputs[0].name == "stdout"


def test_include_glob_in_sorted_order(write: Write, root: str) -> None:
    write("inc/20-b.conf", "[INPUT]\n    Name b\n")
    write("inc/10-a.conf", "[INPUT]\n    Name a\n")
    write("inc/30-c.conf", "[INPUT]\n    Name c\n")
    write("inc/notes.txt", "not a config\n")
    main = write("fb.conf", "[INPUT]\n    Name first\n@INCLUDE inc/*.conf\n")
    model = read_classic(main)
    assert [s.name for s in model.inputs] == ["first", "a", "b", "c"]
    assert model.files[1:] == [f"{root}/inc/10-a.conf", f"{root}/inc/20-b.conf",
                               f"{root}/inc/30-c.conf"]


def test_include_glob_matching_nothing_is_an_error(write: Write, root: str) -> None:
    main = write("fb.conf", "@INCLUDE inc/*.conf\n[INPUT]\n    Name dummy\n")
    assert errors_of(main) == [
        f"{main}:1: @INCLUDE pattern '{root}/inc/*.conf' matched no files"]


def test_include_missing_file(write: Write, root: str) -> None:
    main = write("fb.conf", "[INPUT]\n    Name dummy\n@INCLUDE missing.conf\n")
    assert errors_of(main) == [
        f"{main}:3: cannot open included file '{root}/missing.conf': No such file or directory"]


def test_include_empty_path(write: Write) -> None:
    main = write("fb.conf", "@INCLUDE   \n")
    assert errors_of(main) == [f"{main}:1: @INCLUDE needs a file name"]


def test_including_a_file_twice_is_an_error(write: Write, root: str) -> None:
    write("a.conf", "[INPUT]\n    Name a\n")
    main = write("fb.conf", "@INCLUDE a.conf\n@INCLUDE a.conf\n")
    assert errors_of(main) == [f"{main}:2: file '{root}/a.conf' is already included"]


def test_including_the_root_file_is_an_error(write: Write, root: str) -> None:
    main = write("fb.conf", "[INPUT]\n    Name a\n@INCLUDE fb.conf\n")
    assert errors_of(main) == [f"{main}:3: file '{root}/fb.conf' is already included"]


def test_same_file_under_another_name_is_read_twice(write: Write, root: str) -> None:
    write("a.conf", "[INPUT]\n    Name a\n")
    os.link(os.path.join(root, "a.conf"), os.path.join(root, "b.conf"))
    main = write("fb.conf", "@INCLUDE a.conf\n@INCLUDE b.conf\n")
    assert errors_of(main) == [f"{main}:2: file '{root}/b.conf' is already included"]


def test_each_included_file_has_its_own_indent(write: Write) -> None:
    write("tabs.conf", "[FILTER]\n\tName grep\n")
    main = write("fb.conf", "[INPUT]\n  Name tail\n@INCLUDE tabs.conf\n  Tag t\n")
    model = read_classic(main)
    # The include does not end the includer's section: "Tag" still belongs to the input.
    assert pairs(model.inputs[0]) == [("name", "tail"), ("tag", "t")]
    assert model.filters[0].name == "grep"


def test_errors_in_included_files_name_those_files(write: Write) -> None:
    inc = write("bad.conf", "[INPUT]\n    Name tail\n  Tag x\n")
    main = write("fb.conf", "@INCLUDE bad.conf\n[OUTPUT]\n    Name stdout\n    Match\n")
    assert errors_of(main) == [
        f"{inc}:3: indentation level is too low",
        f"{main}:4: [OUTPUT] stdout: match: undefined value - check config is in valid "
        "classic format",
    ]


def test_kinds_keep_their_relative_order_across_includes(write: Write) -> None:
    write("mid.conf", "[OUTPUT]\n    Name o2\n[INPUT]\n    Name i2\n[FILTER]\n    Name f1\n")
    main = write("fb.conf", (
        "[OUTPUT]\n    Name o1\n[INPUT]\n    Name i1\n@INCLUDE mid.conf\n"
        "[INPUT]\n    Name i3\n[SERVICE]\n    Flush 2\n"))
    model = read_classic(main)
    assert [s.name for s in model.inputs] == ["i1", "i2", "i3"]
    assert [s.name for s in model.filters] == ["f1"]
    assert [s.name for s in model.outputs] == ["o1", "o2"]
    assert [s.name for s in model.pipeline()] == ["i1", "i2", "i3", "f1", "o1", "o2"]


# -- @SET and ${VAR} -----------------------------------------------------------------------


def test_set_variables_expand_values_not_keys(write: Write,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TAG", "from-env")
    path = write("fb.conf", (
        "@SET RT_X=input\n"
        "@set name = spaced \n"
        "[INPUT]\n"
        "    Name  tail\n"
        "    Tag   ${RT_TAG}.${RT_X}\n"
        "    ${RT_X}_key  ${name}\n"
        "    Path  ${RT_UNSET:-/var/log/*.log}\n"
    ))
    model = read_classic(path)
    assert pairs(model.inputs[0]) == [
        ("name", "tail"), ("tag", "from-env.input"), ("${rt_x}_key", "spaced"),
        ("path", "/var/log/*.log")]
    assert model.variables == {"RT_X": "input", "name": "spaced"}


def test_set_applies_to_the_whole_configuration(write: Write) -> None:
    # Fluent Bit runs every @SET before it applies any property: the last definition wins.
    write("inc.conf", "@SET RT_X=second\n")
    path = write("fb.conf", (
        "[INPUT]\n    Name dummy\n    Tag ${RT_X}\n@SET RT_X=first\n@INCLUDE inc.conf\n"))
    assert read_classic(path).inputs[0].get("tag") == "second"


def test_unset_variable_warns_with_location(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name dummy\n    Tag ${RT_UNSET}\n")
    model = read_classic(path)
    assert model.inputs[0].get("tag") == ""
    assert model.warnings == [f"{path}:3: [env] variable ${{RT_UNSET}} is used but not set"]


def test_set_only_at_column_zero(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name dummy\n    @SET RT_X=1\n")
    model = read_classic(path)
    assert pairs(model.inputs[0]) == [("name", "dummy"), ("@set", "RT_X=1")]
    assert model.variables == {}


def test_predefined_model_variables_are_used(write: Write) -> None:
    path = write("fb.conf", "[INPUT]\n    Name ${RT_X}\n")
    model = ConfigModel.empty(path)
    model.variables["RT_X"] = "cpu"
    assert read_classic(path, model) is model
    assert model.inputs[0].name == "cpu"


def test_bad_and_unknown_commands(write: Write) -> None:
    path = write("fb.conf", (
        "@SET novalue\n@FOO bar\n[INPUT]\n    Name dummy\n"))
    model = read_classic(path)
    assert model.warnings == [
        f"{path}:1: [meta SET] invalid parameter 'novalue' ignored",
        f"{path}:2: unknown command '@FOO' ignored",
    ]
    bad = write("bad.conf", "@INCLUDE\n")
    assert errors_of(bad) == [f"{bad}:1: invalid command '@INCLUDE' (expected '@COMMAND value')"]


def test_every_error_is_collected(write: Write) -> None:
    path = write("fb.conf", (
        "[INPUT]\n"
        "    Name tail\n"
        "    Tag\n"
        "   Path /x\n"
        "[NOPE]\n"
        "    Name x\n"
        "[OUTPUT]\n"
        "    Name stdout\n"
        "    Match \n"
    ))
    assert errors_of(path) == [
        f"{path}:3: [INPUT] tail: tag: undefined value - check config is in valid classic "
        "format",
        f"{path}:4: indentation level is too low",
        f"{path}:5: unknown section [NOPE]",
        f"{path}:9: [OUTPUT] stdout: match: key has an empty value",
    ]
