"""Fluent Bit's value grammar: sizes, booleans, time periods.

Each function raises ``ValueError`` with a short reason; the option table turns it into a
``file:line: section: key: reason`` error.
"""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")
_SIZE_MULT = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}

TRUE_WORDS = frozenset({"true", "on", "yes"})
FALSE_WORDS = frozenset({"false", "off", "no"})


def parse_size(text: str) -> int:
    """``flb_utils_size_to_bytes``: decimal units (``5MB`` = 5,000,000, ``32k`` = 32,000).

    A bare number is bytes; ``K``/``KB``, ``M``/``MB``, ``G``/``GB`` in any case; fractions are
    allowed (``1.5M``); the literal ``false`` is 0.
    """
    value = text.strip()
    if value.lower() == "false":
        return 0
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(f"invalid size '{text}'")
    number, unit = m.group(1), m.group(2).lower()
    if len(unit) == 2:
        if unit[1] != "b":
            raise ValueError(f"invalid size unit in '{text}'")
        unit = unit[0]
    elif len(unit) > 2:
        raise ValueError(f"invalid size unit in '{text}'")
    if unit == "b":
        unit = ""
    if unit not in _SIZE_MULT:
        raise ValueError(f"invalid size unit in '{text}'")
    return int(float(number) * _SIZE_MULT[unit])


def parse_bool(text: str) -> bool:
    """``flb_utils_bool``: true/on/yes and false/off/no, case-insensitive."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"invalid boolean '{text}' (use on/off, true/false or yes/no)")


_TIME_RE = re.compile(r"^\s*([+-]?[0-9]+(?:\.[0-9]*)?)\s*([smhdSMHD]?)\s*$")
_TIME_MULT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str) -> float:
    """Time value with optional ``s``/``m``/``h``/``d`` suffix, in seconds.

    Fluent Bit reads the number with ``atoi`` (``1.5h`` is one hour); rillet keeps the fraction,
    which only matters for sub-second test settings.
    """
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f"invalid time '{text}' (a number with optional s, m, h or d)")
    return float(m.group(1)) * _TIME_MULT[m.group(2).lower()]


def parse_int(text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise ValueError(f"invalid integer '{text}'") from None


def parse_double(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"invalid number '{text}'") from None


def parse_clist(text: str) -> list[str]:
    """Comma-separated list, items trimmed, empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_slist(text: str) -> list[str]:
    """Space-separated list."""
    return text.split()
