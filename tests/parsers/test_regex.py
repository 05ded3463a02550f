"""Onigmo (Ruby) regexes on Python's re: the constructs Fluent Bit's parsers use."""

from __future__ import annotations

import re

import pytest

from rillet.parsers.regex import RegexError, compile_ruby, translate

# The regexes of Fluent Bit's conf/parsers.conf (reference §1e), verbatim.
BUILTIN = {
    "apache": r'^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$',
    "apache2": r'^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>.*)")?$',
    "apache_error": r'^\[[^ ]* (?<time>[^\]]*)\] \[(?<level>[^\]]*)\](?: \[pid (?<pid>[^\]]*)\])?( \[client (?<client>[^\]]*)\])? (?<message>.*)$',
    "nginx": r'^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")',
    "k8s-nginx-ingress": r'^(?<host>[^ ]*) - (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*) "(?<referer>[^\"]*)" "(?<agent>[^\"]*)" (?<request_length>[^ ]*) (?<request_time>[^ ]*) \[(?<proxy_upstream_name>[^ ]*)\] (\[(?<proxy_alternative_upstream_name>[^ ]*)\] )?(?<upstream_addr>[^ ]*) (?<upstream_response_length>[^ ]*) (?<upstream_response_time>[^ ]*) (?<upstream_status>[^ ]*) (?<reg_id>[^ ]*).*$',
    "docker-daemon": r'time="(?<time>[^ ]*)" level=(?<level>[^ ]*) msg="(?<msg>[^ ].*)"',
    "syslog-rfc5424": r'^\<(?<pri>[0-9]{1,5})\>1 (?<time>[^ ]+) (?<host>[^ ]+) (?<ident>[^ ]+) (?<pid>[-0-9]+) (?<msgid>[^ ]+) (?<extradata>(\[(.*?)\]|-)) (?<message>.+)$',
    "syslog-rfc3164-local": r'^\<(?<pri>[0-9]+)\>(?<time>[^ ]* {1,2}[^ ]* [^ ]*) (?<ident>[a-zA-Z0-9_\/\.\-]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$',
    "syslog-rfc3164": r'/^\<(?<pri>[0-9]+)\>(?<time>[^ ]* {1,2}[^ ]* [^ ]*) (?<host>[^ ]*) (?<ident>[a-zA-Z0-9_\/\.\-]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$/',
    "mongodb": r'^(?<time>[^ ]*)\s+(?<severity>\w)\s+(?<component>[^ ]+)\s+\[(?<context>[^\]]+)]\s+(?<message>.*?) *(?<ms>(\d+))?(:?ms)?$',
    "envoy": r'^\[(?<start_time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)? (?<protocol>\S+)" (?<code>[^ ]*) (?<response_flags>[^ ]*) (?<bytes_received>[^ ]*) (?<bytes_sent>[^ ]*) (?<duration>[^ ]*) (?<x_envoy_upstream_service_time>[^ ]*) "(?<x_forwarded_for>[^ ]*)" "(?<user_agent>[^\"]*)" "(?<request_id>[^\"]*)" "(?<authority>[^ ]*)" "(?<upstream_host>[^ ]*)"',
    "cri": r'^(?<time>[^ ]+) (?<stream>stdout|stderr) (?<logtag>[^ ]*) (?<message>.*)$',
    "kube-custom": r'(?<tag>[^.]+)?\.?(?<pod_name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)_(?<namespace_name>[^_]+)_(?<container_name>.+)-(?<docker_id>[a-z0-9]{64})\.log$',
    # multiline built-ins (go, python, java, ruby rules)
    "go_frame_1": r'/^(?:[^\s.:]+\.)*[^\s.():]+\(|^created by /',
    "go_goroutine": r'/^goroutine \d+ \[[^\]]+\]:$/',
    "python": r'/^(?:[^\s.():]+\.)*[^\s.():]+:/',
    "java": r'/(.)(?:Exception|Error|Throwable|V8 errors stack trace)[:\r\n]/',
    "java_more": r'/^[\t ]*... \d+ (?:more|common frames omitted)/',
    "ruby": r'/^\s+from\s+.*:\d+:in\s+.*/',
}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_regex_compiles(name: str) -> None:
    compile_ruby(BUILTIN[name])


def test_nginx_line_gives_fluent_bits_fields() -> None:
    rx = compile_ruby(BUILTIN["nginx"])
    line = ('10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] "GET / HTTP/1.1" 200 612 "-" '
            '"hey/0.0.1" "52.95.4.2"')
    m = rx.match(line)
    assert m is not None
    assert m.groupdict() == {"remote": "10.1.128.166", "host": "-", "user": "-",
                             "time": "19/Dec/2019:17:41:12 +0000", "method": "GET", "path": "/",
                             "code": "200", "size": "612", "referer": "-",
                             "agent": "hey/0.0.1"}


def test_slash_form_and_options() -> None:
    text, flags = translate("/^abc$/ix")
    assert text == "^abc$"
    assert flags & re.IGNORECASE and flags & re.VERBOSE and flags & re.MULTILINE
    assert not flags & re.DOTALL
    assert translate("/a.b/m")[1] & re.DOTALL  # Ruby 'm': dot matches newline
    assert compile_ruby("/a.b/m").match("a\nb")
    assert not compile_ruby("a.b").match("a\nb")


def test_ruby_anchors_are_line_anchors() -> None:
    assert compile_ruby("^b$").search("a\nb\nc")
    assert compile_ruby(r"a\z").search("xa") and not compile_ruby(r"a\z").search("xa\n")
    assert compile_ruby(r"a\Z").search("xa\n")


def test_named_groups_lookbehind_and_hex_class() -> None:
    rx = compile_ruby(r"(?<=id=)(?<id>\h+)(?<!zz)")
    m = rx.search("x id=DeadBeef1 y")
    assert m is not None and m.group("id") == "DeadBeef1"
    assert compile_ruby(r"[\h-]+").fullmatch("ab-09")
    assert compile_ruby(r"\H").fullmatch("g")
    assert compile_ruby(r"[\[(?<x>]").fullmatch("<")  # '(?<' inside a class is literal


def test_atomic_groups_and_possessive_quantifiers() -> None:
    assert compile_ruby(r"(?>a+)b").match("aab")
    assert not compile_ruby(r"a++a").match("aaa")


@pytest.mark.parametrize(("pattern", "construct"), [
    (r"\Gabc", r"\G"), (r"a\Kb", r"\K"), (r"\p{Alpha}+", r"\p{...}"), ("(?~abc)", "(?~"),
])
def test_untranslatable_constructs_are_named(pattern: str, construct: str) -> None:
    with pytest.raises(RegexError, match=re.escape(construct)):
        compile_ruby(pattern)


def test_syntax_errors_are_reported() -> None:
    with pytest.raises(RegexError, match="invalid regular expression"):
        compile_ruby("(?<open>abc")


def test_more_ruby_spellings() -> None:
    m = compile_ruby(r"(?'word'\w+)-\k<word>").fullmatch("ab-ab")
    assert m is not None and m.group("word") == "ab"
    assert compile_ruby(r"\e\x{41}").fullmatch("\x1bA")
    assert compile_ruby(r"[[:alpha:][:digit:]_]+").fullmatch("aZ9_")
    assert not compile_ruby(r"[[:alpha:]]").fullmatch("9")
    assert compile_ruby(r"(?<a>x)(?(<a>)y|z)").fullmatch("xy")
    assert compile_ruby(r"a(?# a comment )b").fullmatch("ab")


def test_inline_options_follow_ruby() -> None:
    # (?i) in the middle applies to the rest of the enclosing group only.
    rx = compile_ruby(r"(a(?i)b)c")
    assert rx.fullmatch("aBc") and not rx.fullmatch("aBC") and not rx.fullmatch("ABc")
    assert compile_ruby(r"(?i)abc").fullmatch("ABC")
    assert compile_ruby(r"(?m:a.b)").fullmatch("a\nb")  # Ruby m = dot matches newline
    assert compile_ruby(r"(?i-m:a.b)").fullmatch("A-b")


def test_ascii_classes_like_ruby() -> None:
    assert not compile_ruby(r"^\d+$").match("١٢")  # Arabic-Indic digits are not \d in Ruby
    assert not compile_ruby(r"^\w$").match("é")
    assert compile_ruby(r"^[^ ]+$").match("é")


@pytest.mark.parametrize(("pattern", "construct"), [
    (r"[a-z&&[^aeiou]]", "&&"), (r"[a[bc]]", "nested character class"),
    (r"(?<a>x)\1", "numbered back-reference"), (r"(?<a>x)|(?<a>y)", "used twice"),
    (r"\g<1>", r"\g<...>"), (r"\R", r"\R"), (r"[\H]", r"\H"), (r"[[:^alpha:]]", "[:^class:]"),
])
def test_more_rejections(pattern: str, construct: str) -> None:
    with pytest.raises(RegexError, match=re.escape(construct)):
        compile_ruby(pattern)


def test_rejection_names_the_parser_at_startup() -> None:
    from rillet.config.model import ConfigModel, Section
    from rillet.parsers.definitions import validate

    s = Section("parser", "p.conf", 1)
    s.set("name", "mine", "p.conf", 2)
    s.set("format", "regex", "p.conf", 3)
    s.set("regex", r"^\K(?<a>x)", "p.conf", 4)
    model = ConfigModel.empty("p.conf")
    model.parsers.append(s)
    errors: list[str] = []
    validate(model, errors)
    assert errors == [r"p.conf:4: [PARSER] mine: regex: unsupported construct \K (keep)"]


@pytest.mark.parametrize(("pattern", "risky"), [
    (r"(a+)+$", True), (r"(\w+\s?)*$", True), (r"(?:x|y+)*z", True),
    (r"(?:\.[a-z]+)*", False), (r"(?:[a-z]+\.)*x", False), (r"(?>a+)+", False),
    (r"(a++)*", False), (r"^(?<a>[^ ]*) (?<b>.*)$", False),
])
def test_backtracking_check(pattern: str, risky: bool) -> None:
    from rillet.parsers.regex import backtracking_risk

    assert (backtracking_risk(pattern) is not None) is risky


@pytest.mark.parametrize(("pattern", "text", "found"), [
    (r"^[\r\n]*$", "foo\n", False),  # Onigmo: no line start after a final newline
    (r"^$", "", True),
    (r"^$", "a\n\nb", True),
    (r"^b", "a\nb", True),
    (r"x^$", "x", False),
])
def test_caret_is_onigmos_line_start(pattern: str, text: str, found: bool) -> None:
    assert (compile_ruby(pattern).search(text) is not None) is found
