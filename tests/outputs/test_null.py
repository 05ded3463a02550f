"""``null`` output against plugins/out_null/null.c (fluent/fluent-bit): the config map has
``format``, ``json_date_format`` and ``json_date_key``; a JSON ``format`` makes every flush
encode the chunk (``flb_pack_msgpack_to_json_format``) and throw it away; the default does
nothing; bad values are logged, not fatal; every flush returns FLB_OK."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rillet.engine.chunk import Chunk
from rillet.engine.plugin import Status, lookup
from rillet.outputs import formats
from rillet.outputs.null import Null
from tests.plugin_kit import flush, make_plugin


def make(**settings: str) -> Null:
    return make_plugin(Null, **settings)




CHUNK = Chunk("dummy.0", "dummy.0", [1, 2], [b'{"message":"dummy"}', {"a": 1}])


def test_registered() -> None:
    assert lookup("output", "null") is Null
    assert Null.default_workers == 1
    assert [o.name for o in Null.options] == ["format", "json_date_key", "json_date_format"]


def test_discards_without_encoding(capsysbinary: pytest.CaptureFixture[bytes],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> bytes:
        raise AssertionError("the default null output must not encode")

    monkeypatch.setattr(formats.JsonEncoder, "encode", boom)
    plugin = make()
    assert plugin.encoder is None
    assert flush(plugin, CHUNK) is Status.OK
    assert capsysbinary.readouterr() == (b"", b"")


def test_json_format_encodes_and_discards(capsysbinary: pytest.CaptureFixture[bytes],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    original = formats.JsonEncoder.encode

    def spy(self: formats.JsonEncoder, times: Any, bodies: Any) -> bytes:
        out = original(self, times, bodies)
        seen.append(out)
        return out

    monkeypatch.setattr(formats.JsonEncoder, "encode", spy)
    plugin = make(format="json_lines", json_date_key="off")
    assert flush(plugin, CHUNK) is Status.OK
    assert seen == [b'{"message":"dummy"}\n{"a":1}\n']
    assert capsysbinary.readouterr() == (b"", b"")


def test_bad_format_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        plugin = make(format="xml", json_date_format="nope")
    assert plugin.encoder is None
    assert "unrecognized 'format' option. Using 'msgpack'" in caplog.text
    assert "invalid json_date_format 'nope'. Using 'double' type" in caplog.text
    assert flush(plugin, CHUNK) is Status.OK
