"""Fluentd's Forward Protocol (v1): the codec shared by the ``forward`` input and output.

Frames are msgpack arrays. An event stream arrives in one of four modes::

    Message                  [tag, time, record]                  (+ option map)
    Forward                  [tag, [[time, record], ...]]          (+ option map)
    PackedForward            [tag, <bin: entry entry ...>]         (+ option map)
    CompressedPackedForward  [tag, <bin: gzip(entry ...)>, {"compressed": "gzip"}]

``time`` is an EventTime (msgpack ext type 0, 8 bytes: big-endian uint32 seconds and uint32
nanoseconds), an integer (seconds) or a float. Fluent Bit 2+ may also send an entry as
``[[time, metadata], record]``; the metadata map is ignored. The option map may carry ``size``
(entries), ``chunk`` (the sender wants ``{"ack": chunk}`` back once the events are accepted) and
``compressed`` (``gzip``, ``zstd`` or ``text``; as Fluent Bit, the payload's magic bytes decide).
Fluent Bit also sends ``fluent_signal`` (0 logs, 1 metrics, 2 traces) in the options.

Authentication (``shared_key``): the server opens with
``["HELO", {"nonce": bin, "auth": salt-or-empty, "keepalive": true}]``; the client answers
``["PING", hostname, shared_key_salt, sha512_hex(salt + hostname + nonce + shared_key),
username, sha512_hex(auth_salt + username + password)]``; the server replies
``["PONG", ok, reason, server_hostname, sha512_hex(salt + server_hostname + nonce +
shared_key)]`` and closes the connection when ``ok`` is false.

Decoding turns an EventTime into a ``(seconds, nanoseconds)`` tuple: msgpack arrays decode to
lists, so a tuple can only be a time, and :func:`time_ns` converts every time form in one place.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack

NS = 1_000_000_000
EVENT_TIME_EXT = 0

_II = struct.Struct(">II")
_unpack_ii = _II.unpack
_pack_ii = _II.pack
_ExtType = msgpack.ExtType


class ProtocolError(ValueError):
    """A frame that does not follow the protocol (the connection is closed)."""


def ext_hook(code: int, data: bytes) -> Any:
    """EventTime -> ``(sec, nsec)``; other extension types stay ``msgpack.ExtType``."""
    if code == EVENT_TIME_EXT and len(data) == 8:
        return _unpack_ii(data)
    return _ExtType(code, data)


def unpacker(max_buffer_size: int = 0) -> msgpack.Unpacker:
    """A streaming decoder for frames (``max_buffer_size`` bounds one incomplete frame)."""
    return msgpack.Unpacker(raw=False, ext_hook=ext_hook, strict_map_key=False,
                            unicode_errors="surrogateescape",
                            max_buffer_size=max_buffer_size)


def time_ns(t: Any) -> int | None:
    """Nanoseconds since the epoch of a protocol time, or None when it is not a time."""
    tt = type(t)
    if tt is tuple:
        return t[0] * NS + t[1]  # type: ignore[no-any-return]
    if tt is int:
        return t * NS  # type: ignore[no-any-return]
    if tt is float:
        if t != t or t in (float("inf"), float("-inf")):
            return None
        sec = int(t)
        return sec * NS + round((t - sec) * 1e9)
    if tt is list and t:  # Fluent Bit's [time, metadata]
        return time_ns(t[0])
    return None


# --- decoding ------------------------------------------------------------------------------

Entry = tuple[int, dict[str, Any]]


class Frame:
    """One event frame: its tag, its ``(time, record)`` entries, its options, and how many
    entries were skipped because their time or record was not valid."""

    __slots__ = ("chunk", "entries", "invalid", "mode", "tag")

    def __init__(self, tag: str, mode: str, entries: list[Entry], invalid: int,
                 chunk: str | None) -> None:
        self.tag = tag
        self.mode = mode
        self.entries = entries
        self.invalid = invalid
        self.chunk = chunk


def _entries(items: Iterable[Any]) -> tuple[list[Entry], int]:
    """Valid ``(ns, record)`` pairs of Forward/PackedForward entries, and the invalid count."""
    out: list[Entry] = []
    append = out.append
    invalid = 0
    NS_ = NS
    for e in items:
        if type(e) is not list or len(e) != 2:
            invalid += 1
            continue
        t, rec = e
        if type(rec) is not dict:
            invalid += 1
            continue
        if type(t) is tuple:  # EventTime, the common case
            append((t[0] * NS_ + t[1], rec))
            continue
        ns = time_ns(t)
        if ns is None:
            invalid += 1
            continue
        append((ns, rec))
    return out, invalid


def inflate(data: bytes, limit: int, wbits: int = 31) -> bytes:
    """Decompress gzip (``wbits`` 31; several concatenated members allowed) or zlib (15) data
    of at most ``limit`` bytes; raises ProtocolError beyond it or on corrupt data."""
    from isal import isal_zlib

    out: list[bytes] = []
    total = 0
    rest = data
    try:
        while rest:
            d = isal_zlib.decompressobj(wbits)
            piece = d.decompress(rest, limit - total + 1)
            total += len(piece)
            out.append(piece)
            if total > limit or d.unconsumed_tail:
                raise ProtocolError(f"decompressed entries exceed {limit} bytes")
            if not d.eof:
                raise ProtocolError("truncated compressed data")
            rest = d.unused_data
    except ProtocolError:
        raise
    except Exception as exc:  # isal_zlib.error (untyped)
        raise ProtocolError(f"invalid compressed data: {exc}") from None
    return b"".join(out)


def unzstd(data: bytes, limit: int) -> bytes:
    """Decompress zstd data (several frames allowed) of at most ``limit`` bytes; raises
    ProtocolError beyond it or on corrupt data."""
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        out: bytes = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise ProtocolError(f"invalid compressed data: {exc}") from None
    if len(out) > limit:
        raise ProtocolError(f"decompressed entries exceed {limit} bytes")
    return out


def decompress(algorithm: str, data: bytes, limit: int) -> bytes:
    """``gzip``, ``zlib``/``deflate`` or ``zstd`` data, at most ``limit`` bytes decompressed."""
    if algorithm == "gzip":
        return inflate(data, limit)
    if algorithm in ("zlib", "deflate"):
        return inflate(data, limit, 15)
    if algorithm == "zstd":
        return unzstd(data, limit)
    raise ProtocolError(f"unknown compression {algorithm!r}")


def sniff(data: bytes) -> str | None:
    """The compression an entry stream's magic bytes show (entries start with an array)."""
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return None


def decode_packed(data: bytes) -> tuple[list[Entry], int]:
    """The entries of a PackedForward stream (msgpack ``[time, record]`` back to back)."""
    up = msgpack.Unpacker(raw=False, ext_hook=ext_hook, strict_map_key=False,
                          unicode_errors="surrogateescape", max_buffer_size=len(data) or 1)
    up.feed(data)
    try:
        items = list(up)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise ProtocolError(f"invalid PackedForward entries: {exc}") from None
    return _entries(items)


SIGNALS = {0: "logs", 1: "metrics", 2: "traces"}


def decode_frame(obj: Any, max_unpacked: int) -> Frame:
    """Interpret one decoded frame; raises ProtocolError when it is not an event frame.

    Metrics and traces frames (``fluent_signal`` 1 or 2) come back with ``mode`` "metrics" or
    "traces" and no entries."""
    if type(obj) is not list or not 2 <= len(obj) <= 4:
        raise ProtocolError("a frame must be an array of 2 to 4 elements")
    tag = obj[0]
    if type(tag) is not str or not tag:
        raise ProtocolError("the tag must be a non-empty string")
    second = obj[1]
    kind = type(second)
    at = 2 if kind is list or kind is bytes or kind is str else 3
    options = obj[at] if len(obj) > at else None
    if options is not None and type(options) is not dict:
        raise ProtocolError("the option element must be a map")
    chunk = options.get("chunk") if options else None
    if chunk is not None and type(chunk) is not str:
        chunk = str(chunk)
    signal = options.get("fluent_signal", 0) if options else 0
    if signal != 0:
        if signal not in SIGNALS or type(signal) is not int:
            raise ProtocolError(f"invalid fluent_signal {signal!r}")
        return Frame(tag, SIGNALS[signal], [], 0, chunk)
    if kind is list:
        mode = "Forward"
        entries, invalid = _entries(second)
    elif at == 2:
        raw = second if kind is bytes else second.encode("utf-8", "surrogateescape")
        compressed = options.get("compressed") if options else None
        if compressed not in (None, "text", "gzip", "zstd"):
            raise ProtocolError(f"unknown compression {compressed!r}")
        # As Fluent Bit: the magic bytes win over the option (and stand in for it).
        algorithm = sniff(raw)
        if algorithm is not None:
            mode = "CompressedPackedForward"
            raw = decompress(algorithm, raw, max_unpacked)
        elif compressed in ("gzip", "zstd"):
            raise ProtocolError(f"invalid compressed data: no {compressed} header")
        else:
            mode = "PackedForward"
        entries, invalid = decode_packed(raw)
    else:
        mode = "Message"
        if len(obj) < 3:
            raise ProtocolError("a Message frame needs a tag, a time and a record")
        ns = time_ns(second)
        rec = obj[2]
        if ns is None or type(rec) is not dict:
            entries, invalid = [], 1
        else:
            entries, invalid = [(ns, rec)], 0
    return Frame(tag, mode, entries, invalid, chunk)


# --- encoding ------------------------------------------------------------------------------

def event_time(ns: int) -> bytes:
    """The EventTime of ``ns`` as msgpack (fixext8, type 0)."""
    sec, nsec = divmod(ns, NS)
    return b"\xd7\x00" + _pack_ii(sec & 0xFFFFFFFF, nsec)


def _packer() -> Callable[[Any], bytes]:
    return msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape").pack


packb: Callable[[Any], bytes] = _packer()


def array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def bin_header(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + bytes((n,))
    if n < 0x10000:
        return b"\xc5" + struct.pack(">H", n)
    return b"\xc6" + struct.pack(">I", n)


def encode_entries(times: Sequence[int], records: Sequence[dict[str, Any]], *,
                   time_as_integer: bool = False, metadata: bool = False) -> bytes:
    """Entries back to back: ``[EventTime, record]`` (``[[EventTime, {}], record]`` with
    ``metadata``; ``[seconds, record]`` with ``time_as_integer``)."""
    pack = packb
    pack_ii = _pack_ii
    parts: list[bytes] = []
    append = parts.append
    if time_as_integer:
        for t, rec in zip(times, records, strict=True):
            append(b"\x92" + pack(t // NS))
            append(pack(rec))
    else:
        head = b"\x92\x92\xd7\x00" if metadata else b"\x92\xd7\x00"
        tail = b"\x80" if metadata else b""
        for t, rec in zip(times, records, strict=True):
            sec, nsec = divmod(t, NS)
            append(head + pack_ii(sec & 0xFFFFFFFF, nsec) + tail)
            append(pack(rec))
    return b"".join(parts)


def chunk_id(data: bytes) -> str:
    """Fluent Bit's ``chunk`` option: the first 16 bytes of the data's SHA-512, in hex."""
    return hashlib.sha512(data).digest()[:16].hex()


def options_map(*, chunk: str | None = None, size: int | None = None,
                compressed: str | None = None,
                extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """The option map in Fluent Bit's key order (chunk, size, compressed, then extras)."""
    opts: dict[str, Any] = {}
    if chunk is not None:
        opts["chunk"] = chunk
    if size is not None:
        opts["size"] = size
    if compressed is not None:
        opts["compressed"] = compressed
    for key, value in extra:
        opts[key] = value
    return packb(opts)


def ack(chunk: str) -> bytes:
    return packb({"ack": chunk})


# --- handshake -----------------------------------------------------------------------------

def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def digest(*parts: str | bytes) -> str:
    """``sha512_hex`` of the concatenated parts (strings as UTF-8)."""
    h = hashlib.sha512()
    for part in parts:
        h.update(_b(part))
    return h.hexdigest()


def helo(nonce: bytes, auth_salt: bytes) -> bytes:
    return packb(["HELO", {"nonce": nonce, "auth": auth_salt, "keepalive": True}])


def ping(hostname: str, salt: str, nonce: bytes, shared_key: str, auth_salt: bytes | None,
         username: str, password: str) -> bytes:
    """The client's PING; ``salt`` is sent as a str, as Fluent Bit does (keep it ASCII so that
    every server reads the same bytes)."""
    key_digest = digest(salt, hostname, nonce, shared_key)
    if auth_salt:
        user, pass_digest = username, digest(auth_salt, username, password)
    else:
        user, pass_digest = "", ""
    return packb(["PING", hostname, salt, key_digest, user, pass_digest])


def pong(ok: bool, reason: str, hostname: str, digest_hex: str) -> bytes:
    return packb(["PONG", ok, reason, hostname, digest_hex])


def check_ping(obj: Any, nonce: bytes, shared_key: str, auth_salt: bytes,
               users: dict[str, str]) -> tuple[bool, str, bytes]:
    """Verify a PING: ``(ok, reason, client salt)``."""
    if type(obj) is not list or len(obj) != 6 or obj[0] != "PING":
        return False, "expected a PING message", b""
    _, hostname, salt, key_digest, username, pass_digest = obj
    if not all(isinstance(v, str | bytes) for v in obj[1:]):
        return False, "malformed PING message", b""
    salt_b = _b(salt)
    if _b(key_digest) != digest(salt_b, hostname, nonce, shared_key).encode():
        return False, "shared_key mismatch", salt_b
    if users:
        name = username if isinstance(username, str) else username.decode("utf-8", "replace")
        password = users.get(name)
        if password is None or _b(pass_digest) != digest(auth_salt, name, password).encode():
            return False, "username/password mismatch", salt_b
    return True, "", salt_b


def check_pong(obj: Any, salt: str, nonce: bytes, shared_key: str) -> str | None:
    """Verify a PONG: None when the server accepted us and proved it knows the key."""
    if type(obj) is not list or len(obj) < 4 or obj[0] != "PONG":
        return "expected a PONG message"
    if obj[1] is not True:
        return f"failed authorization: {obj[2] if len(obj) > 2 else ''}"
    if len(obj) >= 5:
        hostname = obj[3] if isinstance(obj[3], str | bytes) else ""
        if _b(obj[4]) != digest(salt, hostname, nonce, shared_key).encode():
            return "the server's shared_key digest does not match"
    return None


def parse_helo(obj: Any) -> tuple[bytes, bytes]:
    """``(nonce, auth_salt)`` of a HELO; raises ProtocolError."""
    if type(obj) is not list or len(obj) < 2 or obj[0] != "HELO" or type(obj[1]) is not dict:
        raise ProtocolError("expected a HELO message")
    opts = obj[1]
    nonce = opts.get("nonce")
    if not isinstance(nonce, bytes | str):
        raise ProtocolError("HELO without a nonce")
    auth = opts.get("auth") or b""
    return _b(nonce), _b(auth) if isinstance(auth, bytes | str) else b""
