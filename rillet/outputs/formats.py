"""Record encoders shared by the outputs: Fluent Bit's JSON formats and its "msgpack print".

Everything here reproduces what Fluent Bit writes, byte for byte:

- :class:`JsonEncoder`: ``json`` / ``json_lines`` / ``json_stream`` with ``json_date_key`` and
  ``json_date_format`` (``flb_pack_msgpack_to_json_format`` in src/flb_pack.c): the date is the
  first key of every object; ``json`` is one array of objects per chunk. :data:`JSON_OPTIONS` and
  :func:`json_settings` are out_stdout's and out_null's option handling.
- :func:`fb_json_text` / :func:`render_bodies` / :func:`json_lines`: JSON text as ``msgpack2json``
  (src/flb_pack.c) prints it: floats ``%.1f`` when integral, else ``%.16g``; with
  ``json.escape_unicode`` (Fluent Bit's default, see :func:`configure`) every non-ASCII character
  as a lower-case ``\\uXXXX`` escape (surrogate pairs beyond the BMP, ``flb_utils_write_str`` in
  src/flb_utils.c); DEL as ``\\u007f``.
- :func:`mp_print`: ``msgpack_object_print`` (lib/msgpack-c/src/objectc.c), used by the stdout
  default format and by out_file's csv, ltsv and template formats: ``{"k"=>"v", "n"=>1}``, strings
  printed raw between quotes (no escaping at all), floats with ``%f``, ``nil``, ``true``.
- :func:`stdout_msgpack_lines`: out_stdout's default format,
  ``[0] tag: [[1700000000.123456789, {}], {"message"=>"dummy"}]``.
- :func:`pack_records`: the records as Fluent Bit's chunk msgpack (``[[EventTime, {}], body]``),
  for out_file's ``msgpack`` format.

Bodies are dicts or bytes (a JSON object's text, spliced in without decoding). A chunk costs one
orjson pass over its dict bodies, a join, and a few whole-buffer C passes (``translate``,
``isascii``) that find nothing to rewrite unless the chunk holds a float or a non-ASCII character;
the date key is spliced in with one ``split`` and one ``join``.
"""

from __future__ import annotations

import logging
import math
import re
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Body, bodies_json, body_dict

_dumps = orjson.dumps
_loads = orjson.loads
_NS = 1_000_000_000

# --- service-level settings ([SERVICE] json.escape_unicode / json.convert_nan_to_null) ---------


class JsonSettings:
    """Fluent Bit's service-wide JSON settings (flb_config.c defaults)."""

    escape_unicode: bool = True
    convert_nan_to_null: bool = False


SETTINGS = JsonSettings()


def configure(*, escape_unicode: bool | None = None,
              convert_nan_to_null: bool | None = None) -> None:
    """Apply ``json.escape_unicode`` / ``json.convert_nan_to_null`` from ``[SERVICE]``."""
    if escape_unicode is not None:
        SETTINGS.escape_unicode = escape_unicode
    if convert_nan_to_null is not None:
        SETTINGS.convert_nan_to_null = convert_nan_to_null


# --- option values (flb_pack_to_json_format_type / flb_pack_to_json_date_type) ---------------

MSGPACK = "msgpack"
JSON = "json"
JSON_LINES = "json_lines"
JSON_STREAM = "json_stream"
JSON_FORMATS = (MSGPACK, JSON, JSON_LINES, JSON_STREAM)

DATE_DOUBLE = "double"
DATE_ISO8601 = "iso8601"
DATE_EPOCH = "epoch"
DATE_EPOCH_MS = "epoch_ms"
DATE_JAVA_SQL = "java_sql_timestamp"
_DATE_NAMES = {
    "double": DATE_DOUBLE,
    "java_sql_timestamp": DATE_JAVA_SQL,
    "iso8601": DATE_ISO8601,
    "epoch": DATE_EPOCH,
    "epoch_ms": DATE_EPOCH_MS,
    "epoch_millis": DATE_EPOCH_MS,
    "epoch_milliseconds": DATE_EPOCH_MS,
}
DATE_FORMAT_DOC = ("format of the date: double, iso8601 (e.g. 2018-05-30T09:39:52.000681Z), "
                   "java_sql_timestamp (e.g. 2018-05-30 09:39:52.000681), epoch or epoch_ms")


def json_format_type(text: str) -> str | None:
    """``flb_pack_to_json_format_type``: the canonical format name, or None if unknown."""
    low = text.strip().lower()
    return low if low in JSON_FORMATS else None


def json_date_type(text: str) -> str | None:
    """``flb_pack_to_json_date_type``: the canonical date format, or None if unknown."""
    return _DATE_NAMES.get(text.strip().lower())


def date_format_option(value: str | None) -> str:
    """``json_date_format`` as a startup check: the canonical name (double when unset);
    ValueError for an unknown name."""
    if value is None:
        return DATE_DOUBLE
    found = json_date_type(value)
    if found is None:
        raise ValueError(f"invalid json_date_format '{value}'")
    return found


def date_key_option(value: str | None) -> str | None:
    """``json_date_key``: ``false``/``off``/``no`` disables the key (``flb_utils_bool``)."""
    if value is None:
        return None
    if value.strip().lower() in ("false", "off", "no"):
        return None
    return value


# The options of out_stdout and out_null (their config maps are the same).
JSON_OPTIONS: tuple[Option, ...] = (
    Option("format", T.STR, None, "data format: msgpack (default), json, json_lines or "
           "json_stream"),
    Option("json_date_key", T.STR, "date", "name of the date key in JSON formats; false, off "
           "or no leaves the date out"),
    Option("json_date_format", T.STR, None, DATE_FORMAT_DOC + " (default: double)"),
)


def json_settings(opts: Mapping[str, Any],
                  log: logging.Logger) -> tuple[str, JsonEncoder | None]:
    """Read ``format`` / ``json_date_key`` / ``json_date_format`` as out_stdout and out_null do:
    a bad value is logged and replaced by the default (msgpack, double); it is not fatal."""
    fmt = MSGPACK
    raw = opts.get("format")
    if raw is not None:
        found = json_format_type(raw)
        if found is None:
            log.error("unrecognized 'format' option. Using 'msgpack'")
        else:
            fmt = found
    date_key = date_key_option(opts.get("json_date_key"))
    date_format = DATE_DOUBLE
    raw = opts.get("json_date_format")
    if raw is not None:
        found = json_date_type(raw)
        if found is None:
            log.error("invalid json_date_format '%s'. Using 'double' type", raw)
        else:
            date_format = found
    if fmt == MSGPACK:
        return fmt, None
    return fmt, JsonEncoder(fmt, date_key, date_format)


# --- numbers -------------------------------------------------------------------------------

_LL_MIN = -9.223372036854775808e18
_LL_MAX = 9.223372036854775808e18


def fb_double(x: float) -> str:
    """A double as ``msgpack2json`` prints it: ``%.1f`` when integral, else ``%.16g``."""
    if _LL_MIN <= x < _LL_MAX and x.is_integer():
        return f"{x:.1f}"
    if x != x:
        if SETTINGS.convert_nan_to_null:
            return "null"
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    return f"{x:.16g}"


def c_float(x: float) -> str:
    """``printf("%f")`` (glibc prints a negative NaN as ``-nan``)."""
    if x != x:
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    return f"{x:f}"


# --- JSON text: orjson output -> msgpack2json output ---------------------------------------

# Every digit followed by '.', 'e' or 'E' shows as b"0." after this translation: the cheap test
# that rules floats out for most texts.
_FLOAT_GATE = bytes.maketrans(b"0123456789eE", b"0000000000..")
# A float token (in text where strings have been taken out).
_FLOAT = re.compile(rb"-?\d+(?:\.\d+(?:[eE][+-]?\d+)?|[eE][+-]?\d+)")
# Exact tokenizer for texts with escaped quotes: strings are matched whole so that digits inside
# them are never touched.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?', re.DOTALL)
_NON_ASCII = re.compile("[\x7f-\U0010ffff]+")


def _fix_float(m: re.Match[bytes]) -> bytes:
    return fb_double(float(m.group(0))).encode()


def _fix_number(m: re.Match[bytes]) -> bytes:
    tok = m.group(0)
    if tok[0] == 0x22 or not (b"." in tok or b"e" in tok or b"E" in tok):  # string or integer
        return tok
    return fb_double(float(tok)).encode()


def _fix_floats(buf: bytes) -> bytes:
    """Print every float token of a JSON text as msgpack2json does; ``buf`` if none."""
    if b"0." not in buf.translate(_FLOAT_GATE):
        return buf
    if b'\\"' in buf:  # an escaped quote: split on quotes would not find the strings
        # Gate first, with the escapes dropped (C passes): most texts have no float outside
        # their strings.
        plain = buf.replace(b"\\\\", b"").replace(b'\\"', b"")
        if b"0." not in b"\0".join(plain.split(b'"')[::2]).translate(_FLOAT_GATE):
            return buf
        return _TOKEN.sub(_fix_number, buf)
    parts = buf.split(b'"')  # even parts are outside strings
    outside = b"\0".join(parts[::2])
    if b"0." not in outside.translate(_FLOAT_GATE):
        return buf
    fixed = _FLOAT.sub(_fix_float, outside)
    if fixed == outside:
        return buf
    parts[::2] = fixed.split(b"\0")
    return b'"'.join(parts)


def _escape_run(m: re.Match[str]) -> str:
    out = []
    for ch in m.group(0):
        cp = ord(ch)
        if cp > 0xFFFF:
            cp -= 0x10000
            out.append(f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}")
        elif 0xDC80 <= cp <= 0xDCFF:
            # A byte of invalid UTF-8 (decoded with surrogateescape): Fluent Bit writes it as the
            # private-use character U+E0xx, unescaped.
            out.append(chr(0xE000 + cp - 0xDC00))
        else:
            out.append(f"\\u{cp:04x}")
    return "".join(out)


_LONE_SURROGATE = re.compile("[\udc80-\udcff]")


def fb_json_text(buf: bytes) -> bytes:
    """Rewrite compact JSON text (orjson's) the way Fluent Bit's msgpack2json prints it.

    Floats get Fluent Bit's ``%.1f``/``%.16g`` forms; with ``json.escape_unicode`` on (the
    default) non-ASCII characters become lower-case ``\\uXXXX`` escapes (surrogate pairs beyond
    the BMP); with it off they stay raw UTF-8 and invalid bytes become U+FFFD. DEL is always
    ``\\u007f``. Returns ``buf`` itself when nothing needs to change.
    """
    buf = _fix_floats(buf)
    if not buf.isascii():
        text = buf.decode("utf-8", "surrogateescape")
        if SETTINGS.escape_unicode:
            return _NON_ASCII.sub(_escape_run, text).encode("utf-8")
        if _LONE_SURROGATE.search(text) is not None:
            buf = _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")
    elif b"\x7f" not in buf:
        return buf
    return buf.replace(b"\x7f", b"\\u007f")


def verbatim_bodies(bodies: Sequence[Body]) -> tuple[list[bytes], bytes]:
    """Every body's JSON text as it is (orjson for dicts), and the texts joined with newlines;
    a raw line break inside a text (JSON whitespace) becomes a space, so lines stay records."""
    raw = bodies_json(bodies)
    joined = b"\n".join(raw)
    if joined.count(b"\n") != len(raw) - 1 or b"\r" in joined:
        raw = [r.replace(b"\n", b" ").replace(b"\r", b" ") for r in raw]
        joined = b"\n".join(raw)
    return raw, joined


def render_bodies(bodies: Sequence[Body]) -> tuple[list[bytes], bytes]:
    """Fluent Bit's JSON text of every body, and the same texts joined with newlines."""
    raw = bodies_json(bodies)
    joined = b"\n".join(raw)
    fixed = fb_json_text(joined)
    if fixed is joined:
        return raw, joined
    parts = fixed.split(b"\n")
    if len(parts) != len(raw):  # a serialized body held a raw newline (whitespace)
        parts = [fb_json_text(r) for r in raw]
        fixed = b"\n".join(parts)
    return parts, fixed


def bodies_fb_json(bodies: Sequence[Body]) -> list[bytes]:
    """Every body as ``flb_msgpack_to_json_str`` prints it."""
    return render_bodies(bodies)[0]


def json_lines(bodies: Sequence[Body]) -> bytes:
    """Every body's JSON on its own line (out_file ``plain``; json_lines without a date key)."""
    if not bodies:
        return b""
    return render_bodies(bodies)[1] + b"\n"


# --- json / json_lines / json_stream ----------------------------------------------------------


def date_texts(times: Sequence[int], fmt: str) -> list[bytes]:
    """The JSON text of the date value of every timestamp, each followed by a comma.

    double: ``flb_time_to_double`` printed by msgpack2json (``%.1f`` if integral, else
    ``%.16g``); epoch: seconds; epoch_ms: ``sec * 1000 + nsec / 1000000``; iso8601:
    ``"%Y-%m-%dT%H:%M:%S.<microseconds>Z"``; java_sql_timestamp: ``"%Y-%m-%d %H:%M:%S.<us>"``
    (UTC, microseconds truncated).
    """
    ns = _NS
    if fmt == DATE_DOUBLE:
        # Timestamps are int64 nanoseconds: the double is finite and far below 2**63.
        return [(f"{x:.1f}," if x.is_integer() else f"{x:.16g},").encode()
                for x in [t // ns + (t % ns) / 1e9 for t in times]]
    if fmt == DATE_EPOCH:
        return [b"%d," % (t // ns) for t in times]
    if fmt == DATE_EPOCH_MS:
        return [b"%d," % (t // ns * 1000 + t % ns // 1_000_000) for t in times]
    pattern = "%Y-%m-%dT%H:%M:%S" if fmt == DATE_ISO8601 else "%Y-%m-%d %H:%M:%S"
    tail = 'Z",' if fmt == DATE_ISO8601 else '",'
    out: list[bytes] = []
    last_sec: int | None = None
    head = ""
    for t in times:
        sec, nsec = divmod(t, ns)
        if sec != last_sec:
            head = '"' + time.strftime(pattern, time.gmtime(sec)) + "."
            last_sec = sec
        out.append(f"{head}{nsec // 1000:06d}{tail}".encode())
    return out


class JsonEncoder:
    """``flb_pack_msgpack_to_json_format`` for one output instance.

    ``fmt`` is ``json`` (``[{..},{..}]``), ``json_lines`` (one object per line, each ending in
    ``\\n``) or ``json_stream`` (objects back to back). With a date key, every object starts with
    ``"<key>":<date>``; a record that already has that key keeps its own value in its own place
    (Fluent Bit drops the earlier of two equal keys when it prints a map).
    """

    def __init__(self, fmt: str, date_key: str | None = "date",
                 date_format: str = DATE_DOUBLE, verbatim: bool = False) -> None:
        """``verbatim``: bodies keep their own JSON text (numbers and non-ASCII characters
        as the input wrote them) instead of Fluent Bit's printing; a much cheaper pass."""
        if fmt not in (JSON, JSON_LINES, JSON_STREAM):
            raise ValueError(f"not a JSON format: {fmt}")
        self.fmt = fmt
        self._render = verbatim_bodies if verbatim else render_bodies
        self.date_key = date_key
        self.date_format = date_format
        self._sep = {JSON: b",", JSON_LINES: b"\n", JSON_STREAM: b""}[fmt]
        self._key_json = fb_json_text(_dumps(date_key)) if date_key is not None else b""
        self._prefix = b"{" + self._key_json + b":"

    def encode(self, times: Sequence[int], bodies: Sequence[Body]) -> bytes:
        """The chunk's text (empty for an empty chunk)."""
        if not bodies:
            return b"[]" if self.fmt == JSON else b""
        parts, joined = self._render(bodies)
        if self.date_key is not None:
            if self._key_json in joined or b"{}" in parts:
                parts = self._objects(times, bodies, parts)
            else:
                return self._finish(self._splice(times, parts, joined))
        elif self.fmt == JSON_LINES:
            return joined + b"\n"
        return self._finish(self._sep.join(parts))

    def _finish(self, text: bytes) -> bytes:
        if self.fmt == JSON_LINES:
            return text + b"\n"
        if self.fmt == JSON:
            return b"[" + text + b"]"
        return text

    def _splice(self, times: Sequence[int], parts: list[bytes], joined: bytes) -> bytes:
        """Insert the date after every object's '{' (no object empty, none with the key)."""
        n = len(parts)
        tails = joined[1:].split(b"\n{")  # every object without its '{', in one C call
        if len(tails) != n:  # a serialized body held "\n{" (whitespace): slice one by one
            tails = [p[1:] for p in parts]
        prefix = self._prefix
        pieces: list[bytes] = [b""] * (3 * n)
        pieces[0::3] = [prefix] + [self._sep + prefix] * (n - 1)
        pieces[1::3] = date_texts(times, self.date_format)
        pieces[2::3] = tails
        return b"".join(pieces)

    def _objects(self, times: Sequence[int], bodies: Sequence[Body],
                 parts: list[bytes]) -> list[bytes]:
        """Every object with its date, record by record (empty records, records with the key)."""
        key = self.date_key
        key_json = self._key_json
        prefix = self._prefix
        loads = _loads
        out: list[bytes] = []
        append = out.append
        for date, body, text in zip(date_texts(times, self.date_format), bodies, parts,
                                    strict=True):
            if key in body if type(body) is dict else (key_json in text and key in loads(text)):
                append(text)
            elif len(text) == 2:  # "{}"
                append(prefix + date[:-1] + b"}")
            else:
                append(prefix + date + text[1:])
        return out


# --- msgpack_object_print ------------------------------------------------------------------


def _bin_print(data: bytes) -> str:
    """``msgpack_object_bin_print``: '"' escaped, printable ASCII as is, the rest as \\xNN."""
    out = []
    for c in data:
        if c == 0x22:
            out.append('\\"')
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


def mp_print(v: Any) -> str:
    """``msgpack_object_print`` of a decoded value."""
    t = type(v)
    if t is str:
        return '"' + v + '"'
    if t is dict:
        return _mp_map(v)
    if t is int:
        return str(v)
    if t is float:
        return c_float(v)
    if t is bool:
        return "true" if v else "false"
    if v is None:
        return "nil"
    if t is list or t is tuple:
        return "[" + ", ".join([mp_print(x) for x in v]) + "]"
    if isinstance(v, bytes | bytearray | memoryview):
        return '"' + _bin_print(bytes(v)) + '"'
    return '"' + str(v) + '"'


def _mp_map(d: dict[Any, Any]) -> str:
    if not d:
        return "{}"
    items = []
    for k, v in d.items():
        items.append(mp_print(k) + "=>" + mp_print(v))
    return "{" + ", ".join(items) + "}"


def mp_print_body(body: Body) -> str:
    """``msgpack_object_print`` of a record body (dict or JSON text)."""
    return _mp_map(body_dict(body))


def _int32(sec: int) -> int:
    if -0x80000000 <= sec <= 0x7FFFFFFF:
        return sec
    return (sec + 0x80000000) % 0x100000000 - 0x80000000


def stdout_msgpack_lines(tag: str, times: Sequence[int], bodies: Sequence[Body]) -> bytes:
    """out_stdout's default format, one line per record, numbered from 0 in every chunk.

    ``printf("[%zd] %s: [[", cnt++, tag); printf("%"PRId32".%09lu, ", (int32_t) sec, nsec);
    msgpack_object_print(metadata); printf("], "); msgpack_object_print(body); printf("]\\n")``
    """
    lines: list[str] = []
    append = lines.append
    last: Body | None = None
    text = ""
    for i, (t, body) in enumerate(zip(times, bodies, strict=True)):
        sec, nsec = divmod(t, _NS)
        if not -0x80000000 <= sec <= 0x7FFFFFFF:
            sec = _int32(sec)
        if body is not last:  # inputs often repeat one body object (dummy)
            text = _mp_map(body_dict(body))
            last = body
        append(f"[{i}] {tag}: [[{sec}.{nsec:09d}, {{}}], {text}]\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


# --- msgpack encoding (out_file Format msgpack) ------------------------------------------------

_pack_be = struct.pack


def _head(out: bytearray, n: int, fix: int, fix_limit: int, code8: int | None, code16: int,
          code32: int) -> None:
    """A length header in its smallest form: fixed (``fix | n`` below ``fix_limit``), then the
    8-bit form where the type has one, then 16 and 32 bits."""
    if n < fix_limit:
        out.append(fix | n)
    elif code8 is not None and n < 0x100:
        out += bytes((code8, n))
    elif n < 0x10000:
        out += bytes((code16,)) + _pack_be(">H", n)
    else:
        out += bytes((code32,)) + _pack_be(">I", n)


def _pack(v: Any, out: bytearray) -> None:
    """msgpack-c's packer rules: smallest int form, float64, str8/16/32, fix/16/32 containers."""
    t = type(v)
    if t is str:
        data = v.encode("utf-8", "surrogateescape")
        _head(out, len(data), 0xA0, 32, 0xD9, 0xDA, 0xDB)
        out += data
    elif t is int:
        if 0 <= v < 0x80:
            out.append(v)
        elif v >= 0:
            if v < 0x100:
                out += b"\xcc" + bytes((v,))
            elif v < 0x10000:
                out += b"\xcd" + _pack_be(">H", v)
            elif v < 0x100000000:
                out += b"\xce" + _pack_be(">I", v)
            else:
                out += b"\xcf" + _pack_be(">Q", v)
        elif v >= -32:
            out.append(v & 0xFF)
        elif v >= -0x80:
            out += b"\xd0" + _pack_be(">b", v)
        elif v >= -0x8000:
            out += b"\xd1" + _pack_be(">h", v)
        elif v >= -0x80000000:
            out += b"\xd2" + _pack_be(">i", v)
        else:
            out += b"\xd3" + _pack_be(">q", v)
    elif t is dict:
        _head(out, len(v), 0x80, 16, None, 0xDE, 0xDF)
        for k, x in v.items():
            _pack(k, out)
            _pack(x, out)
    elif t is float:
        out += b"\xcb" + _pack_be(">d", v)
    elif t is bool:
        out.append(0xC3 if v else 0xC2)
    elif v is None:
        out.append(0xC0)
    elif t is list or t is tuple:
        _head(out, len(v), 0x90, 16, None, 0xDC, 0xDD)
        for x in v:
            _pack(x, out)
    elif isinstance(v, bytes | bytearray | memoryview):
        data = bytes(v)
        _head(out, len(data), 0, 0, 0xC4, 0xC5, 0xC6)
        out += data
    else:
        _pack(str(v), out)


def pack_records(times: Sequence[int], bodies: Sequence[Body]) -> bytes:
    """The records as Fluent Bit's chunk format: ``[[EventTime, {}], body]`` per record.

    The timestamp is msgpack ext type 0 (fixext8: big-endian seconds and nanoseconds).
    """
    out = bytearray()
    for t, body in zip(times, bodies, strict=True):
        sec, nsec = divmod(t, _NS)
        out += b"\x92\x92\xd7\x00" + _pack_be(">II", sec & 0xFFFFFFFF, nsec) + b"\x80"
        _pack(body_dict(body), out)
    return bytes(out)
