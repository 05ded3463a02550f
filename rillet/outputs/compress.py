"""Payload compression shared by the outputs.

gzip and zlib go through ``isal`` (Intel ISA-L; level 1 is several times zlib's speed at a
similar ratio for log text), zstd through ``zstandard`` (not in Python 3.11's stdlib). Output
plugins name the algorithms they accept (Fluent Bit's per-plugin lists differ) and call
:func:`compressor` once at startup; the returned function is used per payload.
"""

from __future__ import annotations

from collections.abc import Callable

Compressor = Callable[[bytes], bytes]

# isal levels run 0-3; 1 is the speed/ratio sweet spot measured for log payloads.
GZIP_LEVEL = 1
ZSTD_LEVEL = 1

# What each algorithm is called in a Content-Encoding header.
CONTENT_ENCODING = {"gzip": "gzip", "zstd": "zstd", "zlib": "deflate"}


def _gzip() -> Compressor:
    from isal import igzip

    compress = igzip.compress

    def gzip(data: bytes) -> bytes:
        return compress(data, GZIP_LEVEL)
    return gzip


def _zlib() -> Compressor:
    from isal import isal_zlib

    compress = isal_zlib.compress

    def zlib(data: bytes) -> bytes:
        return compress(data, GZIP_LEVEL)
    return zlib


def _zstd() -> Compressor:
    import zstandard

    # A ZstdCompressor is not thread-safe, but outputs run on one event loop.
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress


_FACTORIES: dict[str, Callable[[], Compressor]] = {"gzip": _gzip, "zlib": _zlib, "zstd": _zstd}
ALGORITHMS = tuple(_FACTORIES)


def compressor(name: str | None, allowed: tuple[str, ...] = ALGORITHMS) -> Compressor | None:
    """The compression function for ``name`` (None or ''/'none'/'off' -> no compression).

    Raises ValueError naming the accepted values when ``name`` is not in ``allowed``."""
    if name is None:
        return None
    key = name.strip().lower()
    if key in ("", "none", "off", "false"):
        return None
    if key not in allowed or key not in _FACTORIES:
        raise ValueError(f"unknown compression {name!r}; accepted: {', '.join(allowed)}")
    return _FACTORIES[key]()


def decompress(name: str, data: bytes) -> bytes:
    """Undo :func:`compressor` (tests, and inputs that accept compressed payloads)."""
    key = name.lower()
    if key == "gzip":
        from isal import igzip
        return igzip.decompress(data)
    if key in ("zlib", "deflate"):
        from isal import isal_zlib
        return isal_zlib.decompress(data)
    if key == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise ValueError(f"unknown compression {name!r}")
