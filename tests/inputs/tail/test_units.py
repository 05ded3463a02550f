"""Pieces of the tail input on their own: tag expansion, Tag_Regex, options, the ack window,
UTF-16 splitting, discovery, inotify."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rillet.config.model import ConfigError
from rillet.inputs.tail import inotify as ino
from rillet.inputs.tail.file import TailFile, cut_utf8, decode_lines, split_utf16
from rillet.inputs.tail.scan import Scanner
from rillet.inputs.tail.tag import TagRegex, expand_star
from tests.engine.harness import make_pipeline


def test_expand_star_as_fluent_bit() -> None:
    path = "/var/log/containers/app-6d5_default_nginx-" + "a" * 64 + ".log"
    assert expand_star("kube.*", path) == "kube.var.log.containers.app-6d5_default_nginx-" \
        + "a" * 64 + ".log"
    assert expand_star("*", "/var/log/x.log") == "var.log.x.log"
    assert expand_star("a.*.b", "/x/y") == "a.x.y.b"
    assert expand_star("kube.*.*", "/x") == "kube.x"  # other stars dropped, trailing dot too
    assert expand_star("k:*", "C:\\logs\\a.log") == "k.C.logs.a.log"
    assert expand_star("plain", "/x") == "plain"


def test_tag_regex_placeholders() -> None:
    rx = TagRegex(r"(?<pod_name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)_(?<namespace_name>[^_]+)_"
                  r"(?<container_name>.+)-(?<container_id>[a-z0-9]{64})\.log$",
                  "kube.<namespace_name>.<pod_name>.<container_name>.<missing>")
    cid = "b" * 64
    assert rx.compose(f"/var/log/containers/web-1_prod_nginx-{cid}.log") == \
        "kube.prod.web-1.nginx._"
    assert rx.compose("/var/log/other.log") is None
    with pytest.raises(ValueError, match="missing closing angle bracket"):
        TagRegex("(?<a>x)", "kube.<a")


def test_option_errors_are_startup_errors(tmp_path: Path) -> None:
    cases = [
        ({}, "no input 'path'"),
        ({"path": "x", "parser": "nope"}, "parser 'nope' is not registered"),
        ({"path": "x", "multiline.parser": "docker", "parser": "docker"},
         "cannot be combined"),
        ({"path": "x", "docker_mode": "on", "multiline": "on", "parser_firstline": "docker"},
         "Docker mode cannot be enabled when multiline is enabled"),
        ({"path": "x", "multiline": "on"}, "needs a Parser_Firstline"),
        ({"path": "x", "multiline.parser": "nope"}, "unknown multiline parser 'nope'"),
        ({"path": "x", "generic.encoding": "klingon"}, "unknown encoding"),
        ({"path": "x", "db.sync": "sometimes"}, "invalid value"),
    ]
    for props, message in cases:
        with pytest.raises(ConfigError) as info:
            make_pipeline(inputs=[{"name": "tail", **props}], outputs=[{"name": "null"}])
        assert message in str(info.value), (props, info.value.errors)


def test_fluent_bit_defaults() -> None:
    p = make_pipeline(inputs=[{"name": "tail", "path": "/x"}], outputs=[{"name": "null"}])
    o = p.inputs[0].opts
    assert o["key"] == "log" and o["refresh_interval"] == "60" and o["rotate_wait"] == 5
    assert o["buffer_chunk_size"] == 32768 and o["buffer_max_size"] == 32768
    assert o["read_newly_discovered_files_from_head"] is True
    assert o["read_from_head"] is False and o["inotify_watcher"] is True
    assert o["db.journal_mode"] == "wal" and o["db.sync"] == "normal"
    assert o["docker_mode_flush"] == 4 and o["multiline_flush"] == 4
    assert o["static_batch_size"] == 50_000_000


def test_acks_commit_only_a_done_prefix() -> None:
    f = TailFile("/x", "t", 1, 2, 0, True)
    a, b, c = f.new_ack(10), f.new_ack(20), f.new_ack(30)
    assert not f.acknowledge(b) and f.acked == 0  # out of order: nothing below 10 is final
    assert not f.acknowledge(c) and f.acked == 0
    assert f.acknowledge(a) and f.acked == 30
    d = f.new_ack(40)
    f.advance(45)  # bytes with no record: wait behind d
    assert f.acked == 30
    assert f.acknowledge(d) and f.acked == 45
    e = f.new_ack(50)
    f.reset(0)  # truncated: the old batch no longer moves the offset
    assert not f.acknowledge(e) and f.acked == 0


def test_split_utf16_and_cut_utf8() -> None:
    text = "héllo\n😀 x\npart"
    for codec in ("utf-16-le", "utf-16-be"):
        raw = text.encode(codec)
        consumed, lines = split_utf16(raw + b"\x00"[: len(raw) % 2], codec)
        assert lines == ["héllo".encode(), "😀 x".encode()]
        assert raw[consumed:].decode(codec) == "part"
    assert cut_utf8("aé".encode(), 2) == b"a"
    assert cut_utf8(b"abc", 5) == b"abc"


def test_decode_lines_gives_none_for_lines_that_are_not_json() -> None:
    import orjson
    good = [b'{"a":1}', b'{"b":"x"}', b'[1]']
    assert decode_lines(good, orjson.loads) == [{"a": 1}, {"b": "x"}, [1]]
    mixed = [b'{"a":1}', b"nope", b'{"b":2}, {"c":3}', b'{"d": "\xff"}', b"", b'{"e":5}']
    assert decode_lines(mixed, orjson.loads) == [{"a": 1}, None, None, None, None, {"e": 5}]


def test_scanner_globs_and_excludes(tmp_path: Path) -> None:
    for name in ("a.log", "b.log", "c.gz", "d.log"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "dir.log").mkdir()
    os.symlink(tmp_path / "a.log", tmp_path / "link.log")
    s = Scanner([f"{tmp_path}/*.log", f"{tmp_path}/*.gz"], ["*/d.log", "*.gz"])
    names = sorted(Path(f.path).name for f in s.scan())
    assert names == ["a.log", "b.log", "link.log"]
    assert s.watch_dirs() == [str(tmp_path)]


@pytest.mark.skipif(not ino.available(), reason="inotify is Linux only")
def test_inotify_reports_writes_and_creations(tmp_path: Path) -> None:
    w = ino.Inotify()
    try:
        (tmp_path / "f").write_text("")
        wd_dir = w.add(str(tmp_path), ino.DIR_MASK)
        wd_file = w.add(str(tmp_path / "f"), ino.FILE_MASK)
        (tmp_path / "f").write_text("x")
        (tmp_path / "g").write_text("")
        events = w.read()
        assert any(wd == wd_file and mask & ino.IN_MODIFY for wd, mask, _ in events)
        assert any(wd == wd_dir and mask & ino.IN_CREATE and name == "g"
                   for wd, mask, name in events)
        assert w.read() == []
    finally:
        w.close()


def test_has_long_line_agrees_with_splitting() -> None:
    import random

    from rillet.inputs.tail.file import has_long_line

    rng = random.Random(7)
    for _ in range(2000):
        limit = rng.randint(1, 40)
        lines = [b"x" * rng.choice([0, 1, 5, limit - 1, limit, limit + 3, 2 * limit])
                 for _ in range(rng.randint(1, 12))]
        buf = b"\n".join(lines) + b"\ntail-of-a-partial-line"
        nl = buf.rfind(b"\n")
        expected = max(map(len, buf[:nl].split(b"\n"))) >= limit
        assert has_long_line(buf, nl, limit) is expected
