"""``file`` output: appends records to files (Fluent Bit's out_file).

The file is ``Path/File``; without ``File`` it is the record tag, sanitized as out_file does
(``/`` and ``\\`` separate directories, ``.`` and ``..`` components become ``_``, any byte other
than ASCII letters, digits, ``-``, ``_`` and ``.`` becomes ``_``). Every flush opens the file in
append mode, writes the whole chunk at once and closes it, so a file removed between flushes is
created again.

Formats (lines end with ``\\n``)::

    out_file  tag: [1700000000.123456789, {"key":"value"}]     (default)
    plain     {"key":"value"}
    csv       1700000000.123456789,"value1","value2"         (Delimiter, csv_column_names)
    ltsv      "time":1700000000.123457<TAB>"key":"value"     (Delimiter, Label_Delimiter)
    template  1700000000.123457 value                        (Template, default "{time} {message}")
    msgpack   the records as Fluent Bit's chunk msgpack

csv, ltsv and template print values with ``msgpack_object_print`` (strings quoted and raw,
floats ``%f``); template prints string values without quotes and ``{time}`` as ``%f`` seconds.

Errors: a file that cannot be opened (missing directory without ``Mkdir``, permission denied)
or written is logged and the chunk is retried. Fluent Bit drops the chunk when the open fails
(FLB_ERROR); rillet retries it within ``Retry_Limit`` (docs/differences.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, BinaryIO

from rillet.config.options import Option, T
from rillet.engine.chunk import Body, Chunk, body_dict
from rillet.engine.plugin import FlushResult, Output, Status, register
from rillet.outputs import formats

_NS = 1_000_000_000
_MISSING = object()

FORMATS = ("out_file", "plain", "csv", "ltsv", "template", "msgpack")

# Template segments: literal text, the record time, or a record key.
_LITERAL, _TIME, _KEY = 0, 1, 2


def check_delimiter(value: str | None) -> str | None:
    """out_file's ``check_delimiter``: ``\\t``/``tab``, ``space`` and ``comma``; else None."""
    if value is None:
        return None
    low = value.lower()
    if low in ("\\t", "tab"):
        return "\t"
    if low == "space":
        return " "
    if low == "comma":
        return ","
    return None


def sanitize_tag(tag: str) -> str:
    """out_file's ``sanitize_tag_name``: the tag as a safe relative path."""
    parts: list[str] = []
    for component in tag.replace("\\", "/").split("/"):
        if not component:
            continue
        if component in (".", ".."):
            parts.append("_")
            continue
        parts.append("".join(chr(c) if (c < 0x80 and (chr(c).isalnum() or c in b"-_."))
                             else "_" for c in component.encode("utf-8", "surrogateescape")))
    return "/".join(parts) or "_"


def parse_template(template: str) -> list[tuple[int, str]]:
    """Split a template the way out_file's ``template_output`` walks it.

    ``{key}`` is a placeholder; a second ``{`` before the ``}`` makes the text from the first one
    literal; an unclosed ``{`` and everything after it is literal; a lone ``}`` is literal.
    ``{time}`` (or any prefix of "time", even ``{}``: Fluent Bit compares with ``strncmp``) is the
    record time.
    """
    segments: list[tuple[int, str]] = []
    text: list[str] = []
    inbrace = -1
    for i, ch in enumerate(template):
        if ch == "{":
            if inbrace >= 0:
                text.append(template[inbrace:i])
            inbrace = i
        elif ch == "}" and inbrace >= 0:
            key = template[inbrace + 1:i]
            if text:
                segments.append((_LITERAL, "".join(text)))
                text = []
            segments.append((_TIME, key) if "time".startswith(key) else (_KEY, key))
            inbrace = -1
        elif inbrace < 0:
            text.append(ch)
    if inbrace >= 0:
        text.append(template[inbrace:])
    text.append("\n")
    segments.append((_LITERAL, "".join(text)))
    return segments


def _mkpath(path: str) -> None:
    """out_file's ``mkpath``: create every missing directory with mode 0755."""
    if os.path.isdir(path):
        return
    if os.path.exists(path):
        raise NotADirectoryError(20, f"{path} is not a directory", path)
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path:
        _mkpath(parent)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


@register
class File(Output):
    name = "file"
    description = "Generate log file"
    default_workers = 1
    options = (
        Option("path", T.STR, None, "directory to store the files in (the file name is "
               "appended)"),
        Option("file", T.STR, None, "name of the file; defaults to the record tag"),
        Option("format", T.STR, None, "out_file (default: tag: [time, json]), plain (json), "
               "csv, ltsv, template or msgpack"),
        Option("delimiter", T.STR, None, "csv/ltsv field separator: \\t (or tab), space or "
               "comma; other values are ignored"),
        Option("label_delimiter", T.STR, None, "ltsv label separator: \\t (or tab), space or "
               "comma; other values are ignored"),
        Option("template", T.STR, "{time} {message}", "line template of the template format: "
               "{time} and {key} placeholders"),
        Option("csv_column_names", T.BOOL, "false", "write the keys as the first line of a new "
               "csv file"),
        Option("mkdir", T.BOOL, "false", "create the output directory (mode 0755) when it "
               "does not exist"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        for key in ("path", "file"):
            if o[key] is not None and "$" in o[key]:
                raise ValueError(f"{key}: record accessor destinations ('$...') are not "
                                 "supported in this version")
        fmt = (o["format"] or "out_file").strip().lower()
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {o['format']}. abort.")
        self.format = fmt
        self.delimiter = {"csv": ",", "ltsv": "\t"}.get(fmt, "")
        self.label_delimiter = ":" if fmt == "ltsv" else ""
        delimiter = check_delimiter(o["delimiter"])
        if delimiter is not None:
            self.delimiter = delimiter
        label = check_delimiter(o["label_delimiter"])
        if label is not None:
            self.label_delimiter = label
        self.template = parse_template(o["template"] if o["template"] is not None else "")
        self.csv_column_names: bool = o["csv_column_names"]
        self.mkdir: bool = o["mkdir"]
        self.path: str | None = o["path"] or None
        self.file: str | None = o["file"]
        self._targets: dict[str, str] = {}

    # -- destination --------------------------------------------------------------------------
    def target(self, tag: str) -> str:
        """The file a chunk of ``tag`` goes to."""
        target = self._targets.get(tag)
        if target is None:
            name = self.file if self.file is not None else sanitize_tag(tag)
            target = f"{self.path}/{name}" if self.path else name
            if len(self._targets) < 4096:
                self._targets[tag] = target
        return target

    def _open(self, target: str) -> BinaryIO:
        try:
            return open(target, "ab")
        except FileNotFoundError:
            if not self.mkdir:
                raise
        directory = os.path.dirname(target)
        if directory:
            try:
                _mkpath(directory)
            except NotADirectoryError:
                self.log.error("%s is not a directory", directory)
                raise
        return open(target, "ab")

    # -- delivery -----------------------------------------------------------------------------
    async def flush(self, chunk: Chunk) -> FlushResult:
        target = self.target(chunk.tag)
        try:
            fp = self._open(target)
        except OSError as exc:
            self.log.error("[errno=%s] %s", exc.errno, exc.strerror)
            self.log.error("error opening: %s", target)
            # Fluent Bit drops the chunk here; a mount that is back a minute later should not
            # cost data, so rillet retries (Retry_Limit still bounds it).
            return Status.RETRY
        try:
            with fp:
                data = self.render(chunk, fp.tell())
                fp.write(data)
        except OSError as exc:
            self.log.error("could not write to %s: %s", target, exc.strerror or exc)
            return Status.RETRY
        return Status.OK

    def render(self, chunk: Chunk, file_pos: int = 0) -> bytes:
        """The bytes a chunk adds to a file whose current size is ``file_pos``."""
        fmt = self.format
        times, bodies = chunk.times, chunk.bodies
        if fmt == "out_file":
            return _out_file(chunk.tag, times, bodies)
        if fmt == "plain":
            return formats.json_lines(bodies)
        if fmt == "msgpack":
            return formats.pack_records(times, bodies)
        if fmt == "csv":
            text = self._csv(times, bodies, self.csv_column_names and file_pos == 0)
        elif fmt == "ltsv":
            text = self._ltsv(times, bodies)
        else:
            text = self._template(times, bodies)
        return text.encode("utf-8", "surrogateescape")

    def _csv(self, times: Sequence[int], bodies: Sequence[Body], header: bool) -> str:
        d = self.delimiter
        mp = formats.mp_print
        out: list[str] = []
        for t, body in zip(times, bodies, strict=True):
            m = body_dict(body)
            if header:  # consumed by the first record even when it has no keys
                header = False
                if m:
                    out.append("timestamp" + d + d.join([mp(k) for k in m]) + "\n")
            if not m:
                continue
            sec, nsec = divmod(t, _NS)
            out.append(f"{sec}.{nsec:09d}{d}" + d.join(
                [mp(v) for v in m.values()]) + "\n")
        return "".join(out)

    def _ltsv(self, times: Sequence[int], bodies: Sequence[Body]) -> str:
        d, ld = self.delimiter, self.label_delimiter
        mp = formats.mp_print
        c_float = formats.c_float
        out: list[str] = []
        for t, body in zip(times, bodies, strict=True):
            m = body_dict(body)
            if not m:
                continue
            sec, nsec = divmod(t, _NS)
            out.append(f'"time"{ld}{c_float(sec + nsec / 1e9)}{d}' + d.join(
                [mp(k) + ld + mp(v) for k, v in m.items()]) + "\n")
        return "".join(out)

    def _template(self, times: Sequence[int], bodies: Sequence[Body]) -> str:
        segments = self.template
        mp = formats.mp_print
        c_float = formats.c_float
        out: list[str] = []
        append = out.append
        for t, body in zip(times, bodies, strict=True):
            m = body_dict(body)
            for kind, text in segments:
                if kind == _LITERAL:
                    append(text)
                elif kind == _TIME:
                    sec, nsec = divmod(t, _NS)
                    append(c_float(sec + nsec / 1e9))
                else:
                    v = m.get(text, _MISSING)
                    if v is _MISSING:
                        append("{" + text + "}")
                    else:
                        append(v if type(v) is str else mp(v))
        return "".join(out)


def _out_file(tag: str, times: Sequence[int], bodies: Sequence[Body]) -> bytes:
    """``fprintf(fp, "%s: [%"PRIu64".%09lu, %s]\\n", tag, sec, nsec, json)`` per record."""
    parts = formats.bodies_fb_json(bodies)
    n = len(parts)
    ns = _NS
    if n and min(times) < 0:  # (uint64_t) tv_sec
        stamps = [b"%d.%09d, " % ((t // ns) % (1 << 64), t % ns) for t in times]
    else:
        stamps = [b"%d.%09d, " % divmod(t, ns) for t in times]
    pieces: list[bytes] = [b""] * (4 * n)
    pieces[0::4] = [tag.encode("utf-8", "surrogateescape") + b": ["] * n
    pieces[1::4] = stamps
    pieces[2::4] = parts
    pieces[3::4] = [b"]\n"] * n
    return b"".join(pieces)
