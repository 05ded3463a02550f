"""File discovery: ``Path`` globs (comma list) minus ``Exclude_Path`` patterns.

``glob(3)`` with ``GLOB_TILDE``: ``~`` is expanded, no brace expansion, hidden files only when the
pattern names them. ``Exclude_Path`` uses ``fnmatch(3)`` with flags 0 on the full path, so ``*``
also matches ``/`` (``*.gz`` excludes every path ending in ``.gz``).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class Found:
    path: str  # as globbed (a symlink stays a symlink: the tag uses this name)
    dev: int
    ino: int
    size: int
    mtime: float


class Scanner:
    def __init__(self, patterns: Iterable[str], excludes: Iterable[str]) -> None:
        self.patterns = [os.path.expanduser(p.strip()) for p in patterns if p.strip()]
        ex = [e.strip() for e in excludes if e.strip()]
        self._exclude: re.Pattern[str] | None = None
        if ex:
            self._exclude = re.compile("|".join(f"(?:{fnmatch.translate(e)})" for e in ex))

    def excluded(self, path: str) -> bool:
        return self._exclude is not None and self._exclude.match(path) is not None

    def watch_dirs(self) -> list[str]:
        """Directories whose entries the patterns match, when they hold no wildcard."""
        out: list[str] = []
        for pattern in self.patterns:
            d = os.path.dirname(pattern) or "."
            if not glob.has_magic(d) and d not in out:
                out.append(d)
        return out

    def scan(self) -> list[Found]:
        """Every regular file matched now (following symlinks), in glob order, each once."""
        found: list[Found] = []
        seen: set[str] = set()
        for pattern in self.patterns:
            try:
                paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            except OSError:
                continue
            for path in paths:
                if path in seen or self.excluded(path):
                    continue
                seen.add(path)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                found.append(Found(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime))
        return found
