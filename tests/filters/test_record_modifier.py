"""The ``record_modifier`` filter: Record, Remove_key, Allowlist_key / Whitelist_key, Uuid_key."""

from __future__ import annotations

import uuid

import pytest

from rillet.filters.record_modifier import RecordModifierFilter
from tests.filters.filter_kit import batch, config_error, configure, run

REC = {"Mem.total": 1016024, "Mem.used": 716672, "Swap.total": 2064380, "log": "x",
       "hostname": "old"}


@pytest.mark.parametrize("as_bytes", [False, True])
def test_record_appends_fields_in_order(as_bytes: bool) -> None:
    f = configure(RecordModifierFilter, ("Record", "hostname node-1"),
                  ("Record", "product Awesome Product"))
    (out,) = run(f, [REC], as_bytes=as_bytes)
    assert list(out)[-2:] == ["hostname", "product"]
    assert out["hostname"] == "node-1" and out["product"] == "Awesome Product"


def test_remove_key_ignores_case_and_takes_prefixes() -> None:
    f = configure(RecordModifierFilter, ("Remove_key", "LOG"), ("Remove_key", "Mem.*"))
    assert run(f, [REC]) == [{"Swap.total": 2064380, "hostname": "old"}]


@pytest.mark.parametrize("key", ["Allowlist_key", "Whitelist_key"])
def test_allowlist_keeps_only_listed_keys(key: str) -> None:
    f = configure(RecordModifierFilter, (key, "Mem.total"), (key, "sw*"))
    assert run(f, [REC]) == [{"Mem.total": 1016024, "Swap.total": 2064380}]


def test_uuid_key_appends_a_random_uuid4() -> None:
    f = configure(RecordModifierFilter, uuid_key="uid")
    a, b = run(f, [REC, REC])
    assert uuid.UUID(a["uid"]).version == 4 and a["uid"] != b["uid"]
    assert list(a)[-1] == "uid"


def test_non_object_bodies_pass_and_nothing_to_do_passes() -> None:
    f = configure(RecordModifierFilter, ("Record", "a b"))
    b = batch([REC])
    b.bodies = [b"[1,2]", b"not json"]
    b.times = [1, 2]
    assert f.filter(b).bodies == [b"[1,2]", b"not json"]
    assert run(configure(RecordModifierFilter), [REC]) == [REC]


def test_config_errors() -> None:
    assert "exclusive" in config_error(RecordModifierFilter, ("Remove_key", "a"),
                                       ("Allowlist_key", "b"))
    assert "expects 'KEY VALUE'" in config_error(RecordModifierFilter, ("Record", "lonely"))
