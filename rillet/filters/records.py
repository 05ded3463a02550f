"""The loop the record-rewriting filters share: decode a serialized body only to change it, and
keep the original body (bytes or dict) when the change function leaves the record alone."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from rillet.engine.chunk import Body

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError

Change = Callable[[dict[str, Any]], "dict[str, Any] | None"]

# Characters a JSON encoder writes escaped other than as \uXXXX (\" \\ \/ \n ...).
_ESCAPABLE = frozenset('"\\/') | frozenset(chr(c) for c in range(0x20))


def literal(text: str) -> bytes | None:
    """``text`` as it appears in any JSON text holding it (unless :func:`escape_finder` finds
    an escape that may hide it); None when an encoder could write it otherwise (non-ASCII,
    quotes, slashes, control characters)."""
    if not text or not text.isascii() or any(c in _ESCAPABLE for c in text):
        return None
    return text.encode()


def key_needle(key: str) -> bytes | None:
    """The quoted key as it appears in a JSON text (see :func:`literal`), or None."""
    lit = literal(key)
    return b'"' + lit + b'"' if lit is not None else None


_NEVER = re.compile(rb"(?!)")


def escape_pattern(texts: Iterable[bytes]) -> bytes | None:
    """The regex (bytes) of the escapes that may hide a character of ``texts`` (see
    :func:`escape_finder`), or None when there is no character."""
    chars = sorted({c for text in texts for c in text})
    if not chars:
        return None
    # Hex digits in either case, spelled out: a case-sensitive pattern keeps re's fast scan
    # for its literal start.
    return rb"\\u00(?:" + b"|".join(b"%x[%x%X]" % (c >> 4, c & 15, c & 15)
                                    for c in chars) + rb")"


def escape_finder(texts: Iterable[bytes]) -> Callable[[bytes], re.Match[bytes] | None]:
    """``search(body)``: finds a ``\\u00XX`` escape that may stand for a character of
    ``texts`` (:func:`literal` texts: ASCII only). When it finds none, each text is in the
    body's text iff it is in its decoded strings. Docker's Go encoder writes ``&<>`` as
    ``\\u0026``...; those escapes do not hide other characters. (An escape the search
    misreads, such as an escaped backslash before ``u00..``, only costs a decode.)"""
    pattern = escape_pattern(texts)
    if pattern is None:
        return _NEVER.search
    search = re.compile(pattern).search

    def find(body: bytes) -> re.Match[bytes] | None:
        return search(body) if b"\\u" in body else None
    return find


def map_records(bodies: Sequence[Body], change: Change,
                needle: bytes | None = None) -> list[Body] | None:
    """Apply ``change`` to every record (it returns the new record, or None for "unchanged").

    ``needle`` (from :func:`key_needle`): a serialized body whose text lacks it (and has no
    escape that may hide it, :func:`escape_finder`) is known to be left alone and is not
    decoded. Bodies that are not
    JSON objects pass unchanged. Returns the new bodies, or None when no record changed."""
    loads = _loads
    hidden = escape_finder([needle or b""])
    out: list[Body] = []
    add = out.append
    changed = False
    for body in bodies:
        if type(body) is bytes:
            if needle is not None and needle not in body and hidden(body) is None:
                add(body)
                continue
            try:
                record = loads(body)
            except _JSONDecodeError:
                add(body)
                continue
            if type(record) is not dict:
                add(body)
                continue
        else:
            record = body
        new = change(record)
        if new is None:
            add(body)
        else:
            add(new)
            changed = True
    return out if changed else None
