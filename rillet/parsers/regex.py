"""Fluent Bit's regexes are Onigmo (Ruby syntax); rillet runs them on Python's ``re``.

:func:`translate` rewrites the Ruby constructs that ``re`` spells differently, keeping their
meaning, and :func:`compile_ruby` compiles the result:

- the ``/pattern/opts`` form: the slashes go, ``i`` -> IGNORECASE, ``m`` (Ruby: dot matches a
  newline) -> DOTALL, ``x`` -> VERBOSE, ``o`` ignored;
- ``(?<name>...)`` -> ``(?P<name>...)`` (look-behind ``(?<=``/``(?<!`` untouched);
- ``\\h`` / ``\\H`` (hex digit) -> ``[0-9a-fA-F]`` / ``[^0-9a-fA-F]``;
- Ruby's ``\\z`` -> ``\\Z`` (end of string), Ruby's ``\\Z`` -> ``(?=\\n?\\Z)``;
- ``^`` and ``$`` are line anchors in Ruby: patterns compile with MULTILINE.

Atomic groups and possessive quantifiers exist in ``re`` since 3.11. A construct with no
equivalent (``\\G``, ``\\K``, ``(?~...)``, ``\\p{...}`` classes, conditionals on names) raises
:class:`RegexError` naming it.
"""

from __future__ import annotations

import re


class RegexError(ValueError):
    pass


_UNSUPPORTED = (
    (r"\G", "\\G (match start anchor)"),
    (r"\K", "\\K (keep)"),
    (r"\p{", "\\p{...} (Unicode property)"),
    (r"\P{", "\\P{...} (Unicode property)"),
    (r"\R", "\\R (linebreak)"),
    (r"\X", "\\X (extended grapheme)"),
)

_SLASH_FORM = re.compile(r"\A/(?P<body>.*)/(?P<opts>[imxo]*)\Z", re.DOTALL)


def translate(pattern: str) -> tuple[str, int]:
    """Ruby regex text -> (Python regex text, re flags)."""
    flags = re.MULTILINE
    m = _SLASH_FORM.match(pattern)
    if m:
        pattern = m.group("body")
        for opt in m.group("opts"):
            flags |= {"i": re.IGNORECASE, "m": re.DOTALL, "x": re.VERBOSE, "o": 0}[opt]
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            pair = pattern[i:i + 2]
            for token, name in _UNSUPPORTED:
                if pattern.startswith(token, i):
                    raise RegexError(f"unsupported construct {name}")
            nxt = pattern[i + 1]
            if nxt == "h":
                out.append("0-9a-fA-F" if in_class else "[0-9a-fA-F]")
            elif nxt == "H":
                if in_class:
                    raise RegexError("unsupported construct \\H inside a character class")
                out.append("[^0-9a-fA-F]")
            elif nxt == "z" and not in_class:
                out.append(r"\Z")
            elif nxt == "Z" and not in_class:
                out.append(r"(?=\n?\Z)")
            else:
                out.append(pair)
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            # A ']' right after '[' or '[^' is a literal member.
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):
                out.append("]")
                i += 1
            continue
        if pattern.startswith("(?~", i):
            raise RegexError("unsupported construct (?~...) (absent operator)")
        if pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out), flags


def compile_ruby(pattern: str) -> re.Pattern[str]:
    """Compile a Fluent Bit (Onigmo) regex with Python's ``re``; RegexError explains failures."""
    text, flags = translate(pattern)
    try:
        return re.compile(text, flags)
    except re.error as exc:
        raise RegexError(f"invalid regular expression: {exc}") from None
