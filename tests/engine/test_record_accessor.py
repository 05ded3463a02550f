"""Record accessor templates: Fluent Bit's ``$key['sub']`` / ``$TAG[n]`` and the Go plugins'
``$(key['sub'])`` / ``$(tag[n])``."""

from __future__ import annotations

import pytest

from rillet.engine.record_accessor import KeyPath, Template, TemplateError, has_variables

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
