"""Record accessor templates: Fluent Bit's ``$key['sub']`` / ``$TAG[n]`` and the Go plugins'
``$(key['sub'])`` / ``$(tag[n])``."""

from __future__ import annotations

import re

import pytest

from rillet.engine.record_accessor import (
    MISSING,
    KeyPath,
    Template,
    TemplateError,
    has_variables,
    key_path,
)

REC = {"kubernetes": {"namespace_name": "default", "pod_name": "nginx-1",
                      "labels": {"app": "web"}, "containers": ["a", "b"]},
       "log": "hello", "n": 42, "f": 1.5, "ok": True, "nil": None, "map": {"x": 1}}


@pytest.mark.parametrize("source, expected", [
    ("$kubernetes['namespace_name']", "default"),
    ("ns-$kubernetes['namespace_name'].$kubernetes['pod_name']", "ns-default.nginx-1"),
    ('$kubernetes["labels"]["app"]', "web"),
    ("$kubernetes['containers'][1]", "b"),
    ("$kubernetes['containers'][-1]", "b"),
    ("/aws/$log/x", "/aws/hello/x"),
    ("$n-$f-$ok-$nil", "42-1.5-true-null"),
    ("$TAG", "kube.var.log.containers.x"),
    ("$TAG[0]/$TAG[4]", "kube/x"),
    ("$(kubernetes['namespace_name'])", "default"),
    ("app-$(kubernetes['labels']['app'])-$(tag)", "app-web-kube.var.log.containers.x"),
    ("$(tag[1])", "var"),
    ("$(log)", "hello"),
    ("plain-name", "plain-name"),
    ("cost $ 5", "cost $ 5"),
])
def test_render(source: str, expected: str) -> None:
    assert Template.compile(source).render("kube.var.log.containers.x", REC) == expected


@pytest.mark.parametrize("source", [
    "$missing", "$kubernetes['nope']", "$kubernetes['containers'][5]", "$map",
    "$kubernetes", "$TAG[9]", "$(tag[9])", "$(missing)", "$log['sub']",
])
def test_no_value_renders_none(source: str) -> None:
    assert Template.compile(source).render("a.b", REC) is None


@pytest.mark.parametrize("source", ["$(unclosed", "$()", "$(tag[x])", "$(a b)",
                                    "$(ecs_task_id)", "$(uuid)"])
def test_bad_templates_raise(source: str) -> None:
    with pytest.raises(TemplateError):
        Template.compile(source)


def test_properties() -> None:
    assert Template.compile("static").is_static
    t = Template.compile("$TAG[1]")
    assert t.uses_tag and not t.uses_record and not t.is_static
    r = Template.compile("$(kubernetes['pod_name'])")
    assert r.uses_record and not r.uses_tag
    assert [str(k) for k in r.keys] == ["kubernetes['pod_name']"]
    assert has_variables("a-$TAG") and not has_variables("a-b") and not has_variables("$ 1")


def test_render_without_record() -> None:
    assert Template.compile("$TAG-x").render("t") == "t-x"
    assert Template.compile("$log").render("t") is None


def test_key_path_get() -> None:
    assert KeyPath(("kubernetes", "labels", "app")).get(REC) == "web"
    assert str(KeyPath(("k", "a", 0))) == "k['a'][0]"


# --- single keys (filters), set / delete, regex groups ----------------------------------------

@pytest.mark.parametrize("source, steps", [
    ("log", ("log",)),
    ("log.level", ("log.level",)),
    ("$log", ("log",)),
    ("$kubernetes['labels']['app']", ("kubernetes", "labels", "app")),
    ('$a["b c"][0]', ("a", "b c", 0)),
    ("$log.level", ("log.level",)),
])
def test_key_path_parses_plain_keys_and_accessors(source: str, steps: tuple[object]) -> None:
    assert key_path(source).steps == steps


@pytest.mark.parametrize("source", ["", "$", "$a['b'] x", "$a['b'", "$ a"])
def test_key_path_rejects_bad_accessors(source: str) -> None:
    with pytest.raises(TemplateError):
        key_path(source)


def test_key_path_set_and_delete_nested() -> None:
    rec: dict[str, object] = {"a": {"b": 1}, "l": [1, 2, 3], "s": "text"}
    assert key_path("$a['c']['d']").set(rec, "x")
    assert rec["a"] == {"b": 1, "c": {"d": "x"}}
    assert key_path("$l[1]").set(rec, 9) and rec["l"] == [1, 9, 3]
    assert not key_path("$l[7]").set(rec, 9)
    assert not key_path("$s['x']").set(rec, 1)  # a string is not a map
    assert key_path("$a['b']").delete(rec) and rec["a"] == {"c": {"d": "x"}}
    assert not key_path("$a['b']").delete(rec)
    assert key_path("$l[-1]").delete(rec) and rec["l"] == [1, 9]
    assert key_path("$nope['x']").get(rec) is MISSING
    assert not key_path("$nope['x']").delete(rec) and "nope" not in rec
    assert key_path("log").top == "log" and key_path("$a['b']").top is None


def test_regex_groups_and_defaults() -> None:
    t = Template.compile("alerts.$1.$0.$TAG[1].$level")
    m = re.search(r"(err)or", "an error")
    assert t.uses_groups and not t.is_static
    assert t.render("app.prod", {"level": "e"}, m) == "alerts.err.error.prod.e"
    # A group that did not take part or does not exist prints as nothing.
    m2 = re.search(r"(x)?y", "y")
    assert Template.compile("[$1][$5]").render("t", {}, m2) == "[][]"
    # Without a match, $1 is the key "1".
    assert Template.compile("$1").render("t", {"1": "one"}) == "one"
    assert Template.compile("a.$missing.$TAG[9]").render("t", {}, default="") == "a.."
    assert Template.compile("a.$missing").render("t", {}) is None
