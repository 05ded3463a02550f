"""The ``modify`` filter: every rule and condition, rules in the configuration's order, key
order as Fluent Bit packs it, quoted values."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from rillet.filters.modify import ModifyFilter, split_tokens, wildcard
from tests.filters.filter_kit import batch, config_error, configure, run

REC = {"Mem.total": 1016024, "Mem.used": 716672, "Mem.free": 299352, "Swap.total": 2064380,
       "Swap.used": 0, "Swap.free": 2064380, "level": "info", "temp": "21"}


def one(*entries: tuple[str, str], record: dict[str, Any] | None = None,
        as_bytes: bool = False) -> dict[str, Any]:
    (out,) = run(configure(ModifyFilter, *entries), [record or REC], as_bytes=as_bytes)
    return out


@pytest.mark.parametrize("as_bytes", [False, True])
def test_set_replaces_and_moves_to_end_add_only_when_missing(as_bytes: bool) -> None:
    out = one(("Set", "level warn"), ("Add", "temp 99"), ("Add", "unit C"), as_bytes=as_bytes)
    assert list(out)[-2:] == ["level", "unit"]
    assert out["level"] == "warn" and out["temp"] == "21" and out["unit"] == "C"


def test_quoted_values_keep_spaces() -> None:
    out = one(("Set", 'msg "hello big world"'), ("Add", "note two words unquoted"))
    assert out["msg"] == "hello big world"
    assert out["note"] == "two words unquoted"


def test_remove_remove_wildcard_remove_regex() -> None:
    out = one(("Remove", "level"), ("Remove_wildcard", "Mem"), ("Remove_regex", r"\.free$"))
    assert list(out) == ["Swap.total", "Swap.used", "temp"]
    out = one(("Remove_wildcard", "Swap.t*"))
    assert "Swap.total" not in out and "Swap.used" in out


def test_rename_keeps_position_and_respects_existing_key() -> None:
    out = one(("Rename", "temp temperature"), ("Rename", "level Mem.total"))
    assert list(out)[-1] == "temperature" and out["level"] == "info"
    out = one(("Rename", "level kind"))
    assert list(out).index("kind") == 6


def test_hard_rename_replaces_existing_key() -> None:
    out = one(("Hard_rename", "level Mem.total"))
    assert "level" not in out and out["Mem.total"] == "info"
    assert list(out)[5] == "Mem.total"


def test_copy_and_hard_copy_put_the_copy_after_its_source() -> None:
    out = one(("Copy", "Mem.total t2"), ("Copy", "level temp"))
    assert out["t2"] == 1016024 and out["temp"] == "21"
    assert list(out)[:2] == ["Mem.total", "t2"]
    out = one(("Hard_copy", "level temp"))
    assert out["temp"] == "info" and list(out)[-2:] == ["level", "temp"]
    out = one(("Hard_copy", "temp Mem.total"))
    assert list(out)[-2:] == ["temp", "Mem.total"] and out["Mem.total"] == "21"
    assert one(("Copy", "missing x")) == REC


def test_move_to_start_and_end() -> None:
    out = one(("Move_to_start", "Swap*"))
    assert list(out)[:3] == ["Swap.total", "Swap.used", "Swap.free"]
    out = one(("Move_to_end", "Mem.*"))
    assert list(out)[-3:] == ["Mem.total", "Mem.used", "Mem.free"]


def test_rules_apply_in_configuration_order() -> None:
    out = one(("Rename", "temp t"), ("Set", "temp 5"))
    assert out["t"] == "21" and out["temp"] == "5"
    out = one(("Set", "temp 5"), ("Rename", "temp t"))
    assert out["t"] == "5" and "temp" not in out


CONDITION_CASES = [
    ("Key_exists level", True), ("Key_exists nope", False),
    ("Key_does_not_exist nope", True), ("Key_does_not_exist level", False),
    ("A_key_matches ^Swap", True), ("A_key_matches ^zzz", False),
    ("No_key_matches ^zzz", True), ("No_key_matches ^Mem", False),
    ("Key_value_equals level info", True), ("Key_value_equals level warn", False),
    ("Key_value_equals Swap.used 0", False),  # a number never equals a string
    ("Key_value_does_not_equal level warn", True), ("Key_value_does_not_equal level info", False),
    ("Key_value_does_not_equal nope x", False),
    ("Key_value_matches temp ^\\d+$", True), ("Key_value_matches level ^w", False),
    ("Key_value_does_not_match level ^w", True), ("Key_value_does_not_match temp \\d", False),
    ("Matching_keys_have_matching_values ^(level|temp)$ ^(info|21)$", True),
    ("Matching_keys_have_matching_values ^Mem \\d", False),  # numbers do not match
    # "do not have" is the negation of "have": some matching key's value does not match.
    ("Matching_keys_do_not_have_matching_values ^(level|temp)$ ^info$", True),
    ("Matching_keys_do_not_have_matching_values ^level$ info", False),
    ("Matching_keys_do_not_have_matching_values ^zzz x", False),
]


@pytest.mark.parametrize("condition, applies", CONDITION_CASES)
def test_conditions(condition: str, applies: bool) -> None:
    out = one(("Condition", condition), ("Set", "hit yes"))
    assert ("hit" in out) is applies


def test_every_condition_must_hold_and_accessor_keys() -> None:
    rec = {"kubernetes": {"labels": {"app": "web"}}, "log": "x"}
    f = configure(ModifyFilter, ("Condition", "Key_value_equals $kubernetes['labels']['app'] "
                                 "web"), ("Condition", "Key_exists log"), ("Add", "app web"))
    assert run(f, [rec])[0]["app"] == "web"
    f = configure(ModifyFilter, ("Condition", "Key_exists $kubernetes['labels']['app']"),
                  ("Condition", "Key_exists nope"), ("Add", "app web"))
    assert run(f, [rec]) == [rec]


def test_unchanged_records_keep_their_serialized_body() -> None:
    f = configure(ModifyFilter, ("Condition", "Key_exists nope"), ("Set", "a b"))
    b = batch([REC], as_bytes=True)
    raw = b.bodies[0]
    assert f.filter(b).bodies[0] is raw
    f = configure(ModifyFilter, ("Add", "level x"))
    b = batch([REC], as_bytes=True)
    raw = b.bodies[0]
    assert f.filter(b).bodies[0] is raw


def test_config_errors() -> None:
    assert "no rules" in config_error(ModifyFilter, ("Condition", "Key_exists a"))
    assert "expected 2 arguments" in config_error(ModifyFilter, ("Set", "lonely"))
    assert "unknown condition" in config_error(ModifyFilter, ("Condition", "Bogus a"),
                                               ("Add", "a b"))
    assert "Remove_regex" in config_error(ModifyFilter, ("Remove_regex", "(open"))
    assert "unbalanced quotes" in config_error(ModifyFilter, ("Set", '"a b'))


def test_split_tokens_and_wildcard() -> None:
    assert split_tokens('a "b c" d e', 3) == ["a", "b c", "d e"]
    assert split_tokens('  key   "quoted rest"  ', 2) == ["key", "quoted rest"]
    assert split_tokens("one", 2) == ["one"]
    assert wildcard("Mem")("Mem.total") and wildcard("Mem*")("Mem.total")
    assert wildcard("a*z")("a*z-x") and not wildcard("a*z")("a-to-z")  # '*' inside: literal


def test_add_and_set_only_are_spliced_into_serialized_bodies() -> None:
    f = configure(ModifyFilter, ("Match", "*"), ("Add", "cluster prod"), ("Set", "env a b"),
                  ("Add", "cluster x"), ("Set", "env staging"), ("Alias", "m"))
    assert f._splice is not None
    plain = b'{"log":"GET /a?x=1\\u0026y=2\\n","stream":"stdout"}'
    has_key = b'{"log":"x","cluster":"dev"}'
    hidden = b'{"log":"x","clu\\u0073ter":"dev"}'  # the key written with an escape
    nested = b'{"log":"x","m":{"env":"old"}}'  # the needle anywhere: decode to be sure
    b = batch([{}] * 6)
    b.bodies = [plain, has_key, hidden, b"{}", nested, {"dict": True}]
    b.times = list(range(6))
    out = f.filter(b).bodies
    assert out[0] == plain[:-1] + b',"cluster":"prod","env":"staging"}'
    assert out[1] == {"log": "x", "cluster": "dev", "env": "staging"}
    assert out[2] == {"log": "x", "cluster": "dev", "env": "staging"}
    assert out[3] == b'{"cluster":"prod","env":"staging"}'
    assert out[4] == {"log": "x", "m": {"env": "old"}, "cluster": "prod", "env": "staging"}
    assert out[5] == {"dict": True, "cluster": "prod", "env": "staging"}
    assert orjson.loads(out[0]) == {"log": "GET /a?x=1&y=2\n", "stream": "stdout",
                                    "cluster": "prod", "env": "staging"}
    # With a condition or another rule the records are decoded as usual.
    f = configure(ModifyFilter, ("Add", "cluster prod"), ("Remove", "stream"))
    assert f._splice is None
