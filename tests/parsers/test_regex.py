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
