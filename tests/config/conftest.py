"""Fixtures for the configuration reader tests: real files in a temporary directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from rillet.config.model import Section

Write = Callable[[str, "str | bytes"], str]


@pytest.fixture
def root(tmp_path: Path) -> str:
    """The temporary directory with symlinks resolved, as the readers report paths."""
    return os.path.realpath(tmp_path)


@pytest.fixture
def write(root: str) -> Write:
    """Write ``text`` (exactly, no newline translation) to ``name``; return its path."""

    def _write(name: str, text: str | bytes) -> str:
        path = Path(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode() if isinstance(text, str) else text
        path.write_bytes(data)
        return str(path)

    return _write


def pairs(section: Section) -> list[tuple[str, object]]:
    return [(e.key, e.value) for e in section.entries]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RT_TAG", "RT_UNSET", "RT_X"):
        monkeypatch.delenv(name, raising=False)
