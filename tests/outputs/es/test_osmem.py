"""es / opensearch against osmem-server: an in-memory OpenSearch-compatible server (MIT, a Go
binary shipped in the osmem-server wheel) on loopback. It speaks OpenSearch 3's REST API, keeps
dynamic mappings, and answers _bulk per item (mapper_parsing_exception, version conflicts,
unknown pipelines), so these tests see real answers rather than our own server's idea of them.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from rillet.engine.plugin import Status
from rillet.outputs.es import Elasticsearch
from rillet.outputs.opensearch import OpenSearch
from tests.outputs.es.helpers import deliver, reasons, segments
from tests.plugin_kit import T0, make_chunk, make_plugin

osmem_server = pytest.importorskip("osmem_server")


@pytest.fixture(scope="module")
def osmem() -> Iterator[Any]:
    with osmem_server.OsmemServer.start(japanese=False) as server:
        yield server


@pytest.fixture
def clone(osmem: Any) -> Iterator[Any]:
    with osmem.clone() as c:
        yield c


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def plugin_for(url: str, cls: type = OpenSearch, **settings: str) -> Any:
    parts = urlsplit(url)
    return make_plugin(cls, host=parts.hostname or "127.0.0.1", port=str(parts.port),
                       suppress_type_name="on", **settings)


def search(url: str, index: str) -> list[dict[str, Any]]:
    found = get(f"{url}/{index}/_search?size=100")
    return [h["_source"] for h in found["hits"]["hits"]]


def test_records_are_indexed_with_logstash_names(clone: Any) -> None:
    plugin = plugin_for(clone.url, logstash_format="on", logstash_prefix="app",
                        include_tag_key="on", compress="gzip")
    [res] = deliver(plugin, make_chunk([{"log": "a", "n": 1}, b'{"log":"b","n":2}']))
    assert res is Status.OK
    docs = search(clone.url, "app-2023.11.14")
    assert sorted(d["n"] for d in docs) == [1, 2]
    assert all(d["@timestamp"] == "2023-11-14T22:13:20.123Z" for d in docs)
    assert all(d["flb-key"] == "dummy.0" for d in docs)


def test_mapping_conflict_goes_to_dead_letters_and_the_rest_is_indexed(clone: Any) -> None:
    plugin = plugin_for(clone.url, cls=Elasticsearch, index="conflicts")
    [res] = deliver(plugin, make_chunk([{"n": 1}, {"n": "not a number"}, {"n": 3}]))
    assert segments(res) == [(1, 2, Status.ERROR)]
    assert "mapper_parsing_exception" in reasons(res)[0]
    assert sorted(d["n"] for d in search(clone.url, "conflicts")) == [1, 3]


def test_generated_ids_make_a_resend_harmless(clone: Any) -> None:
    plugin = plugin_for(clone.url, index="dedup", generate_id="on")
    chunk = make_chunk([{"n": 1}, {"n": 2}], times=[T0, T0 + 1])
    first, again = deliver(plugin, chunk, chunk)
    assert first is Status.OK and again is Status.OK
    assert plugin.counters["es_duplicates"] == 2
    assert get(f"{clone.url}/dedup/_count")["count"] == 2


def test_upsert_by_id_key(clone: Any) -> None:
    plugin = plugin_for(clone.url, index="users", write_operation="upsert", id_key="uid")
    deliver(plugin, make_chunk([{"uid": "u1", "name": "ann"}]),
            make_chunk([{"uid": "u1", "age": 30}]))
    [doc] = search(clone.url, "users")
    assert doc["name"] == "ann" and doc["age"] == 30


def test_unknown_pipeline_is_rejected_per_item(clone: Any) -> None:
    plugin = plugin_for(clone.url, index="piped", pipeline="nope")
    [res] = deliver(plugin, make_chunk([{"n": 1}]))
    assert segments(res) == [(0, 1, Status.ERROR)]
    assert "pipeline" in reasons(res)[0]


def test_type_name_is_refused_by_opensearch(clone: Any) -> None:
    parts = urlsplit(clone.url)
    plugin = make_plugin(OpenSearch, host="127.0.0.1", port=str(parts.port))
    [res] = deliver(plugin, make_chunk([{"n": 1}]))
    assert segments(res) == [(0, 1, Status.ERROR)]
    assert "_type" in reasons(res)[0]
