"""``s3_key_format`` rendering (Fluent Bit's ``flb_get_s3_key``).

Tokens: ``$TAG`` (the whole tag), ``$TAG[n]`` (the n-th part of the tag split on any of the
``s3_key_format_tag_delimiters`` characters, from 0), ``$UUID`` (8 random alphanumeric
characters), ``$INDEX`` (a counter persisted in ``store_dir``, one step per object), and strftime
conversions (``%Y/%m/%d/%H/%M/%S``...) from the time of the first record of the object, in UTC.

A key is rendered once, when an object is created, and kept with the staged object: an upload
retried or resumed after a restart goes to the same key, so a repeated upload overwrites the
object with the same bytes instead of adding a second copy.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from dataclasses import dataclass

_TOKEN = re.compile(r"\$TAG\[(\d+)\]|\$TAG|\$UUID|\$INDEX")
_ALPHABET = string.ascii_letters + string.digits
UUID_LEN = 8


def random_id(n: int = UUID_LEN) -> str:
    """``n`` random alphanumeric characters (Fluent Bit's ``$UUID`` and PutObject suffix)."""
    choice = secrets.choice
    return "".join(choice(_ALPHABET) for _ in range(n))


@dataclass(frozen=True, slots=True)
class RenderedKey:
    key: str  # the object key of a multipart upload
    put_key: str  # the key when the object is sent with PutObject (may carry a random suffix)


class KeyFormat:
    """A compiled ``s3_key_format``."""

    def __init__(self, fmt: str, delimiters: str = ".", static_file_path: bool = False) -> None:
        if not fmt:
            raise ValueError("s3_key_format: the key format is empty")
        self.fmt = fmt
        self.delimiters = delimiters or "."
        self.static_file_path = static_file_path
        self.has_uuid = "$UUID" in fmt
        self.has_index = "$INDEX" in fmt
        self._split = re.compile("[" + re.escape(self.delimiters) + "]")

    def tag_parts(self, tag: str) -> list[str]:
        return self._split.split(tag)

    def render(self, tag: str, first_time_ns: int, index: int = 0,
               uuid: str | None = None) -> RenderedKey:
        """The key for an object whose first record has ``first_time_ns``.

        ``$TAG[n]`` past the last part renders empty. The time conversions are applied to the
        format before the tokens are substituted, so a ``%`` in a tag stays as it is."""
        uid = uuid if uuid is not None else random_id()
        when = time.gmtime(first_time_ns // 1_000_000_000)
        text = time.strftime(self.fmt, when) if "%" in self.fmt else self.fmt
        parts: list[str] | None = None

        def sub(m: re.Match[str]) -> str:
            nonlocal parts
            token = m.group(0)
            if m.group(1) is not None:
                if parts is None:
                    parts = self.tag_parts(tag)
                n = int(m.group(1))
                return parts[n] if n < len(parts) else ""
            if token == "$TAG":
                return tag
            if token == "$UUID":
                return uid
            return str(index)

        key = _TOKEN.sub(sub, text)
        put_key = key
        if not self.has_uuid and not self.static_file_path:
            # Fluent Bit appends a random suffix to PutObject keys that have no $UUID, so that
            # two uploads within the same second do not overwrite each other.
            put_key = key + "-" + random_id()
        return RenderedKey(key, put_key)


def object_path(key: str) -> str:
    """The key as S3 stores it: Fluent Bit's formats start with '/', which is not part of
    the object's name (``/logs/a`` is stored as ``logs/a``)."""
    return key[1:] if key.startswith("/") else key
