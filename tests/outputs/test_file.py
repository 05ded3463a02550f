"""``file`` output against plugins/out_file/file.c (fluent/fluent-bit).

Expected forms, from file.c:
- out_file: ``fprintf(fp, "%s: [%"PRIu64".%09lu, %s]\\n", tag, sec, nsec, json)`` (the docs show
  ``tag: [time, {"key1":"value1", ...}]``; the JSON is msgpack2json's, without spaces);
- plain: ``fprintf(fp, "%s\\n", json)``;
- csv: optional ``timestamp<d>`` + keys header when ``csv_column_names`` is on and the file is
  empty, then ``"%lld.%.09ld<d>"`` + values with ``msgpack_object_print``;
- ltsv: ``"time"<ld>%f<d>`` then ``key<ld>value`` pairs printed with ``msgpack_object_print``;
- template: ``{time}`` as ``%f``, string values raw, other values ``msgpack_object_print``,
  unknown keys left as ``{key}``;
- ``check_delimiter``: only ``\\t``/tab, space and comma are accepted;
- ``sanitize_tag_name``: components of [A-Za-z0-9._-], '.' and '..' -> '_';
- ``fopen`` failure: "error opening: <file>" (FLB_ERROR there; rillet retries).
"""

from __future__ import annotations

import logging
import os
import stat
import struct
from pathlib import Path

import pytest

from rillet.config.model import Section
from rillet.config.options import resolve
from rillet.engine.plugin import Status, full_table, lookup
from rillet.outputs.file import File, check_delimiter, parse_template, sanitize_tag
from tests.plugin_kit import T0, T1, flush, make_chunk, make_plugin


def make(**settings: str) -> File:
    return make_plugin(File, **settings)


chunk = make_chunk




def test_registered() -> None:
    assert lookup("output", "file") is File
    assert File.default_workers == 1


def test_out_file_format_file_named_after_tag(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path))
    assert flush(plugin, chunk([b'{"message":"dummy"}', {"a": [1, 2.5], "é": None}],
                               [T0, T1])) is Status.OK
    assert (tmp_path / "dummy.0").read_bytes() == (
        b'dummy.0: [1700000000.123456789, {"message":"dummy"}]\n'
        b'dummy.0: [1700000001.000000000, {"a":[1,2.5],"\\u00e9":null}]\n')


def test_appends_and_recreates_a_deleted_file(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), file="out.log", format="plain")
    flush(plugin, chunk([{"n": 1}]))
    flush(plugin, chunk([{"n": 2}]))
    target = tmp_path / "out.log"
    assert target.read_bytes() == b'{"n":1}\n{"n":2}\n'
    target.unlink()
    assert flush(plugin, chunk([{"n": 3}])) is Status.OK
    assert target.read_bytes() == b'{"n":3}\n'


def test_one_file_per_tag(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="plain")
    flush(plugin, chunk([{"a": 1}], tag="app.one"))
    flush(plugin, chunk([{"b": 2}], tag="app.two"))
    assert (tmp_path / "app.one").read_bytes() == b'{"a":1}\n'
    assert (tmp_path / "app.two").read_bytes() == b'{"b":2}\n'


def test_without_path_the_file_is_relative_to_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    flush(make(format="plain"), chunk([{"a": 1}], tag="rel"))
    assert (tmp_path / "rel").read_bytes() == b'{"a":1}\n'


def test_plain_format(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="PLAIN")
    flush(plugin, chunk([b'{"k":"v"}', {"f": 0.30000000000000004, "s": "日本"}, {}]))
    assert (tmp_path / "dummy.0").read_bytes() == (
        b'{"k":"v"}\n{"f":0.3,"s":"\\u65e5\\u672c"}\n{}\n')


def test_sanitize_tag() -> None:
    assert sanitize_tag("dummy.0") == "dummy.0"
    assert sanitize_tag("a/b") == "a/b"
    assert sanitize_tag("/../etc//passwd") == "_/etc/passwd"
    assert sanitize_tag("a\\.\\b c") == "a/_/b_c"
    assert sanitize_tag("kube.var.log:é*") == "kube.var.log____"
    assert sanitize_tag("//") == "_"


def test_tag_with_directories_needs_mkdir(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="plain", mkdir="on")
    assert flush(plugin, chunk([{"a": 1}], tag="../x/y")) is Status.OK
    assert (tmp_path / "_" / "x" / "y").read_bytes() == b'{"a":1}\n'


def test_mkdir_creates_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    plugin = make(path=str(directory), file="f.log", mkdir="true", format="plain")
    assert flush(plugin, chunk([{"a": 1}])) is Status.OK
    assert (directory / "f.log").read_bytes() == b'{"a":1}\n'
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755 & ~_umask()
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o755 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_missing_directory_without_mkdir_is_retried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plugin = make(path=str(tmp_path / "missing"), file="f.log")
    with caplog.at_level(logging.ERROR):
        assert flush(plugin, chunk([{"a": 1}])) is Status.RETRY
    assert f"error opening: {tmp_path / 'missing' / 'f.log'}" in caplog.text
    assert not (tmp_path / "missing").exists()


def test_path_through_a_regular_file_is_retried(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "plain_file").write_text("x")
    plugin = make(path=str(tmp_path / "plain_file" / "sub"), file="f.log", mkdir="on")
    with caplog.at_level(logging.ERROR):
        assert flush(plugin, chunk([{"a": 1}])) is Status.RETRY
    # fopen fails with ENOTDIR, not ENOENT: Fluent Bit does not try mkpath either.
    assert "Not a directory" in caplog.text
    assert "error opening:" in caplog.text


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_write_failure_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    plugin = make(path="/dev", file="full", format="plain")
    with caplog.at_level(logging.ERROR):
        assert flush(plugin, chunk([{"a": 1}])) is Status.RETRY
    assert "could not write to /dev/full" in caplog.text


def test_csv_format(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="csv")
    flush(plugin, chunk([{"s": "v1", "n": 2, "f": 0.5, "b": True, "z": None, "l": [1, "x"]},
                         {}, b'{"m":{"k":"v"}}'], [T0, T0, T1]))
    assert (tmp_path / "dummy.0").read_bytes() == (
        b'1700000000.123456789,"v1",2,0.500000,true,nil,[1, "x"]\n'
        b'1700000001.000000000,{"k"=>"v"}\n')


def test_csv_column_names_only_at_the_top_of_a_new_file(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="csv", csv_column_names="on", delimiter="tab")
    flush(plugin, chunk([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], [T1, T1]))
    flush(plugin, chunk([{"a": 3, "b": "z"}], [T1]))
    assert (tmp_path / "dummy.0").read_bytes() == (
        b'timestamp\t"a"\t"b"\n'
        b'1700000001.000000000\t1\t"x"\n'
        b'1700000001.000000000\t2\t"y"\n'
        b'1700000001.000000000\t3\t"z"\n')


def test_csv_header_is_consumed_by_an_empty_first_record(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="csv", csv_column_names="on")
    flush(plugin, chunk([{}, {"a": 1}], [T1, T1]))
    assert (tmp_path / "dummy.0").read_bytes() == b"1700000001.000000000,1\n"


def test_ltsv_format(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="ltsv")
    flush(plugin, chunk([{"host": "h1", "n": 1}, {}, b'{"x":1.25}'], [T0, T0, T1]))
    assert (tmp_path / "dummy.0").read_bytes() == (
        b'"time":1700000000.123457\t"host":"h1"\t"n":1\n'
        b'"time":1700000001.000000\t"x":1.250000\n')


def test_ltsv_custom_delimiters(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="ltsv", delimiter="comma", label_delimiter="space")
    flush(plugin, chunk([{"a": "b", "c": 1}], [T1]))
    assert (tmp_path / "dummy.0").read_bytes() == b'"time" 1700000001.000000,"a" "b","c" 1\n'


def test_check_delimiter() -> None:
    assert check_delimiter("\\t") == "\t"
    assert check_delimiter("TAB") == "\t"
    assert check_delimiter("space") == " "
    assert check_delimiter("comma") == ","
    assert check_delimiter(";") is None  # ignored: the format's default stays
    assert check_delimiter(None) is None


def test_unsupported_delimiter_keeps_the_default(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="csv", delimiter=";")
    flush(plugin, chunk([{"a": 1, "b": 2}], [T1]))
    assert (tmp_path / "dummy.0").read_bytes() == b"1700000001.000000000,1,2\n"


def test_template_default(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="template")
    flush(plugin, chunk([{"message": "hello world"}, {"other": 1}], [T0, T1]))
    assert (tmp_path / "dummy.0").read_bytes() == (
        b"1700000000.123457 hello world\n1700000001.000000 {message}\n")


def test_template_values_and_braces(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="template",
                  template="{time} used={Mem.used} m={m} s={s} {a{s}} } {ti} {} {open")
    flush(plugin, chunk([{"Mem.used": 1045448, "m": {"k": [1, None]}, "s": "x y"}], [T1]))
    assert (tmp_path / "dummy.0").read_bytes() == (
        b'1700000001.000000 used=1045448 m={"k"=>[1, nil]} s=x y {ax y} } '
        b"1700000001.000000 1700000001.000000 {open\n")


def test_parse_template() -> None:
    assert parse_template("{time} {message}") == [(1, "time"), (0, " "), (2, "message"),
                                                  (0, "\n")]
    assert parse_template("a}b{c") == [(0, "a}b{c\n")]


def test_msgpack_format(tmp_path: Path) -> None:
    plugin = make(path=str(tmp_path), format="msgpack")
    flush(plugin, chunk([b'{"a":1}'], [T1]))
    assert (tmp_path / "dummy.0").read_bytes() == (
        b"\x92\x92\xd7\x00" + struct.pack(">II", 1700000001, 0) + b"\x80\x81\xa1a\x01")


def test_unknown_format_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown format yaml"):
        make(format="yaml")


def test_record_accessor_destinations_are_refused() -> None:
    with pytest.raises(ValueError, match="record accessor"):
        make(path="/tmp/$kubernetes['namespace_name']")


def test_option_table() -> None:
    names = [o.name for o in File.options]
    assert names == ["path", "file", "format", "delimiter", "label_delimiter", "template",
                     "csv_column_names", "mkdir"]
    section = Section("output", "test.conf", 1)
    section.set("name", "file")
    section.set("mkdir", "maybe", "test.conf", 2)
    errors: list[str] = []
    resolve(section, full_table(File), errors)
    assert len(errors) == 1 and "mkdir" in errors[0]


def test_out_file_seconds_are_unsigned(tmp_path: Path) -> None:
    # (uint64_t) tv_sec printed with PRIu64
    flush(make(path=str(tmp_path)), chunk([{}], [-1]))
    assert (tmp_path / "dummy.0").read_bytes() == (
        b"dummy.0: [18446744073709551615.999999999, {}]\n")
