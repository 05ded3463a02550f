"""Option dialects, configuration errors and destinations of the cloudwatch_logs output."""

from __future__ import annotations

import logging

import pytest

from rillet.config.model import Section
from rillet.config.options import resolve
from rillet.engine.metrics import BY_KIND, Counters
from rillet.engine.plugin import full_table, lookup
from rillet.outputs.cloudwatch_logs import CloudWatchLogs, parse_tags
from tests.plugin_kit import make_chunk, make_plugin

BASE = {"region": "us-east-1", "endpoint": "http://127.0.0.1:1"}


def make(**settings: str) -> CloudWatchLogs:
    return make_plugin(CloudWatchLogs, **{**BASE, **settings})


def error(**settings: str) -> str:
    section = Section("output", "test.conf", 1)
    section.set("name", "cloudwatch_logs")
    for key, value in settings.items():
        section.set(key, value)
    errors: list[str] = []
    opts = resolve(section, full_table(CloudWatchLogs), errors)
    if errors:
        return "; ".join(errors)
    with pytest.raises(ValueError) as exc:
        CloudWatchLogs("cloudwatch_logs.0", opts, logging.getLogger("t"),
                       Counters(BY_KIND["output"]))
    return str(exc.value)


def test_both_names() -> None:
    assert lookup("output", "cloudwatch_logs") is CloudWatchLogs
    assert lookup("output", "cloudwatch") is CloudWatchLogs
    assert CloudWatchLogs.default_workers == 1


@pytest.mark.parametrize("settings, message", [
    ({"log_group_name": "g", "log_stream_prefix": "p"}, "'region' is a required field"),
    ({"region": "us-east-1", "log_stream_prefix": "p"}, "'log_group_name' is a required field"),
    ({"region": "us-east-1", "log_group_name": "g"}, "log_stream_name or log_stream_prefix"),
    ({"region": "us-east-1", "log_group_name": "g", "log_stream_name": "s",
      "log_stream_prefix": "p"}, "not both"),
    ({"region": "us-east-1", "log_group_name": "g", "log_stream_prefix": "p",
      "log_retention_days": "2"}, "invalid log_retention_days 2"),
    ({"region": "us-east-1", "log_group_name": "$(unclosed", "log_stream_prefix": "p"},
     "log_group_name: unclosed"),
    ({"region": "us-east-1", "log_group_name": "g", "log_stream_name": "$(ecs_task_id)"},
     "not supported"),
    ({"region": "us-east-1", "log_group_name": "g", "log_stream_prefix": "p",
      "metric_namespace": "ns"}, "EMF"),
    ({"region": "us-east-1", "log_group_name": "g", "log_stream_prefix": "p",
      "new_log_group_tags": "novalue"}, "not key=value"),
    ({"region": "us-east-1", "log_group_name": "g", "log_stream_prefix": "p",
      "log_group_class": "cold"}, "invalid value 'cold'"),
])
def test_configuration_errors(settings: dict[str, str], message: str) -> None:
    assert message in error(**settings)


def test_seed_output_options_accepted() -> None:
    plugin = make(log_group_name="fluentbit-cloudwatch", log_stream_prefix="fluentbit-",
                  auto_create_group="true")
    assert plugin.destination("kube.var.log.containers.a.log", None) == (
        "fluentbit-cloudwatch", "fluentbit-kube.var.log.containers.a.log")
    assert plugin.client.url == "http://127.0.0.1:1"


def test_c_dialect_templates_with_fallback() -> None:
    plugin = make(log_group_name="fallback-group", log_stream_prefix="from-",
                  log_group_template="/eks/$kubernetes['namespace_name']",
                  log_stream_template="$kubernetes['pod_name'].$TAG[1]")
    rec = {"kubernetes": {"namespace_name": "prod", "pod_name": "web-1"}}
    assert plugin.destination("kube.app", rec) == ("/eks/prod", "web-1.app")
    assert plugin.destination("kube.app", {}) == ("fallback-group", "from-kube.app")
    assert plugin.counters["cloudwatch_template_fallbacks"] == 2


def test_go_dialect_templates_with_defaults() -> None:
    plugin = make(log_group_name="/aws/$(kubernetes['namespace_name'])",
                  log_stream_name="$(kubernetes['pod_name'])-$(tag[0])")
    rec = {"kubernetes": {"namespace_name": "prod", "pod_name": "web-1"}}
    assert plugin.destination("kube.app", rec) == ("/aws/prod", "web-1-kube")
    assert plugin.destination("kube.app", {}) == ("fluentbit-default", "/fluentbit-default")
    custom = make(log_group_name="$(missing)", log_stream_name="$(missing)",
                  default_log_group_name="dg", default_log_stream_name="ds")
    assert custom.destination("t", {}) == ("dg", "ds")


def test_records_of_one_chunk_split_by_destination() -> None:
    plugin = make(log_group_name="g", log_stream_template="$kubernetes['pod_name']",
                  log_stream_prefix="p-")
    chunk = make_chunk([b'{"kubernetes":{"pod_name":"a"}}', {"kubernetes": {"pod_name": "b"}},
                        {"x": 1}, b'{"kubernetes":{"pod_name":"a"}}'], tag="t")
    assert plugin.destinations(chunk) == {("g", "a"): [0, 3], ("g", "b"): [1], ("g", "p-t"): [2]}
    static = make(log_group_name="g", log_stream_prefix="p-")
    assert static.destinations(chunk) == {("g", "p-t"): None}


def test_parse_tags() -> None:
    assert parse_tags("team=logs, env = prod,") == (("team", "logs"), ("env", "prod"))
    assert parse_tags(None) == ()
