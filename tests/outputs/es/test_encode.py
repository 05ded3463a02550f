"""Bulk bodies byte for byte: action lines, documents, index naming, ids; bulk answers."""

from __future__ import annotations

import re

import orjson
import pytest

from rillet.outputs.es import Elasticsearch, parse_cloud_id, record_runs
from rillet.outputs.es.bulk import read_answer, replace_dots
from rillet.outputs.opensearch import OpenSearch
from tests.plugin_kit import T0, make_plugin

TS = b'"@timestamp":"2023-11-14T22:13:20.123Z"'
NOW = 1_700_100_000_000_000_000  # 2023-11-16T02:00:00Z


def encode(cls: type = Elasticsearch, bodies: list | None = None, tag: str = "kube.app",
           times: list[int] | None = None, **settings: str):
    plugin = make_plugin(cls, **settings)
    bodies = bodies if bodies is not None else [{"message": "hi"}]
    times = times if times is not None else [T0] * len(bodies)
    return plugin.encoder.encode(tag, times, bodies, NOW)


def lines(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n")
    return body[:-1].split(b"\n")


def test_default_body_is_create_with_timestamp() -> None:
    enc = encode()
    assert enc.body == (b'{"create":{"_index":"fluent-bit","_type":"_doc"}}\n'
                        b'{' + TS + b',"message":"hi"}\n')
    assert enc.sent == [0]


def test_bytes_and_dict_bodies_give_the_same_document() -> None:
    a = encode(bodies=[{"message": "hi", "n": 1}]).body
    b = encode(bodies=[b'{"message":"hi","n":1}']).body
    assert a == b


def test_time_key_options_and_nanos() -> None:
    enc = encode(time_key="ts", time_key_format="%Y/%m/%d %H:%M:%S", time_key_nanos="on")
    assert lines(enc.body)[1] == b'{"ts":"2023/11/14 22:13:20.123456789Z","message":"hi"}'


def test_tag_key_and_suppress_type_name() -> None:
    enc = encode(include_tag_key="on", suppress_type_name="on", tag_key="tag")
    assert lines(enc.body) == [b'{"create":{"_index":"fluent-bit"}}',
                               b'{' + TS + b',"tag":"kube.app","message":"hi"}']


def test_empty_record_and_record_with_its_own_time_key() -> None:
    enc = encode(bodies=[{}, {"@timestamp": "mine", "a": 1}, b'{"x":"@timestamp"}'],
                 include_tag_key="on")
    docs = lines(enc.body)[1::2]
    assert docs[0] == b'{' + TS + b',"flb-key":"kube.app"}'
    assert docs[1] == b'{"flb-key":"kube.app","@timestamp":"mine","a":1}'
    assert docs[2] == b'{' + TS + b',"flb-key":"kube.app","x":"@timestamp"}'


def test_index_and_type_and_strftime_index() -> None:
    enc = encode(index="app-%Y.%m", type="doc")
    assert lines(enc.body)[0] == b'{"create":{"_index":"app-2023.11","_type":"doc"}}'


@pytest.mark.parametrize("op,action,doc", [
    ("index", b"index", b'{' + TS + b',"message":"hi","id":"x1"}'),
    ("update", b"update", b'{"doc":{' + TS + b',"message":"hi","id":"x1"}}'),
    ("upsert", b"update", b'{"doc_as_upsert":true,"doc":{' + TS + b',"message":"hi","id":"x1"}}'),
])
def test_write_operations(op: str, action: bytes, doc: bytes) -> None:
    enc = encode(bodies=[{"message": "hi", "id": "x1"}], write_operation=op, id_key="id")
    assert lines(enc.body) == [
        b'{"' + action + b'":{"_index":"fluent-bit","_type":"_doc","_id":"x1"}}', doc]


def test_id_key_record_accessor_and_non_string_values() -> None:
    bodies = [{"meta": {"uid": "a-1"}}, {"meta": {"uid": 7}}, {"other": 1}]
    enc = encode(bodies=bodies, id_key="$meta['uid']", suppress_type_name="on")
    actions = lines(enc.body)[0::2]
    assert actions == [b'{"create":{"_index":"fluent-bit","_id":"a-1"}}',
                       b'{"create":{"_index":"fluent-bit"}}',
                       b'{"create":{"_index":"fluent-bit"}}']
    assert enc.missing_ids == 2


def test_generate_id_is_stable_and_content_based() -> None:
    bodies = [{"a": 1}, {"a": 1}, {"a": 2}]
    first = encode(bodies=bodies, generate_id="on")
    again = encode(bodies=bodies, generate_id="on")
    assert first.body == again.body
    ids = [orjson.loads(a)["create"]["_id"] for a in lines(first.body)[0::2]]
    assert ids[0] == ids[1] != ids[2]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", ids[0])
    upper = encode(OpenSearch, bodies=bodies, generate_id="on")
    os_id = orjson.loads(lines(upper.body)[0])["create"]["_id"]
    assert os_id == ids[0].upper()


def test_id_key_wins_over_generate_id() -> None:
    enc = encode(bodies=[{"k": "v"}], id_key="k", generate_id="on")
    assert orjson.loads(lines(enc.body)[0])["create"]["_id"] == "v"


def test_logstash_format_prefix_key_separator_and_dateformat() -> None:
    bodies = [{"kubernetes": {"namespace_name": "kube-system"}}, {"log": "x"},
              {"kubernetes": {"namespace_name": "n" * 200}}]
    times = [T0, T0 + 86_400 * 10**9, T0]
    enc = encode(bodies=bodies, times=times, logstash_format="on",
                 logstash_prefix_key="$kubernetes['namespace_name']")
    indexes = [orjson.loads(a)["create"]["_index"] for a in lines(enc.body)[0::2]]
    assert indexes == ["kube-system-2023.11.14", "logstash-2023.11.15",
                       "n" * 128 + "-2023.11.14"]
    enc = encode(logstash_format="on", logstash_prefix="app", logstash_prefix_separator="_",
                 logstash_dateformat="%Y%m")
    assert orjson.loads(lines(enc.body)[0])["create"]["_index"] == "app_202311"
    # a key without '$' is a record accessor too (Fluent Bit prepends it)
    enc = encode(bodies=[{"team": "blue"}], logstash_format="on", logstash_prefix_key="team")
    assert orjson.loads(lines(enc.body)[0])["create"]["_index"] == "blue-2023.11.14"


def test_current_time_index_uses_the_flush_time() -> None:
    enc = encode(logstash_format="on", current_time_index="on")
    assert orjson.loads(lines(enc.body)[0])["create"]["_index"] == "logstash-2023.11.16"
    assert b'"@timestamp":"2023-11-16T02:00:00.000Z"' in enc.body


def test_replace_dots_everywhere() -> None:
    record = {"a.b": 1, "c": {"d.e": [{"f.g": 1}, "x.y"]}}
    assert replace_dots(record) == {"a_b": 1, "c": {"d_e": [{"f_g": 1}, "x.y"]}}
    enc = encode(bodies=[record], replace_dots="on")
    assert lines(enc.body)[1] == b'{' + TS + b',"a_b":1,"c":{"d_e":[{"f_g":1},"x.y"]}}'
    kept = encode(bodies=[record])
    assert b'"a.b":1' in kept.body


def test_target_index_and_opensearch_index_template() -> None:
    bodies = [{"app": "web"}, {"other": 1}]
    es = encode(bodies=bodies, target_index="logs-$app", index="fallback")
    assert [orjson.loads(a)["create"]["_index"] for a in lines(es.body)[0::2]] == \
        ["logs-web", "fallback"]
    os_ = encode(OpenSearch, bodies=bodies, index="logs-$app")
    assert [orjson.loads(a)["create"]["_index"] for a in lines(os_.body)[0::2]] == \
        ["logs-web", "logs-$app"]


def test_records_that_cannot_be_serialized_are_skipped_and_mapped() -> None:
    enc = encode(bodies=[{"a": 1}, {1: "non-string key"}, {"b": 2}])
    assert enc.sent == [0, 2]
    assert enc.skipped[0][0] == 1 and "JSON" in enc.skipped[0][1]
    assert len(lines(enc.body)) == 4


def test_index_names_are_json_escaped() -> None:
    enc = encode(bodies=[{"i": 'we"ird'}], target_index="$i")
    assert orjson.loads(lines(enc.body)[0])["create"]["_index"] == 'we"ird'


def test_read_answer() -> None:
    assert read_answer(b'{"took":1,"errors":false,"items":[]}').all_ok
    ans = read_answer(orjson.dumps({"took": 1, "errors": True, "items": [
        {"create": {"status": 201}},
        {"create": {"status": 400, "error": {"type": "mapper_parsing_exception",
                                              "reason": "bad", "caused_by": {
                                                  "type": "x", "reason": "y"}}}},
        {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}}]}))
    assert [i.status for i in ans.items] == [201, 400, 429]
    assert ans.items[1].reason == "mapper_parsing_exception: bad (caused by x: y)"
    assert read_answer(b"<html>").problem
    assert read_answer(b'{"errors":true}').problem
    assert read_answer(b'{"errors":true,"items":[{"create":{}}]}').problem


def test_cloud_id_and_runs() -> None:
    import base64
    cid = "dep:" + base64.b64encode(b"us-east-1.aws.found.io$abc123$kib").decode()
    assert parse_cloud_id(cid) == ("abc123.us-east-1.aws.found.io", 443)
    cid = "dep:" + base64.b64encode(b"eu.example$es1:9243$kib").decode().rstrip("=")
    assert parse_cloud_id(cid) == ("es1.eu.example", 9243)
    with pytest.raises(ValueError):
        parse_cloud_id("no-colon")
    assert record_runs([5, 1, 2, 3, 7]) == [(1, 4), (5, 6), (7, 8)]
