"""The plugin registry: built-in plugins are imported only when named, and each module listed for
a name registers exactly that name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rillet.engine import plugin


@pytest.mark.parametrize("kind", ["input", "filter", "output"])
def test_every_listed_module_registers_its_names(kind: str) -> None:
    for name in plugin.names(kind):
        cls = plugin.lookup(kind, name)
        assert cls is not None, name
        assert cls.kind == kind
        assert name in (cls.name, *cls.aliases)


def test_unknown_plugin() -> None:
    assert plugin.lookup("output", "nope") is None


def test_a_pipeline_without_aws_outputs_never_imports_botocore() -> None:
    code = ("import sys\n"
            "from rillet.engine import plugin\n"
            "assert plugin.lookup('input', 'tail') and plugin.lookup('output', 'null')\n"
            "print(sorted(m for m in ('botocore', 'aiohttp') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
