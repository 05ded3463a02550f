"""The generated configuration reference: committed, complete, and checked for staleness."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rillet.config import reference
from rillet.config.options import Option, T
from rillet.engine import plugin as plugins

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "configuration.md"
KINDS = {"input": "rillet.inputs", "filter": "rillet.filters", "output": "rillet.outputs"}


@pytest.fixture(scope="module")
def text() -> str:
    return reference.render()


def sections(text: str) -> dict[str, str]:
    """Each '### ' heading -> the text up to the next heading."""
    parts = re.split(r"^#{2,3} (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def row_of(body: str, name: str) -> list[str] | None:
    """The cells of the table row of option ``name`` (split on unescaped '|')."""
    for line in body.splitlines():
        if line.startswith(f"| `{name}`"):
            return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    return None


def test_committed_reference_is_current(text: str) -> None:
    assert COMMITTED.read_text(encoding="utf-8") == text, (
        f"docs/configuration.md is stale: run `{reference.COMMAND}`")


def test_render_is_deterministic(text: str) -> None:
    assert reference.render() == text
    assert text.startswith("# Configuration reference\n")
    assert reference.COMMAND in text.split("## Contents")[0]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_registered_name_appears(text: str, kind: str) -> None:
    found = sections(text)
    modules: dict[str, str] = importlib.import_module(KINDS[kind]).MODULES
    assert modules
    for name in modules:
        cls = plugins.lookup(kind, name)
        assert cls is not None
        body = found.get(f"`{cls.name}` {kind}")
        assert body is not None, f"no section for {kind} {cls.name}"
        if name != cls.name:
            also = next(line for line in body.splitlines() if line.startswith("Also named"))
            assert f"`{name}`" in also
        assert f"[`{cls.name}` {kind}](#{reference.anchor(f'`{cls.name}` {kind}')})" in text


def _expect_row(body: str, opt: Option) -> None:
    cells = row_of(body, opt.name)
    assert cells is not None, f"option {opt.name} missing"
    assert len(cells) == 4
    if opt.default is None:
        assert cells[2] == ""
    else:
        assert cells[2] == f"`{opt.default.replace('|', chr(92) + '|')}`"
    assert cells[1].startswith(opt.type.value)


@pytest.mark.parametrize(("kind", "name"), [("input", "tail"), ("filter", "kubernetes"),
                                            ("output", "cloudwatch_logs"), ("output", "s3")])
def test_every_option_appears_with_its_default(text: str, kind: str, name: str) -> None:
    cls = plugins.lookup(kind, name)
    assert cls is not None
    found = sections(text)
    body = found[f"`{name}` {kind}"]
    common = found[f"Options every {kind} takes"]
    table = plugins.full_table(cls)
    assert len(table) > len(plugins.COMMON[kind])
    for opt in table:
        _expect_row(body if opt not in plugins.COMMON[kind] else common, opt)


def test_service_and_parser_tables(text: str) -> None:
    from rillet.engine.service import SERVICE_OPTIONS
    from rillet.parsers.definitions import MULTILINE_OPTIONS, PARSER_OPTIONS

    found = sections(text)
    for opt in SERVICE_OPTIONS:
        _expect_row(found["Storage" if opt.name.startswith("storage.") else "Service"], opt)
    for opt in PARSER_OPTIONS:
        _expect_row(found["`[PARSER]`"], opt)
    for opt in MULTILINE_OPTIONS:
        _expect_row(found["`[MULTILINE_PARSER]`"], opt)
    order = [m.group(1) for m in re.finditer(r"^## (.+)$", text, flags=re.M)]
    assert order == ["Contents", "Service", "Inputs", "Parsers", "Filters", "Outputs"]


def test_go_names_point_to_their_c_plugin_table(text: str) -> None:
    found = sections(text)
    assert "[`kinesis_streams` output](#kinesis_streams-output)" in found["`kinesis` output"]
    assert "[`kinesis_firehose` output](#kinesis_firehose-output)" in found["`firehose` output"]
    assert "milliseconds" in found["`kinesis` output"]


def test_every_table_row_has_four_cells(text: str) -> None:
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) > 300
    for line in rows:
        assert len(re.split(r"(?<!\\)\|", line)) == 6, line


def test_cells_escape_markdown() -> None:
    opt = Option("a|b", T.STR, "x|y", "keys like <name> or *glob* | _id", prefix=True,
                 choices=("on", "off"))
    row = reference.table([opt])[2]
    assert row == ("| `a\\|b`*N* | string, prefix | `x\\|y` | keys like &lt;name&gt; or "
                   "\\*glob\\* \\| \\_id; one of: `on`, `off` |")
    assert reference.table([]) == ["No options of its own."]


def test_check_write_and_print(tmp_path: Path, text: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "configuration.md"
    assert reference.main(["--write", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == text
    assert reference.main(["--check", str(path)]) == 0
    path.write_text(text.replace("| `tail` |", "| `tail2` |", 1) + "\n", encoding="utf-8")
    assert reference.main(["--check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "is stale" in err and f"--write {path}" in err
    assert reference.main(["--check", str(tmp_path / "missing.md")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert reference.main([]) == 0
    assert capsys.readouterr().out == text


def test_module_runs_as_a_command(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(COMMITTED.read_text(encoding="utf-8").replace("`24224`", "`24225`"))
    cmd = [sys.executable, "-m", "rillet.config.reference"]
    bad = subprocess.run([*cmd, "--check", str(stale)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert bad.returncode == 1 and "is stale" in bad.stderr
    good = subprocess.run([*cmd, "--check", str(COMMITTED)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert good.returncode == 0, good.stderr
