"""The ``nest`` filter: nest and lift, Wildcard (repeatable, prefix*), Add_prefix,
Remove_prefix; Fluent Bit's documentation examples."""

from __future__ import annotations

import pytest

from rillet.filters.nest import NestFilter
from tests.filters.filter_kit import batch, config_error, configure, run

MEM = {"Mem.total": 1016024, "Mem.used": 716672, "Mem.free": 299352, "Swap.total": 2064380}


@pytest.mark.parametrize("as_bytes", [False, True])
def test_nest_wildcard_under_key(as_bytes: bool) -> None:
    # Fluent Bit docs: Operation nest, Wildcard Mem.*, Nest_under Memstats.
    f = configure(NestFilter, operation="nest", wildcard="Mem.*", nest_under="Memstats")
    assert run(f, [MEM], as_bytes=as_bytes) == [{"Swap.total": 2064380, "Memstats": {
        "Mem.total": 1016024, "Mem.used": 716672, "Mem.free": 299352}}]


def test_nest_several_wildcards_exact_names_and_prefixes() -> None:
    f = configure(NestFilter, ("Wildcard", "Swap.total"), ("Wildcard", "Mem.u*"),
                  operation="nest", nest_under="x", remove_prefix="Mem.")
    (out,) = run(f, [MEM])
    assert list(out) == ["Mem.total", "Mem.free", "x"]
    assert out["x"] == {"Swap.total": 2064380, "used": 716672}


def test_wildcard_exclude_and_prefix_with() -> None:
    f = configure(NestFilter, ("Wildcard", "Mem.*"), ("Wildcard_exclude", "Mem.f*"),
                  ("Wildcard_exclude", "Mem.used"), operation="nest", nest_under="m",
                  prefix_with="p.")
    (out,) = run(f, [MEM])
    assert out == {"Mem.used": 716672, "Mem.free": 299352, "Swap.total": 2064380,
                   "m": {"p.Mem.total": 1016024}}


def test_nest_add_prefix_and_no_match_passes() -> None:
    f = configure(NestFilter, operation="nest", wildcard="Swap*", nest_under="s",
                  add_prefix="p_")
    assert run(f, [MEM])[0]["s"] == {"p_Swap.total": 2064380}
    b = batch([{"a": 1}], as_bytes=True)
    raw = b.bodies[0]
    assert f.filter(b).bodies[0] is raw


@pytest.mark.parametrize("as_bytes", [False, True])
def test_lift_with_prefix(as_bytes: bool) -> None:
    # Fluent Bit docs: nest then lift back with Add_prefix.
    rec = {"Swap.total": 1, "Stats": {"Mem.total": 2, "Mem.free": 3}}
    f = configure(NestFilter, operation="lift", nested_under="Stats", add_prefix="Lifted_")
    assert run(f, [rec], as_bytes=as_bytes) == [
        {"Swap.total": 1, "Lifted_Mem.total": 2, "Lifted_Mem.free": 3}]
    f = configure(NestFilter, operation="lift", nested_under="Stats", remove_prefix="Mem.")
    assert run(f, [rec]) == [{"Swap.total": 1, "total": 2, "free": 3}]


def test_lift_passes_records_without_a_map_there() -> None:
    f = configure(NestFilter, operation="lift", nested_under="kubernetes")
    recs = [{"kubernetes": "text"}, {"other": {"a": 1}}]
    assert run(f, recs) == recs
    b = batch([{"other": 1}], as_bytes=True)
    raw = b.bodies[0]
    assert f.filter(b).bodies[0] is raw
    # Lifting a Kubernetes block, a key already at the top level is replaced.
    rec = {"pod_name": "x", "kubernetes": {"pod_name": "web-1", "namespace_name": "default"}}
    assert run(f, [rec]) == [{"pod_name": "web-1", "namespace_name": "default"}]


def test_config_errors() -> None:
    assert "missing 'operation'" in config_error(NestFilter, wildcard="a")
    assert "missing 'wildcard'" in config_error(NestFilter, operation="nest", nest_under="a")
    assert "missing 'nest_under'" in config_error(NestFilter, operation="nest", wildcard="a")
    assert "missing 'nested_under'" in config_error(NestFilter, operation="lift")
    assert "exclusive" in config_error(NestFilter, operation="lift", nested_under="a",
                                       add_prefix="x", remove_prefix="y")
