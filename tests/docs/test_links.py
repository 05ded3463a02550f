"""Every relative link in README.md and docs/*.md reaches an existing file (and heading)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rillet.config.reference import heading_anchors

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

# [text](target) or ![alt](target "title"); the target stops at a space or ')'.
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+).*?\1")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto: ...


def links(markdown: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link outside fenced code and code spans."""
    out = []
    fenced = False
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            continue
        for m in _LINK.finditer(_CODE_SPAN.sub("", line)):
            out.append((number, m.group(1)))
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    own_anchors = heading_anchors(path.read_text(encoding="utf-8"))
    for number, target in links(path.read_text(encoding="utf-8")):
        if _EXTERNAL.match(target) or target.startswith("/"):
            continue
        file_part, _, fragment = target.partition("#")
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not file_part:
            if fragment not in own_anchors:
                problems.append(f"{where}: no heading with that anchor")
            continue
        dest = (path.parent / file_part).resolve()
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif fragment and dest.suffix == ".md" and \
                fragment not in heading_anchors(dest.read_text(encoding="utf-8")):
            problems.append(f"{where}: no heading with that anchor in {file_part}")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title here\n\n## Sub `x` part\n")
    doc = tmp_path / "docs" / "a.md"
    doc.write_text("# A\n\n[ok](b.md) [ok](b.md#sub-x-part) [ok](#a) [web](https://x.invalid/)\n"
                   "[gone](missing.md) [bad](b.md#nope) `[code](missing.md)` [self](#zz)\n"
                   "```\n[fenced](missing.md)\n```\n")
    assert broken_links(doc, tmp_path) == ["docs/a.md:4: missing.md: no such file",
                     "docs/a.md:4: b.md#nope: no heading with that anchor in b.md",
                     "docs/a.md:4: #zz: no heading with that anchor"]


def test_anchors_follow_github() -> None:
    text = "# Hot reload\n## `rillet top`\n## Hot reload\n```\n# not a heading\n```\n"
    assert heading_anchors(text) == {"hot-reload", "rillet-top", "hot-reload-1"}
