"""Tag of a tailed file: ``*`` expansion and ``Tag_Regex`` (Fluent Bit's ``tag_compose``)."""

from __future__ import annotations

import re

from rillet.parsers.regex import compile_ruby


def expand_star(tag: str, path: str) -> str:
    """Replace the first ``*`` of ``tag`` with ``path``, then sanitize as Fluent Bit does.

    ``/``, ``\\`` and ``:`` become ``.`` (dropped at position 0), a ``.`` after a ``.`` is
    dropped, any other ``*`` is dropped, and a trailing ``.`` is removed:
    ``kube.*`` + ``/var/log/containers/a.log`` -> ``kube.var.log.containers.a.log``.
    A tag without ``*`` is returned unchanged.
    """
    star = tag.find("*")
    if star < 0:
        return tag
    raw = tag[:star] + path + tag[star + 1:]
    out: list[str] = []
    for ch in raw:
        if ch in "/\\:":
            if not out:
                continue
            ch = "."
        if ch == "." and out and out[-1] == ".":
            continue
        if ch == "*":
            continue
        out.append(ch)
    if out and out[-1] == ".":
        out.pop()
    return "".join(out)


class TagRegex:
    """``Tag_Regex``: named groups of a regex searched in the file path fill ``<name>`` slots."""

    def __init__(self, regex: str, template: str) -> None:
        self.rx: re.Pattern[str] = compile_ruby(regex)
        self.template = template
        # Split the template once: literal text and <name> slots.
        self.parts: list[tuple[bool, str]] = []
        pos = 0
        while True:
            beg = template.find("<", pos)
            if beg < 0:
                break
            if beg > pos:
                self.parts.append((False, template[pos:beg]))
            end = template.find(">", beg + 1)
            if end < 0 or "<" in template[beg + 1:end]:
                raise ValueError(f"tag: missing closing angle bracket in tag {template} at "
                                 f"position {beg}")
            self.parts.append((True, template[beg + 1:end]))
            pos = end + 1
        if pos < len(template):
            self.parts.append((False, template[pos:]))

    def compose(self, path: str) -> str | None:
        """The tag for ``path``, or None when the regex does not match it."""
        m = self.rx.search(path)
        if m is None:
            return None
        groups = {k: v for k, v in m.groupdict().items() if v}
        return "".join(groups.get(text, "_") if slot else text for slot, text in self.parts)
