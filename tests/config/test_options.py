"""Option tables: validation with file:line: section: key: reason errors, and -h text."""

from rillet.config.model import Section
from rillet.config.options import Option, T, help_text, resolve

TABLE = (
    Option("path", T.STR, None, "files to read"),
    Option("buffer_max_size", T.SIZE, "32768", "largest line"),
    Option("skip_long_lines", T.BOOL, "off", "skip long lines"),
    Option("refresh_interval", T.TIME, "60", "rescan period"),
    Option("parsers_file", T.STR, None, "parsers", multiple=True),
    Option("parser_", T.STR, None, "numbered parsers", prefix=True),
    Option("format", T.STR, "json", "format", choices=("json", "msgpack")),
    Option("log_stream_prefix", T.STR, None, "prefix", aliases=("stream_prefix",)),
)


def sec(*pairs: tuple[str, str, int]) -> Section:
    s = Section("input", "fluent-bit.conf", 3)
    s.set("name", "tail", "fluent-bit.conf", 4)
    for key, value, line in pairs:
        s.set(key, value, "fluent-bit.conf", line)
    return s


def test_defaults_and_conversions() -> None:
    errors: list[str] = []
    opts = resolve(sec(("Buffer_Max_Size", "5MB", 5), ("skip_long_lines", "On", 6),
                       ("parser_1", "a", 7), ("Parser_2", "b", 8),
                       ("parsers_file", "x", 9), ("parsers_file", "y", 10),
                       ("format", "MSGPACK", 11), ("stream_prefix", "p-", 12)), TABLE, errors)
    assert errors == []
    assert opts["buffer_max_size"] == 5_000_000
    assert opts["skip_long_lines"] is True
    assert opts["refresh_interval"] == 60
    assert opts["path"] is None
    assert opts["parser_"] == {"parser_1": "a", "parser_2": "b"}
    assert opts["parsers_file"] == ["x", "y"]
    assert opts["format"] == "msgpack"
    assert opts["log_stream_prefix"] == "p-"
    assert opts.was_set("buffer_max_size") and not opts.was_set("path")


def test_every_error_is_reported_with_file_line_section_key() -> None:
    errors: list[str] = []
    resolve(sec(("Pathh", "/x", 5), ("skip_long_lines", "maybe", 6), ("path", "a", 7),
                ("path", "b", 8), ("format", "xml", 9), ("refresh_interval", "soon", 10)),
            TABLE, errors)
    assert errors == [
        "fluent-bit.conf:5: [INPUT] tail: pathh: unknown configuration property 'pathh'",
        "fluent-bit.conf:6: [INPUT] tail: skip_long_lines: invalid boolean 'maybe' "
        "(use on/off, true/false or yes/no)",
        "fluent-bit.conf:8: [INPUT] tail: path: configuration property 'path' is set 2 times",
        "fluent-bit.conf:9: [INPUT] tail: format: invalid value 'xml', expected one of: "
        "json, msgpack",
        "fluent-bit.conf:10: [INPUT] tail: refresh_interval: invalid time 'soon' "
        "(a number with optional s, m, h or d)",
    ]


def test_structured_value_for_a_scalar_option_is_an_error() -> None:
    errors: list[str] = []
    s = sec()
    s.set("path", {"a": 1}, "c.yaml", 7)
    resolve(s, TABLE, errors)
    assert errors == ["c.yaml:7: [INPUT] tail: path: expected a string, got a structured value"]


def test_help_text_lists_every_option() -> None:
    text = help_text("input plugin 'tail'", "Tail files", TABLE)
    assert text.splitlines()[0] == "input plugin 'tail': Tail files"
    for opt in TABLE:
        assert opt.name in text
    assert "(default: 32768)" in text
    assert "one of: json, msgpack" in text
