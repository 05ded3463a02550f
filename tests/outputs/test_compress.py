import gzip
import zlib

import pytest

from rillet.outputs.compress import ALGORITHMS, CONTENT_ENCODING, compressor, decompress

DATA = b'{"log":"GET /index.html 200","stream":"stdout"}\n' * 200


@pytest.mark.parametrize("name", ALGORITHMS)
def test_round_trip_and_smaller(name: str) -> None:
    fn = compressor(name)
    assert fn is not None
    packed = fn(DATA)
    assert len(packed) < len(DATA) // 5
    assert decompress(name, packed) == DATA
    assert name in CONTENT_ENCODING


def test_gzip_and_zlib_are_standard_formats() -> None:
    # Readers with no isal (aws s3 cp | gunzip, Firehose consumers) must be able to decode.
    gz, zl = compressor("gzip"), compressor("zlib")
    assert gz is not None and zl is not None
    assert gzip.decompress(gz(DATA)) == DATA
    assert zlib.decompress(zl(DATA)) == DATA


@pytest.mark.parametrize("off", [None, "", "none", "OFF", "false"])
def test_off_values(off: str | None) -> None:
    assert compressor(off) is None


def test_unknown_and_disallowed_names_are_config_errors() -> None:
    with pytest.raises(ValueError, match="accepted: gzip, zlib, zstd"):
        compressor("lz4")
    with pytest.raises(ValueError, match=r"accepted: gzip$"):
        compressor("zstd", allowed=("gzip",))
    with pytest.raises(ValueError):
        decompress("snappy", b"")
