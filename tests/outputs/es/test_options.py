"""es / opensearch option tables and startup errors."""

from __future__ import annotations

from typing import Any

import pytest

from rillet.config.model import Section
from rillet.config.options import resolve
from rillet.engine import plugin as registry
from rillet.engine.metrics import BY_KIND, Counters
from rillet.engine.plugin import full_table
from rillet.outputs.es import Elasticsearch
from rillet.outputs.opensearch import OpenSearch
from tests.plugin_kit import make_plugin


def build(cls: type, **settings: str) -> Any:
    """Like make_plugin, but lets __init__ raise."""
    section = Section("output", "t.conf", 1)
    section.set("name", cls.name)
    for k, v in settings.items():
        section.set(k, v)
    errors: list[str] = []
    opts = resolve(section, full_table(cls), errors)
    if errors:
        raise ValueError("; ".join(errors))
    import logging
    return cls("x.0", opts, logging.getLogger("t"), Counters(BY_KIND["output"]))


def test_names_and_defaults() -> None:
    assert registry.lookup("output", "es") is Elasticsearch
    assert registry.lookup("output", "elasticsearch") is Elasticsearch
    assert registry.lookup("output", "opensearch") is OpenSearch
    p = make_plugin(Elasticsearch)
    assert (p.host, p.port, p.uri) == ("127.0.0.1", 9200, "/_bulk")
    s = p.settings
    assert (s.index, s.type, s.write_operation, s.time_key, s.tag_key) == \
        ("fluent-bit", "_doc", "create", "@timestamp", "flb-key")
    assert Elasticsearch.default_workers == 2
    names = {o.name for o in Elasticsearch.options}
    assert {"http_api_key", "cloud_id", "cloud_auth", "target_index"} <= names
    os_names = {o.name for o in OpenSearch.options}
    assert not {"http_api_key", "cloud_id", "cloud_auth", "target_index"} & os_names
    assert {o.name: o.default for o in OpenSearch.options}["aws_profile"] == "default"


@pytest.mark.parametrize("settings,message", [
    ({"write_operation": "update"}, "Id_Key or Generate_Id must be set"),
    ({"write_operation": "upsert"}, "Id_Key or Generate_Id must be set"),
    ({"write_operation": "delete"}, "invalid value"),
    ({"aws_auth": "on"}, "aws_region not set"),
    ({"compress": "zstd"}, "unknown compression"),
    ({"cloud_id": "nothing"}, "cloud_id"),
    ({"id_key": "$a $b"}, "must name one key"),
    ({"tls": "on", "tls.ca_file": "/nonexistent/ca.pem"}, "tls.ca_file"),
    ({"tls": "on", "tls.key_file": "/k.pem"}, "tls.key_file"),
    ({"buffer_size": "lots"}, "invalid size"),
])
def test_startup_errors(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(Elasticsearch, **settings)


def test_update_with_generate_id_and_buffer_size_false() -> None:
    p = build(Elasticsearch, write_operation="update", generate_id="on",
              buffer_size="false")
    assert p.settings.action == "update"
    assert p.opts["buffer_size"] == 0


def test_aws_auth_builds_a_signer(monkeypatch: pytest.MonkeyPatch) -> None:
    p = build(OpenSearch, aws_auth="on", aws_region="us-west-2", aws_service_name="aoss",
              aws_role_arn="arn:aws:iam::123456789012:role/x", aws_external_id="ext",
              aws_sts_endpoint="https://sts.example", tls="on")
    assert p.signer is not None and p.signer.service == "aoss"
    assert p.signer.credentials.role_arn.endswith("role/x")
    assert p.signer.credentials.profile is None  # 'default' only when set explicitly
    assert ("Host", "127.0.0.1") in p.headers
    explicit = build(OpenSearch, aws_auth="on", aws_region="us-west-2", aws_profile="ops")
    assert explicit.signer is not None and explicit.signer.credentials.profile == "ops"
