"""s3 option checks (startup configuration errors) and request URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rillet.outputs.s3 import S3
from tests.plugin_kit import make_plugin


@pytest.mark.parametrize(("settings", "message"), [
    ({}, "'bucket' is a required parameter"),
    ({"bucket": "b", "total_file_size": "900K"}, "total_file_size must be at least 1M"),
    ({"bucket": "b", "upload_chunk_size": "4M"}, "upload_chunk_size must be at least 5M"),
    ({"bucket": "b", "upload_chunk_size": "60M"}, "max upload_chunk_size is 50M"),
    ({"bucket": "b", "total_file_size": "20M", "upload_chunk_size": "30M"},
     "upload_chunk_size can not be larger than total_file_size"),
    ({"bucket": "b", "use_put_object": "on", "total_file_size": "2G"},
     "max total_file_size is 1G"),
    ({"bucket": "b", "total_file_size": "60G"}, "max total_file_size is 50G"),
    ({"bucket": "b", "compression": "snappy"}, "not supported"),
    ({"bucket": "b", "compression": "lz4"}, "unknown compression"),
    ({"bucket": "b", "json_date_format": "nope"}, "invalid json_date_format"),
    ({"bucket": "b", "retry_limit": "zero"}, "invalid value"),
    ({"bucket": "b", "upload_timeout": "0"}, "upload_timeout must be greater than 0"),
])
def test_bad_options(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_plugin(S3, **settings)


def test_defaults_and_small_files_use_put_object(tmp_path: Path) -> None:
    plugin = make_plugin(S3, bucket="logs-bucket", store_dir=str(tmp_path))
    assert plugin.total_file_size == 100_000_000 and plugin.chunk_size == 5_242_880
    assert plugin.upload_timeout == 600 and not plugin.use_put_object
    assert plugin.retries == 1 and plugin.preserve_order
    assert plugin.store.root == str(tmp_path / "logs-bucket" / "s3.0")
    small = make_plugin(S3, bucket="b", total_file_size="5M")
    assert small.use_put_object  # Fluent Bit: below 10 MB, PutObject
    five = make_plugin(S3, bucket="b", upload_chunk_size="5M", total_file_size="20M")
    assert five.chunk_size == 5_242_880  # "5M" is read as 5,000,000: raised to S3's minimum
    assert make_plugin(S3, bucket="b", alias="archive").store.root.endswith("/b/archive")


def test_virtual_hosted_and_path_style_urls() -> None:
    plugin = make_plugin(S3, bucket="logs-bucket", region="eu-west-1")
    assert plugin.client.url == "https://logs-bucket.s3.eu-west-1.amazonaws.com"
    assert plugin.client.path("/a b/c+d.log") == "/a%20b/c%2Bd.log"
    dotted = make_plugin(S3, bucket="logs.example.com", region="eu-west-1")
    assert dotted.client.path("/x", "uploads") == "/logs.example.com/x?uploads"
    custom = make_plugin(S3, bucket="b1", endpoint="http://127.0.0.1:9000")
    assert custom.client.url == "http://127.0.0.1:9000"
    assert custom.client.path("k") == "/b1/k"
    china = make_plugin(S3, bucket="logs-bucket", region="cn-north-1")
    assert china.client.url.endswith(".amazonaws.com.cn")


def test_an_sdk_endpoint_variable_gives_path_style_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")
    plugin = make_plugin(S3, bucket="logs-bucket", region="eu-west-1")
    assert plugin.client.url == "http://127.0.0.1:9000"
    assert plugin.client.path("k") == "/logs-bucket/k"


def test_headers_of_new_objects() -> None:
    plugin = make_plugin(S3, bucket="b", compression="gzip", content_type="text/plain",
                         canned_acl="bucket-owner-full-control", storage_class="GLACIER_IR")
    assert plugin.settings.create_headers() == {
        "Content-Type": "text/plain", "Content-Encoding": "gzip",
        "x-amz-acl": "bucket-owner-full-control", "x-amz-storage-class": "GLACIER_IR"}
