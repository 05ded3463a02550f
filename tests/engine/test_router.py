"""Fluent Bit's Match / Match_Regex semantics (reference §1c)."""

import pytest

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
