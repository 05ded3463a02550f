"""Fluent Bit's tag matching.

``Match``: byte-wise, case-sensitive; ``*`` matches any sequence, dots included (``**`` is the
same as ``*``); no other wildcards. ``Match_Regex``: anchored at the start only. When both are
set, the regex is tried first, then the pattern.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rillet.parsers.regex import compile_ruby


def match_pattern(pattern: str, tag: str) -> bool:
    """``router_match``: glob with ``*`` only."""
    return _compile(pattern).match(tag) is not None


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in re.split(r"\*+", pattern)]
    return re.compile(".*".join(parts) + r"\Z", re.DOTALL)


class Matcher:
    """A plugin instance's Match / Match_Regex rule."""

    __slots__ = ("_rx", "pattern", "regex")

    def __init__(self, pattern: str | None, regex: str | None) -> None:
        self.pattern = pattern
        self.regex = regex
        # A Match_Regex pattern is Onigmo (Ruby) syntax, anchored at the start only
        # (onig_match at 0). Raises RegexError (a ValueError) when it cannot be translated.
        self._rx = compile_ruby(regex) if regex else None

    def __call__(self, tag: str) -> bool:
        if self._rx is not None and self._rx.match(tag):
            return True
        if self.pattern is not None:
            return match_pattern(self.pattern, tag)
        return False

    @property
    def empty(self) -> bool:
        return self.pattern is None and self.regex is None
