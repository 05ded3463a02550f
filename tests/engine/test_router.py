"""Fluent Bit's Match / Match_Regex semantics (reference §1c)."""

from pathlib import Path

import pytest

from rillet.config.loader import load_config
from rillet.config.model import ConfigError
from rillet.engine.pipeline import build
from rillet.engine.router import Matcher, match_pattern


@pytest.mark.parametrize(("pattern", "tag", "expected"), [
    ("*", "anything.at.all", True),
    ("*", "", True),
    ("kube.*", "kube.var.log.containers.a_b_c.log", True),  # '*' crosses dots
    ("kube.*", "kube.", True),
    ("kube.*", "kube", False),
    ("kube.**", "kube.a.b", True),  # '**' is the same as '*'
    ("kube.**", "kube", False),
    ("Kube.*", "kube.a", False),  # case-sensitive
    ("app.log", "app.log", True),
    ("app.log", "app.logs", False),  # whole tag must match
    ("app.log", "xapp.log", False),
    ("*.log", "var.log.x.log", True),
    ("a*b*c", "aXXbYYc", True),
    ("a*b*c", "aXXbYY", False),
    ("a.?", "a.b", False),  # no '?' wildcard: literal
    ("a.?", "a.?", True),
    ("a[0]", "a[0]", True),  # brackets are literal too
])
def test_match_pattern(pattern: str, tag: str, expected: bool) -> None:
    assert match_pattern(pattern, tag) is expected


def test_match_regex_is_anchored_at_start_only() -> None:
    m = Matcher(None, r"kube\.var")
    assert m("kube.var.log")  # prefix match suffices
    assert not m("x.kube.var")
    assert Matcher(None, r"kube\.var$")("kube.var")
    assert not Matcher(None, r"kube\.var$")("kube.var.log")


def test_regex_then_pattern() -> None:
    m = Matcher("app.*", r"kube\.")
    assert m("kube.x") and m("app.y")
    assert not m("other")


def test_no_rule_matches_nothing() -> None:
    m = Matcher(None, None)
    assert m.empty and not m("x")


def test_match_regex_is_ruby_syntax() -> None:
    m = Matcher(None, r"kube\.(?<ns>[^.]+)\.\h+")
    assert m("kube.default.beef")
    assert not m("kube.default.zz")


def test_untranslatable_match_regex_is_a_config_error(tmp_path: Path) -> None:
    conf = tmp_path / "a.conf"
    conf.write_text("[INPUT]\n    Name dummy\n[OUTPUT]\n    Name null\n"
                    "    Match_Regex kube\\Gx\n")
    with pytest.raises(ConfigError) as info:
        build(load_config(str(conf)))
    assert info.value.errors == [f"{conf}:5: [OUTPUT] null: match_regex: "
                                 "unsupported construct \\G (match start anchor)"]
