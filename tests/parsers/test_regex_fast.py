"""The fast guard of the built-in ``nginx`` regex: whenever it matches a one-line text, Fluent
Bit's regex (as translated) matches it with exactly the same groups; and the parser's inline
plan gives what ``Parser.parse`` gives."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rillet.parsers.regex import NGINX, compile_ruby, fast_guard
from rillet.parsers.registry import ParserRegistry, builtin_definitions

ORIGINAL = compile_ruby(NGINX)
GUARD = fast_guard(NGINX)

# The characters the two regexes treat differently: separators, quotes, brackets, white space
# other than the space, a backslash, non-ASCII.
ODD = " \"[]\t\r\f\v\\-/aZ0é"
piece = st.text(alphabet=ODD, max_size=6)
word = st.text(alphabet="abcGET/01.-", min_size=1, max_size=8)
sep = st.sampled_from([" "] * 6 + ["  ", "\t", " \t", ""])


@st.composite
def lines(draw: st.DrawFn) -> str:
    """Lines near the nginx shape: each part mostly well formed, sometimes odd text."""
    def part(good: st.SearchStrategy[str]) -> str:
        kind = draw(st.integers(0, 9))
        if kind == 0:
            return draw(piece)
        return draw(good) + (draw(piece) if kind == 1 else "")
    return (f"{part(word)} {part(word)} {part(word)} [{part(word)}]{part(st.just(' '))}\""
            f"{part(word)}{draw(sep)}{part(word)}{draw(sep)}{part(word)}\"{part(st.just(' '))}"
            f"{part(word)} {part(word)}{draw(sep)}"
            f"\"{part(word)}\" \"{part(word)}\"{draw(piece)}")


def _same(text: str) -> bool:
    """Checks the guard's promise on ``text``; True when the guard matched."""
    assert GUARD is not None
    g = GUARD.match(text)
    if g is None or "\n" in text:
        return False
    o = ORIGINAL.match(text)
    assert o is not None, text
    assert o.groupdict() == g.groupdict(), text
    assert o.groups() == g.groups(), text
    return True


def test_guard_is_for_the_builtin_nginx_only() -> None:
    assert builtin_definitions()["nginx"]["regex"] == NGINX
    assert GUARD is not None
    assert list(GUARD.groupindex) == list(ORIGINAL.groupindex)
    assert GUARD.groups == ORIGINAL.groups
    assert fast_guard(NGINX + "$") is None
    assert fast_guard(NGINX.replace("remote", "client")) is None


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines())
def test_guard_gives_the_groups_of_the_original(text: str) -> None:
    _same(text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ODD, max_size=40))
def test_guard_on_random_text(text: str) -> None:
    _same(text)


def test_guard_matches_common_lines_and_odd_ones_are_left_to_the_original() -> None:
    common = [
        '10.1.2.3 - - [19/Dec/2019:17:41:12 +0000] "GET / HTTP/1.1" 200 612 "-" "hey/0.0.1"',
        '10.1.2.3 - bob [19/Dec/2019:17:41:12 +0000] "POST /a?b=c&d=%22 HTTP/2.0" 201 0 '
        '"https://x/" "Mozilla/5.0 (X11; Linux x86_64)" "52.95.4.2"',
        '::1 h u [t] "M p " c s "" ""',  # empty protocol, empty referer and agent
    ]
    for text in common:
        assert _same(text), text
    odd = [
        '1 - - [t] "GET  /double-space HTTP/1.1" 200 1 "-" "a"',  # path after two spaces
        '1 - - [t] "GET /a b HTTP/1.1" 200 1 "-" "a"',  # a space inside the path
        '1 - - [t] "GET" 200 1 "-" "a"',  # no path
        '1 - - [t] "GET /q"x HTTP/1.1" 200 1 "-" "a"',  # a quote inside the path
        '1 - - [t] "GET\t/tab HTTP/1.1" 200 1 "-" "a"',
        '1 - - [t] "GET /p HTTP/1.1"" 200 1 "-" "a"',
        '2019/12/19 17:41:18 [error] 29#29: *1 open() "/x" failed',
    ]
    for text in odd:
        assert GUARD is not None and GUARD.match(text) is None, text
        m = ORIGINAL.match(text)
        # Left to the original, which still decides (some of these match it).
        assert m is None or m.group("method")
    assert ORIGINAL.match(odd[0]).group("path") == "/double-space"  # type: ignore[union-attr]


def test_parser_uses_the_guard_and_gives_the_same_records() -> None:
    parser = ParserRegistry().get("nginx")
    assert parser is not None
    plan = parser.inline_regex()
    assert plan is not None and plan.first == GUARD.match  # type: ignore[union-attr]
    # The parser's own cache of time texts, filled by its parses.
    assert plan.time_cache is parser._time_cache is not None
    texts = [
        '10.1.2.3 - - [19/Dec/2019:17:41:12 +0000] "GET / HTTP/1.1" 200 612 "-" "hey"',
        '1 - - [19/Dec/2019:17:41:12 +0000] "GET  /double HTTP/1.1" 200 1 "-" "a"',
        '1 - - [bad time] "GET /x HTTP/1.1" 200 1 "" "a"',
        '2019/12/19 17:41:18 [error] 29#29: *1 open() "/x" failed',
    ]
    for text in texts:
        got = parser.parse(text)
        m = ORIGINAL.match(text)
        if m is None:
            assert got is None
            continue
        assert got is not None
        record, ns = got
        expected = {k: v for k, v in m.groupdict().items() if v}
        time_text = expected.pop("time", None)
        assert record == expected
        assert list(record) == list(expected)
        assert ns == (parser.time_of(time_text) if time_text else None)
    assert parser.parse(texts[0])[1] == 1576777272 * 10**9  # type: ignore[index]


def test_plain_regex_plan_only_for_plain_parsers() -> None:
    reg = ParserRegistry()
    assert reg.get("json").inline_regex() is None  # type: ignore[union-attr]
    # Not anchored at the start: no plan.
    assert reg.get("docker-daemon").inline_regex() is None  # type: ignore[union-attr]
    # An unnamed group (syslog-rfc5424's extradata inner groups): no plan.
    assert reg.get("syslog-rfc5424").inline_regex() is None  # type: ignore[union-attr]
    apache = reg.get("apache")
    assert apache is not None
    plan = apache.inline_regex()
    assert plan is not None and plan.first == apache.regex.match  # type: ignore[union-attr]
    assert re.compile("x").match("x")
