"""``Decode_Field`` / ``Decode_Field_As``: Fluent Bit's field decoders (``flb_parser_decoder.c``).

A rule is ``<decoder> <field> [try_next|do_next]``; rules for one field run in order:

- ``Decode_Field_As`` replaces the field's value with the decoded one (a string, or a map for
  ``json``); a later rule sees the decoded text.
- ``Decode_Field`` (only ``json`` makes sense) adds the decoded map's keys to the record,
  after all its other keys.
- A failing rule stops the field's rules unless its action is ``try_next`` or ``do_next``;
  a successful one stops them unless its action is ``do_next``.

Decoders: ``json`` (unescape, then exactly one JSON object), ``escaped`` (``\\n \\t \\r \\a \\b
\\f \\v``; any other escaped character stands for itself), ``escaped_utf8`` (C escapes,
octal, ``\\xHH``, ``\\uHHHH``, ``\\UHHHHHHHH``; ``\\"``, ``\\'``, ``\\\\``, ``\\/`` are kept as
written), ``mysql_quoted`` (a value in single or double quotes is unquoted and unescaped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

_loads = orjson.loads

AS = "as"
MERGE = "merge"
_SIMPLE = {"n": "\n", "a": "\a", "b": "\b", "t": "\t", "v": "\v", "f": "\f", "r": "\r"}


def unescape(text: str) -> str:
    """The ``escaped`` decoder."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break  # a trailing backslash is dropped
            nxt = text[i + 1]
            mapped = _SIMPLE.get(nxt)
            if mapped is not None:
                out.append(mapped)
                i += 2
                continue
            i += 1  # drop the backslash; the next character is read as it is
            continue
        out.append(c)
        i += 1
    return "".join(out)


_HEX = "0123456789abcdefABCDEF"


def _char(code: int) -> str:
    if code >= 0x110000:
        return ""
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"  # a lone surrogate cannot travel as UTF-8
    return chr(code)


def unescape_utf8(text: str) -> str:
    """The ``escaped_utf8`` decoder."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "\\" or i + 1 >= n or text[i + 1] in "\"'\\/":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        i += 2
        mapped = _SIMPLE.get(nxt)
        if mapped is not None:
            out.append(mapped)
        elif nxt in "01234567":
            j = i - 1
            while j < n and j - (i - 1) < 3 and text[j] in "01234567":
                j += 1
            out.append(_char(int(text[i - 1:j], 8)))
            i = j
        elif nxt in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            j = i
            while j < n and j - i < width and text[j] in _HEX:
                j += 1
            if j > i:
                out.append(_char(int(text[i:j], 16)))
                i = j
            else:
                out.append(nxt)
        else:
            out.append(nxt)
    return "".join(out)


_JSON_ESC = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "a": "\a",
             '"': '"', "\\": "\\", "/": "/", "'": "'"}


def unescape_utf8_json(text: str) -> str:
    """JSON-style escapes of a quoted logfmt value (``flb_unescape_string_utf8``):
    ``\\" \\\\ \\/ \\n``..., ``\\uHHHH`` (with surrogate pairs); others stand for themselves."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        i += 2
        if nxt == "u":
            j = i
            while j < n and j - i < 4 and text[j] in _HEX:
                j += 1
            if j == i:
                out.append("u")
                continue
            code = int(text[i:j], 16)
            i = j
            if 0xD800 <= code <= 0xDBFF and text[i:i + 2] == "\\u":
                low = text[i + 2:i + 6]
                if len(low) == 4 and all(h in _HEX for h in low) and \
                        0xDC00 <= int(low, 16) <= 0xDFFF:
                    code = 0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                    i += 6
            out.append(_char(code))
            continue
        out.append(_JSON_ESC.get(nxt, nxt))
    return "".join(out)


_MYSQL = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "0": "\0", "Z": "\x1a"}


def mysql_unquote(text: str) -> str:
    """The ``mysql_quoted`` decoder: ``'it''s \\n'`` -> ``it's <newline>``; unquoted text is
    kept as it is."""
    if len(text) < 2 or text[0] not in "'\"" or text[-1] != text[0]:
        return text
    quote = text[0]
    body = text[1:-1]
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\" and i + 1 < n:
            nxt = body[i + 1]
            out.append(_MYSQL.get(nxt, nxt))
            i += 2
            continue
        if c == quote and i + 1 < n and body[i + 1] == quote:
            out.append(quote)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def decode_json(text: str) -> dict[str, Any] | None:
    """The ``json`` decoder: the unescaped text must be one JSON object."""
    plain = unescape(text)
    if not plain.startswith("{"):
        return None
    try:
        value = _loads(plain)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


_BACKENDS: dict[str, Callable[[str], Any]] = {
    "json": decode_json,
    "escaped": unescape,
    "escaped_utf8": unescape_utf8,
    "mysql_quoted": mysql_unquote,
}
_ACTIONS = ("try_next", "do_next")


@dataclass(frozen=True)
class Rule:
    kind: str  # AS or MERGE
    backend: str
    action: str  # "", "try_next" or "do_next"


@dataclass
class Decoders:
    """The rules of one parser, per field, in definition order."""

    fields: dict[str, list[Rule]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.fields)

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        """The decoded record (a new dict when something changed)."""
        fields = self.fields
        if not any(k in record for k in fields):
            return record
        out: dict[str, Any] = {}
        extra: list[dict[str, Any]] = []
        for key, value in record.items():
            rules = fields.get(key)
            if rules is None or type(value) is not str:
                out[key] = value
                continue
            data = value
            decoded_as: Any = None
            is_as = False
            is_merged = False
            for rule in rules:
                if rule.kind == MERGE and rule.action == "do_next" and is_merged:
                    continue
                if is_as and type(decoded_as) is not str:
                    continue
                result = _BACKENDS[rule.backend](data)
                if result is None:
                    if rule.action:
                        continue
                    break
                if rule.kind == AS:
                    decoded_as = result
                    if type(result) is str:
                        data = result
                    is_as = True
                else:
                    if type(result) is dict:
                        extra.append(result)
                    is_merged = True
                if rule.action != "do_next":
                    break
            out[key] = decoded_as if is_as else value
        for keys in extra:
            out.update(keys)
        return out


def parse_rules(as_values: list[str], merge_values: list[str],
                order: list[tuple[str, str]] | None = None) -> Decoders:
    """Rules from ``Decode_Field_As`` and ``Decode_Field`` values; ValueError explains a bad one.

    ``order`` lists ``(kind, value)`` in file order when known (rules of one field run in the
    order they are written); otherwise ``Decode_Field_As`` rules come first."""
    items = order if order is not None else (
        [(AS, v) for v in as_values] + [(MERGE, v) for v in merge_values])
    dec = Decoders()
    for kind, text in items:
        parts = text.split()
        if len(parts) < 2:
            raise ValueError(f"invalid number of parameters in decoder '{text}'")
        backend = parts[0].lower()
        if backend not in _BACKENDS:
            raise ValueError(f"field decoder '{parts[0]}' unknown")
        action = parts[2].lower() if len(parts) >= 3 else ""
        if action not in _ACTIONS:
            action = ""
        dec.fields.setdefault(parts[1], []).append(Rule(kind, backend, action))
    return dec
