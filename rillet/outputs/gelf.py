"""GELF 1.1 encoding of records (Fluent Bit's ``flb_msgpack_to_gelf``, src/flb_pack_gelf.c).

Used by the ``http`` output's ``Format gelf``. A record becomes::

    {"version":"1.1", "short_message":"...", "_custom":"...", "timestamp":1700000000.123457}

- The keys named by ``gelf_host_key`` / ``gelf_short_message_key`` / ``gelf_full_message_key``
  / ``gelf_timestamp_key`` / ``gelf_level_key`` (default ``host``, ``short_message``,
  ``full_message``, ``timestamp``, ``level``) become those GELF fields; only the first of each
  counts. Every other key is a custom field ``_key``; a key ``id`` is dropped (GELF forbids
  ``_id``). Key characters other than ``A-Za-z0-9_.-`` become ``_``.
- Maps are flattened: ``{"k":{"a":1}}`` -> ``"_k_a":1``. Lists become one string:
  ``"_l":"1, two, a=1 b=2"``.
- Strings are JSON strings (non-ASCII escaped as the service's ``json.escape_unicode`` says),
  booleans the strings ``"true"`` / ``"false"``, floats ``%f``; a null top-level value is left
  out.
- ``level`` must be 0-7, a digit string, or a syslog keyword (``err``, ``warning``...), which
  is turned into its number.
- Without a timestamp key, ``timestamp`` is the record time in seconds (``%f``).
- A record without a short message, or with an invalid level, cannot be encoded:
  :class:`GelfError` says why (the caller counts and reports it per record).

Fluent Bit prints strings inside lists unescaped, which can produce invalid JSON; they are
escaped here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from rillet.outputs.formats import c_float, fb_json_text

__all__ = ["GelfError", "GelfFields", "encode_record"]

_NS = 1_000_000_000
_INVALID_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")
SYSLOG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


class GelfError(ValueError):
    """A record that cannot be a GELF message."""


@dataclass(frozen=True, slots=True)
class GelfFields:
    host_key: str = "host"
    short_message_key: str = "short_message"
    full_message_key: str = "full_message"
    timestamp_key: str = "timestamp"
    level_key: str = "level"


def _key(name: str) -> str:
    return _INVALID_KEY_CHARS.sub("_", name)


def _jstr(text: str) -> str:
    return fb_json_text(orjson.dumps(text)).decode("utf-8")


def _scalar(value: Any, quote: bool) -> str:
    """A scalar as flb_msgpack_gelf_flatten prints it (``quote`` False inside lists)."""
    t = type(value)
    if value is None:
        return "null"
    if t is bool:
        text = "true" if value else "false"
        return f'"{text}"' if quote else text
    if t is int:
        return str(value)
    if t is float:
        return c_float(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = _jstr(str(value))
    return text if quote else text[1:-1]


def _flatten(value: Any, prefix: str, in_array: bool, out: list[str]) -> None:
    """Append what flb_msgpack_gelf_flatten writes for ``value``."""
    if type(value) is dict:
        first = True
        for k, v in value.items():
            key = str(k)
            if type(v) is dict:
                _flatten(v, f"{prefix}_{key}" if prefix else key, in_array, out)
                continue
            if in_array:
                if not first:
                    out.append(" ")
                name = _key(key) if not prefix else f"{_key(prefix)}_{_key(key)}"
                out.append(name + "=")
            else:
                name = f"{_key(prefix)}_{_key(key)}" if prefix else _key(key)
                out.append(f', "{name}":')
            first = False
            _flatten(v, "", in_array, out)
    elif type(value) is list:
        if not in_array:
            out.append('"')
        for i, item in enumerate(value):
            if i:
                out.append(", ")
            _flatten(item, prefix, True, out)
        if not in_array:
            out.append('"')
    else:
        out.append(_scalar(value, not in_array))


def _level(value: Any) -> Any:
    if type(value) is int:
        if not 0 <= value <= 7:
            raise GelfError(f"level is {value}, but should be in 0..7 or a syslog keyword")
        return value
    if type(value) is str:
        if len(value) == 1 and "0" <= value <= "7":
            return int(value)
        low = value.lower()
        if low in SYSLOG_LEVELS:
            return SYSLOG_LEVELS.index(low)
        raise GelfError(f"level is '{value}', but should be in 0..7 or a syslog keyword")
    return value


def encode_record(record: Mapping[str, Any], time_ns: int, fields: GelfFields) -> bytes:
    """One record as a GELF JSON object (no trailing newline)."""
    special = {fields.host_key: "host", fields.short_message_key: "short_message",
               fields.timestamp_key: "timestamp", fields.level_key: "level",
               fields.full_message_key: "full_message"}
    seen: set[str] = set()
    out: list[str] = ['{"version":"1.1"']
    for raw_key, value in record.items():
        key = str(raw_key)
        gelf = special.get(key)
        if gelf is not None:
            if gelf in seen:
                continue
            seen.add(gelf)
            key = gelf
            if gelf == "level":
                value = _level(value)
        elif key == "id":
            continue
        if type(value) is dict:
            _flatten(value, "_" + key, False, out)
            continue
        name = _key(key) if gelf is not None else "_" + _key(key)
        if type(value) is list:
            out.append(f', "{name}":')
            _flatten(value, "", False, out)
            continue
        if value is None:
            continue
        out.append(f', "{name}":' + _scalar(value, True))
    if "timestamp" not in seen:
        sec, nsec = divmod(time_ns, _NS)
        out.append(', "timestamp":' + c_float(sec + nsec / 1e9))
    if "short_message" not in seen:
        raise GelfError("missing short_message key")
    out.append("}")
    return "".join(out).encode("utf-8", "surrogateescape")
