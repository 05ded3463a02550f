"""Every built-in parser (Fluent Bit's conf/parsers.conf) on real lines: fields, types, times."""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path
from typing import Any

import pytest

from rillet.parsers.regex import backtracking_risk, compile_ruby, translate
from rillet.parsers.registry import BUILTIN_FILE, ParserRegistry, builtin_definitions

NS = 1_000_000_000
YEAR = time.gmtime().tm_year

# The §1e table: every one of these must be shipped.
REQUIRED = {"docker", "cri", "nginx", "apache", "apache2", "apache_error", "json", "logfmt",
            "syslog-rfc5424", "syslog-rfc3164", "syslog-rfc3164-local", "mongodb", "envoy",
            "istio-envoy-proxy", "k8s-nginx-ingress", "kube-custom", "docker-daemon",
            "kmsg-netfilter-log"}

CASES: list[tuple[str, str, dict[str, Any], int | None]] = [
    ("apache",
     '192.168.2.20 - - [28/Jul/2006:10:27:10 -0300] "GET /cgi-bin/try/ HTTP/1.0" 200 3395 "-" '
     '"Mozilla/5.0"',
     {"host": "192.168.2.20", "user": "-", "method": "GET", "path": "/cgi-bin/try/",
      "code": "200", "size": "3395", "referer": "-", "agent": "Mozilla/5.0"},
     1154093230 * NS),
    ("apache",  # no referer/agent: the optional group is skipped (empty captures dropped)
     '::1 - - [28/Jul/2006:10:27:10 -0300] "OPTIONS *" 200 -',
     {"host": "::1", "user": "-", "method": "OPTIONS", "path": "*", "code": "200", "size": "-"},
     1154093230 * NS),
    ("apache2",
     '192.168.2.20 - frank [28/Jul/2006:10:27:10 -0300] "GET /cgi-bin/try/ HTTP/1.0" 200 3395 '
     '"http://x/" "Mozilla/5.0 (X11)"',
     {"host": "192.168.2.20", "user": "frank", "method": "GET", "path": "/cgi-bin/try/",
      "code": "200", "size": "3395", "referer": "http://x/", "agent": "Mozilla/5.0 (X11)"},
     1154093230 * NS),
    ("apache_error",
     "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server "
     "configuration: /export/home/live/ap/htdocs/test",
     {"time": "Oct 11 14:32:52 2000", "level": "error", "client": "127.0.0.1",
      "message": "client denied by server configuration: /export/home/live/ap/htdocs/test"},
     None),
    ("apache_error",
     "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client "
     "72.15.99.187] File does not exist: /usr/local/apache2/htdocs/favicon.ico",
     {"time": "Sep 09 10:42:29.902022 2011", "level": "core:error",
      "pid": "35708:tid 4328636416", "client": "72.15.99.187",
      "message": "File does not exist: /usr/local/apache2/htdocs/favicon.ico"}, None),
    ("nginx",
     '10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] "GET / HTTP/1.1" 200 612 "-" "hey/0.0.1" '
     '"52.95.4.2"',
     {"remote": "10.1.128.166", "host": "-", "user": "-", "method": "GET", "path": "/",
      "code": "200", "size": "612", "referer": "-", "agent": "hey/0.0.1"},
     1576777272 * NS),
    ("k8s-nginx-ingress",
     '192.168.65.3 - - [28/Dec/2020:02:53:41 +0000] "GET /hello HTTP/1.1" 200 41 "-" '
     '"curl/7.64.1" 79 0.001 [default-hello-8080] [] 10.1.0.47:8080 41 0.000 200 '
     'c2d1a0a9c0d3e0e8f09b8f4f4c9e1ab2',
     {"host": "192.168.65.3", "user": "-", "method": "GET", "path": "/hello", "code": "200",
      "size": "41", "referer": "-", "agent": "curl/7.64.1", "request_length": "79",
      "request_time": "0.001", "proxy_upstream_name": "default-hello-8080",
      "upstream_addr": "10.1.0.47:8080", "upstream_response_length": "41",
      "upstream_response_time": "0.000", "upstream_status": "200",
      "reg_id": "c2d1a0a9c0d3e0e8f09b8f4f4c9e1ab2"},
     1609124021 * NS),
    ("docker-daemon",
     'time="2019-12-19T17:41:12.706307780Z" level=info msg="Container started" id=abc',
     {"time": "2019-12-19T17:41:12.706307780Z", "level": "info", "msg": "Container started"},
     1576777272706307780),
    ("syslog-rfc5424",
     '<165>1 2017-07-17T20:17:03.123Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473'
     ' iut="3" eventSource="Application"] An application event log entry',
     {"pri": "165", "time": "2017-07-17T20:17:03.123Z", "host": "mymachine.example.com",
      "ident": "evntslog", "pid": "1234", "msgid": "ID47",
      "extradata": '[exampleSDID@32473 iut="3" eventSource="Application"]',
      "message": "An application event log entry"},
     1500322623123000000),
    ("syslog-rfc5424",
     "<34>1 2017-07-17T22:17:03.5+02:00 host app - - - message",
     {"pri": "34", "time": "2017-07-17T22:17:03.5+02:00", "host": "host", "ident": "app",
      "pid": "-", "msgid": "-", "extradata": "-", "message": "message"},
     1500322623500000000),
    ("syslog-rfc3164-local",
     "<13>Jul 17 20:17:03 sshd[1234]: Accepted publickey for root",
     {"pri": "13", "time": "Jul 17 20:17:03", "ident": "sshd", "pid": "1234",
      "message": "Accepted publickey for root"},
     calendar.timegm((YEAR, 7, 17, 20, 17, 3)) * NS),
    ("syslog-rfc3164",
     "<34>Oct  1 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
     {"pri": "34", "time": "Oct  1 22:14:15", "host": "mymachine", "ident": "su",
      "message": "'su root' failed for lonvick on /dev/pts/8"},
     calendar.timegm((YEAR, 10, 1, 22, 14, 15)) * NS),
    ("mongodb",
     "2017-07-17T20:17:03.123+0000 I NETWORK  [initandlisten] waiting for connections on port "
     "27017 123ms",
     {"time": "2017-07-17T20:17:03.123+0000", "severity": "I", "component": "NETWORK",
      "context": "initandlisten", "message": "waiting for connections on port 27017",
      "ms": "123"},
     1500322623123000000),
    ("envoy",
     '[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 '
     '"10.0.35.28" "nsq2http" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "locations" '
     '"tcp://10.0.2.1:80"',
     {"start_time": "2016-04-15T20:17:00.310Z", "method": "POST", "path": "/api/v1/locations",
      "protocol": "HTTP/2", "code": "204", "response_flags": "-", "bytes_received": "154",
      "bytes_sent": "0", "duration": "226", "x_envoy_upstream_service_time": "100",
      "x_forwarded_for": "10.0.35.28", "user_agent": "nsq2http",
      "request_id": "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2", "authority": "locations",
      "upstream_host": "tcp://10.0.2.1:80"},
     1460751420310000000),
    ("istio-envoy-proxy",
     '[2021-03-08T10:00:00.123Z] "GET /productpage HTTP/1.1" 200 - via_upstream - "-" 0 5179 '
     '23 22 "10.1.1.1" "curl/7.68.0" "5b2b3c55-1234" productpage:9080" "10.1.2.3:9080" '
     "outbound|9080||productpage.default.svc.cluster.local 10.1.1.5:40170 10.1.2.3:9080 "
     "10.1.1.1:51234 - default",
     {"start_time": "2021-03-08T10:00:00.123Z", "method": "GET", "path": "/productpage",
      "protocol": "HTTP/1.1", "response_code": "200", "response_flags": "-",
      "response_code_details": "via_upstream", "connection_termination_details": "-",
      "upstream_transport_failure_reason": '"-"', "bytes_received": "0", "bytes_sent": "5179",
      "duration": "23", "x_envoy_upstream_service_time": "22", "x_forwarded_for": "10.1.1.1",
      "user_agent": "curl/7.68.0", "x_request_id": "5b2b3c55-1234",
      "authority": "productpage:9080", "upstream_host": "10.1.2.3:9080",
      "upstream_cluster": "outbound|9080||productpage.default.svc.cluster.local",
      "upstream_local_address": "10.1.1.5:40170", "downstream_local_address": "10.1.2.3:9080",
      "downstream_remote_address": "10.1.1.1:51234", "requested_server_name": "-",
      "route_name": "default"},
     1615197600123000000),
    ("cri", "2019-12-19T17:41:12.706307780Z stderr P partial line here",
     {"time": "2019-12-19T17:41:12.706307780Z", "stream": "stderr", "logtag": "P",
      "message": "partial line here"},
     1576777272706307780),
    ("cri", "2019-12-19T17:41:12.706307780+01:00 stdout F ",
     {"time": "2019-12-19T17:41:12.706307780+01:00", "stream": "stdout", "logtag": "F"},
     1576773672706307780),
    ("kube-custom",
     "nginx-7bb7cd8db5-x9wq2_default_nginx-"
     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log",
     {"tag": "nginx-7bb7cd8db5-x9wq", "pod_name": "2", "namespace_name": "default",
      "container_name": "nginx",
      "docker_id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
     None),
    ("kube-custom",
     "kube.var.log.containers.nginx-7bb7cd8db5-x9wq2_default_nginx-"
     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.log",
     {"tag": "kube", "pod_name": "var.log.containers.nginx-7bb7cd8db5-x9wq2",
      "namespace_name": "default", "container_name": "nginx",
      "docker_id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
     None),
    ("kmsg-netfilter-log",
     "<4>1 2021-03-08T10:00:00.123+00:00 myhost kernel - - - [123.456] DROP IN=eth0 OUT= "
     "MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=10.0.0.1 DST=10.0.0.2 LEN=60 TOS=0x00 "
     "PREC=0x00 TTL=64 ID=12345 DF PROTO=TCP SPT=12345 DPT=80 WINDOW=29200 RES=0x00 SYN URGP=0",
     {"pri": "4", "host": "myhost", "logprefix": "DROP", "in": "eth0",
      "macsrc": "00:11:22:33:44:55", "macdst": "66:77:88:99:aa:bb", "ethtype": "08:00",
      "saddr": "10.0.0.1", "daddr": "10.0.0.2", "len": "60", "tos": "0x00", "prec": "0x00",
      "ttl": "64", "id": "12345", "proto": "TCP", "sport": "12345", "dport": "80",
      "window": "29200", "res": "0x00", "flag": "SYN", "urgp": "0"},
     1615197600123000000),
    ("json", '{"time":"19/Dec/2019:17:41:12 +0000","msg":"hi","n":1,"f":1.5,"o":{"a":[1]}}',
     {"msg": "hi", "n": 1, "f": 1.5, "o": {"a": [1]}}, 1576777272 * NS),
    ("json", '{"time":"2019-12-19T17:41:12Z","msg":"iso time: Fluent Bit warns"}',
     {"time": "2019-12-19T17:41:12Z", "msg": "iso time: Fluent Bit warns"}, None),
    ("logfmt", 'level=info msg="hello world" count=3 ok empty="" bare=',
     {"level": "info", "msg": "hello world", "count": "3", "ok": True, "empty": "",
      "bare": True}, None),
    ("docker",
     '{"log":"10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] \\"GET / HTTP/1.1\\" 200 612\\n",'
     '"stream":"stdout","time":"2019-12-19T17:41:12.70630778Z"}',
     {"log": '10.1.128.166 - - [19/Dec/2019:17:41:12 +0000] "GET / HTTP/1.1" 200 612\n',
      "stream": "stdout", "time": "2019-12-19T17:41:12.70630778Z"},
     1576777272706307780),
]


def test_every_parser_of_the_reference_table_is_shipped() -> None:
    assert set(builtin_definitions()) >= REQUIRED
    assert Path(BUILTIN_FILE).is_file()


@pytest.mark.parametrize(("name", "line", "record", "ns"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_builtin_parser_gives_fluent_bits_record(name: str, line: str, record: dict[str, Any],
                                                 ns: int | None) -> None:
    parser = ParserRegistry().get(name)
    assert parser is not None
    result = parser.parse(line)
    assert result is not None
    assert result[0] == record
    assert list(result[0]) == list(record)  # key order: the groups' order
    assert result[1] == ns
    assert parser.parse(line.encode()) == result  # bytes in, same answer


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_builtin_regexes_translate_without_backtracking_risk(name: str) -> None:
    opts = builtin_definitions()[name]
    if opts["format"] != "regex":
        return
    _, flags = translate(opts["regex"])
    assert flags & re.MULTILINE and flags & re.ASCII
    assert compile_ruby(opts["regex"]).groupindex
    assert backtracking_risk(opts["regex"]) is None


def test_user_definition_overrides_builtin_and_adds() -> None:
    from tests.parsers.helpers import make_parser

    mine = make_parser(name="nginx", format="json")
    reg = ParserRegistry({"nginx": _opts(mine.name, "json"), "extra": _opts("extra", "logfmt")})
    nginx = reg.get("nginx")
    assert nginx is not None and nginx.format == "json"
    assert "extra" in reg and "cri" in reg and reg.get("nope") is None


def _opts(name: str, fmt: str) -> Any:
    from rillet.config.options import Options
    from rillet.parsers.definitions import PARSER_OPTIONS

    o = Options({opt.name: opt.default_value() for opt in PARSER_OPTIONS})
    o["name"], o["format"] = name, fmt
    return o


def test_the_shipped_file_passes_the_full_startup_validation() -> None:
    # Startup skips compiling the built-in regexes (they compile when first used): this is the
    # check it skips, every regex included.
    from rillet.config.classic import PARSER_KINDS, read_classic
    from rillet.parsers.definitions import validate

    errors: list[str] = []
    parsers, _ = validate(read_classic(BUILTIN_FILE, allowed=PARSER_KINDS,
                                       role="a parsers file"), errors)
    assert errors == []
    assert set(parsers) == set(builtin_definitions())
