"""The filter's record loop as it runs (the stream looked at only when the container's streams
are treated differently, a plain regex parser run inline) gives exactly what its reference
path gives: same bytes, same times, same counters, on generated
records that include the odd ones (not objects, bytes, invalid JSON, escapes, newlines)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rillet.filters.kubernetes import _plan_of
from rillet.filters.kubernetes import merge as mg
from rillet.parsers.registry import ParserRegistry
from tests.filters.kubernetes.test_filter import make

NOW = 1_700_000_000 * 10**9  # times above this were taken from the clock
BLOCK = b'{"pod_name":"web-1","namespace_name":"shop"}'
NGINX = ('10.1.2.3 - - [19/Dec/2019:17:41:12 +0000] "GET /a?b=1 HTTP/1.1" 200 612 "-" '
         '"hey/0.0.1" "52.95.4.2"')

logs = st.one_of(
    st.sampled_from([
        NGINX + "\n", NGINX, NGINX + "\n\n", NGINX.replace("GET ", "GET  ") + "\n",
        NGINX.replace("19/Dec", "99/Foo") + "\n", NGINX.replace("/a?b", "/a\\b") + "\n",
        '{"a": 1, "b": "x\\n"}\n', '{"a":{"b":[1,2]},"c":"d"}\n', '  {"a": "b"}', "[1, 2]\n",
        '{"a": 1', '{"a": "tab\there"}\n', "{}\n", "{}", "", "\n", "plain text\n",
        '{"log": "inner", "stream": "x"}\n', '{"a": "b\\r"}\n', '{"k": "v"} trailing\n',
    ]),
    st.text(alphabet=' "{}[]:,\\\nab1-/', max_size=30),
)
records = st.fixed_dictionaries(
    {"log": st.one_of(logs, st.none(), st.integers(-5, 5), st.just({"x": "y\n"}))},
    optional={"stream": st.sampled_from(["stdout", "stderr", "other"]),
              "time": st.just("2019-12-19T17:41:12.5Z")},
)
bodies = st.one_of(
    records, records.map(orjson.dumps),
    st.sampled_from([b"[1]", b"not json", b'"s"', b"{}"]),
)


def _norm(times: list[int]) -> list[int | str]:
    return ["now" if t > NOW else t for t in times]


def _both(flt: Any, batch: list[Any], props: mg.Props) -> None:
    """The filter's loop as it runs (streams looked at only when needed, plain regex parsers
    inline) against its reference path (every stream looked at, every parse by the parser)."""
    times = [1_600_000_000 * 10**9 + i for i in range(len(batch))]
    plan = _plan_of([("kubernetes", BLOCK)])
    plan.props = props
    before = flt.counters["kube_merged_records"]
    t1, b1 = flt._records(list(times), copy.deepcopy(batch), props, plan, inline=False)
    mid = flt.counters["kube_merged_records"]
    t2, b2 = flt._records(list(times), copy.deepcopy(batch), props, plan)
    assert b2 == b1
    assert _norm(t2) == _norm(t1)
    assert flt.counters["kube_merged_records"] - mid == mid - before


VARIANTS = [{}, {"merge_log_key": "data"}, {"keep_log": "off"}, {"merge_log_trim": "off"},
            {"merge_log_key": "data", "keep_log": "off", "merge_log_trim": "off"}]
REG = ParserRegistry()
NGINX_P, JSON_P = REG.get("nginx"), REG.get("json")
PROPS = [mg.Props(), mg.Props(NGINX_P, NGINX_P), mg.Props(NGINX_P, None),
         mg.Props(None, NGINX_P), mg.Props(NGINX_P, JSON_P), mg.Props(exclude_err=True),
         mg.Props(NGINX_P, NGINX_P, exclude_out=True)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bodies, max_size=8), st.sampled_from(range(len(VARIANTS))),
       st.sampled_from(range(len(PROPS))))
def test_loop_is_its_reference_path(batch: list[Any], variant: int, props: int) -> None:
    flt = make(REG, merge_log="on", **VARIANTS[variant])
    _both(flt, batch, PROPS[props])


@settings(max_examples=60, deadline=None)
@given(st.lists(bodies, max_size=8))
def test_loop_with_a_merge_parser(batch: list[Any]) -> None:
    flt = make(REG, merge_log="on", merge_parser="nginx")
    _both(flt, batch, mg.Props())
    _both(flt, batch, mg.Props(None, JSON_P))


def test_plain_parsers_run_inline() -> None:
    assert NGINX_P is not None and NGINX_P.inline_regex() is not None
    assert JSON_P is not None and JSON_P.inline_regex() is None
    flt = make(REG, merge_log="on")
    plan = _plan_of([("kubernetes", BLOCK)])
    seen: list[str] = []
    parse = NGINX_P.parse
    NGINX_P.parse = lambda text: seen.append(text) or parse(text)  # type: ignore[method-assign]
    try:
        rec = {"log": NGINX + "\n", "stream": "stdout"}
        flt._records([1], [dict(rec)], mg.Props(NGINX_P, NGINX_P), plan)  # fills the cache
        seen.clear()
        _, out = flt._records([1], [dict(rec)], mg.Props(NGINX_P, NGINX_P), plan)
        assert seen == []  # parsed inline, the time from the parser's cache
        _, ref = flt._records([1], [dict(rec)], mg.Props(NGINX_P, NGINX_P), plan, inline=False)
        assert seen == [NGINX] and out == ref
    finally:
        del NGINX_P.parse  # type: ignore[method-assign]
