"""``${VAR}`` expansion in configuration values, the way Fluent Bit does it (``flb_env.c``).

Both readers store raw values and expand them once, after the whole configuration (every
include) has been read: Fluent Bit registers every ``@SET`` and YAML ``env:`` variable before it
applies any property, so a variable may be used above the line that defines it.

Lookup order: configuration variables (``@SET`` / ``env:``), then the process environment
(where an empty value counts as unset, as in ``flb_env_get``), then the ``HOSTNAME`` preset.
An unset variable becomes the empty string and a warning. ``${VAR:-default}`` takes ``default``
when ``VAR`` is unset or empty. There is no nesting: ``${A:-${B}}`` is not supported.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from rillet.config.model import Entry, where

_VAR_RE = re.compile(r"\$\{([^}]*)\}")


def lookup(name: str, variables: Mapping[str, str]) -> str | None:
    """The value of variable ``name``, or None when it is not set."""
    if name in variables:
        return variables[name]
    value = os.environ.get(name)
    if value:
        return value
    if name == "HOSTNAME":
        return socket.gethostname()
    return None


def expand(value: str, variables: Mapping[str, str], warnings: list[str]) -> str:
    """Replace every ``${VAR}`` / ``${VAR:-default}`` in ``value``.

    Unset variables without a default become ``""`` and append
    ``[env] variable ${X} is used but not set`` to ``warnings``. ``${}`` is left as written.
    """

    def substitute(match: re.Match[str]) -> str:
        name, has_default, default = match.group(1).partition(":-")
        if not name:
            return match.group(0)
        found = lookup(name, variables)
        if has_default:
            return found if found else default
        if found is None:
            warnings.append(f"[env] variable ${{{name}}} is used but not set")
            return ""
        return found

    return _VAR_RE.sub(substitute, value)


def expand_any(value: Any, variables: Mapping[str, str], warnings: list[str]) -> Any:
    """:func:`expand` applied to a string, or to every string inside lists and dicts."""
    if isinstance(value, str):
        return expand(value, variables, warnings)
    if isinstance(value, list):
        return [expand_any(item, variables, warnings) for item in value]
    if isinstance(value, dict):
        return {key: expand_any(item, variables, warnings) for key, item in value.items()}
    return value


def expand_entries(entries: Iterable[Entry], variables: Mapping[str, str],
                   warnings: list[str]) -> None:
    """Expand entry values in place; each warning is prefixed with the entry's ``file:line``."""
    for entry in entries:
        found: list[str] = []
        entry.value = expand_any(entry.value, variables, found)
        for message in found:
            located = f"{where(entry.file, entry.line)}: {message}"
            if located not in warnings:
                warnings.append(located)
