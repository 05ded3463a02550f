"""The Dockerfile, checked statically (no Docker daemon runs here): pinned base image, multi-stage,
runtime dependencies only, every COPY source present and sent to the build, the AWS image's
paths, a numeric non-root user, compiled bytecode."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from packaging.requirements import Requirement

from tests.deploy.manifests import BASE_CONF, IMAGE_PARSERS, REPO_PARSERS, ROOT
from tests.deploy.runtime_lock import canonical, closure, pins

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONSTRAINTS = ROOT / "deploy" / "docker" / "constraints.txt"
CONFIG = "/fluent-bit/etc/fluent-bit.conf"
PINNED_PYTHON = re.compile(r"^python:\d+\.\d+\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?$")


@dataclass
class Instruction:
    op: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        op, _, args = (pending + line).partition(" ")
        result.append(Instruction(op.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return result


STEPS = instructions(DOCKERFILE.read_text())


def of(op: str) -> list[str]:
    return [i.args for i in STEPS if i.op == op]


def exec_form(args: str) -> list[str]:
    value = orjson.loads(args)
    assert isinstance(value, list)
    return [str(v) for v in value]


def build_args() -> dict[str, str]:
    found = {}
    for args in of("ARG"):
        name, _, default = args.partition("=")
        found[name] = default
    return found


def stages() -> list[tuple[str, str | None]]:
    """(image, stage name) of each FROM, with ARG defaults substituted."""
    defaults = build_args()
    result: list[tuple[str, str | None]] = []
    for args in of("FROM"):
        words = [w for w in args.split() if not w.startswith("--")]
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m[1] or m[2]], words[0])
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
        result.append((image, name))
    return result


def copies() -> list[tuple[list[str], str, str | None]]:
    """(sources, destination, --from stage) of every COPY/ADD."""
    result: list[tuple[list[str], str, str | None]] = []
    for step in STEPS:
        if step.op not in ("COPY", "ADD"):
            continue
        words = shlex.split(step.args)
        flags = {w.split("=", 1)[0]: w.split("=", 1)[-1] for w in words if w.startswith("--")}
        paths = [w for w in words if not w.startswith("--")]
        result.append((paths[:-1], paths[-1], flags.get("--from")))
    return result


def _pattern(glob: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out += ".*"
            i += 2
        elif glob[i] == "*":
            out += "[^/]*"
            i += 1
        elif glob[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(glob[i])
            i += 1
    return re.compile(out + r"\Z")


def ignored(path: str, rules: list[str]) -> bool:
    """Whether .dockerignore ``rules`` keep ``path`` out of the build context (the last matching
    rule wins; a rule matching a parent folder matches the path)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = _pattern(rule.lstrip("!").strip("/"))
        if any(pattern.match(c) for c in candidates):
            result = not negate
    return result


def dockerignore_rules() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_matcher() -> None:
    rules = ["*", "!rillet/", "!deploy/docker/constraints.txt", "**/__pycache__"]
    assert ignored("tests/x.py", rules) and ignored("deploy/kubernetes/base/x", rules)
    assert not ignored("rillet/cli.py", rules)
    assert not ignored("deploy/docker/constraints.txt", rules)
    assert ignored("rillet/__pycache__/cli.pyc", rules)


def test_base_image_is_pinned_and_multi_stage() -> None:
    found = stages()
    assert len(found) >= 2, "build and runtime stages"
    names = {name for _, name in found if name}
    for image, _ in found:
        assert image in names or PINNED_PYTHON.match(image), image
        assert "latest" not in image
    assert PINNED_PYTHON.match(found[-1][0]), "the runtime stage starts from the pinned base"
    # The runtime stage takes the built environment from the build stage, not a compiler.
    assert any(src == ["/opt/rillet"] and stage in names for src, _, stage in copies())


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    rules = dockerignore_rules()
    for sources, _, stage in copies():
        if stage is not None:
            continue
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not ignored(source.rstrip("/"), rules), f"{source} is in .dockerignore"
    assert not ignored("Dockerfile", rules)


def test_runtime_requirements_only() -> None:
    runs = " ".join(of("RUN"))
    installs = [c for c in runs.split("&&") if "pip install" in c]
    assert any("-r requirements.txt" in c and "-c constraints.txt" in c for c in installs)
    assert "requirements-dev" not in DOCKERFILE.read_text()
    assert any("--no-deps" in c and c.rstrip().endswith(" .") for c in installs)
    runtime = pins(ROOT / "requirements.txt")
    requirement_lines = [line.split("#", 1)[0].strip()
                         for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert all("==" in line for line in requirement_lines if line), "exact pins only"
    dev_only = set(pins(ROOT / "requirements-dev.txt")) - set(runtime)
    assert dev_only, "requirements-dev.txt pins the test tools"
    constrained = pins(CONSTRAINTS)
    assert not dev_only & set(constrained), "a development dependency in the image"
    assert all("requirements-dev.txt" not in sources for sources, _, _ in copies())


def test_constraints_pin_the_whole_runtime_closure() -> None:
    constrained = pins(CONSTRAINTS)
    lines = [line for line in CONSTRAINTS.read_text().splitlines()
             if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[\w.-]+==[\w.+-]+", line) for line in lines)
    runtime = pins(ROOT / "requirements.txt")
    for name, version in runtime.items():
        assert constrained.get(name) == version, \
            f"{name}: requirements.txt pins {version}, constraints {constrained.get(name)}"
    hint = "regenerate: .venv/bin/python -m tests.deploy.runtime_lock > " \
           "deploy/docker/constraints.txt"
    installed = closure(list(runtime))
    assert set(installed) == set(constrained), hint
    # Where this environment has a package at the constrained version, what it requires is
    # satisfied by the constrained versions (the image installs exactly those).
    from importlib.metadata import distribution

    for name, version in constrained.items():
        if installed[name] != version:
            continue
        for text in distribution(name).requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = canonical(req.name)
            assert req.specifier.contains(constrained[dep], prereleases=True), \
                f"{name} {version} requires {req}; constraints pin {constrained[dep]}. {hint}"


def test_aws_image_paths_and_entrypoint() -> None:
    targets = {dest: (sources, stage) for sources, dest, stage in copies()}
    assert targets[IMAGE_PARSERS] == ([str(REPO_PARSERS.relative_to(ROOT))], None)
    config_sources, _ = targets[CONFIG]
    assert [ROOT / s for s in config_sources] == [BASE_CONF]
    entrypoint = exec_form(of("ENTRYPOINT")[-1])
    assert entrypoint == ["/fluent-bit/bin/entrypoint.sh"]
    assert targets[entrypoint[0]] == (["deploy/docker/entrypoint.sh"], None)
    assert exec_form(of("CMD")[-1]) == ["-c", CONFIG]
    links = re.findall(r"ln -s\s+(\S+)\s+(\S+)", " ".join(of("RUN")))
    assert ("/opt/rillet/bin/rillet", "/fluent-bit/bin/fluent-bit") in links


@pytest.mark.parametrize("argv", [
    ["-c", "{conf}", "--dry-run"],
    ["/fluent-bit/bin/fluent-bit", "-c", "{conf}", "--dry-run"],      # an ECS command for AWS's
    ["/fluent-bit/bin/fluent-bit", "-e", "/fluent-bit/cloudwatch.so", "-c", "{conf}", "-D"],
])
def test_entrypoint_runs_rillet_and_drops_a_leading_fluent_bit_binary(
        argv: list[str], tmp_path: Path) -> None:
    script = ROOT / "deploy/docker/entrypoint.sh"
    assert os.access(script, os.X_OK)
    conf = tmp_path / "f.conf"
    conf.write_text("[INPUT]\n    Name dummy\n[OUTPUT]\n    Name null\n    Match *\n")
    env = {**os.environ, "RILLET_BIN": str(Path(sys.executable).with_name("rillet"))}
    res = subprocess.run([str(script), *[a.replace("{conf}", str(conf)) for a in argv]],
                         env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "configuration test is successful" in res.stdout


def test_numeric_non_root_user_and_port() -> None:
    user = of("USER")[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), "a numeric uid (runAsNonRoot can verify it)"
    assert all(int(part) != 0 for part in user.split(":"))
    port = re.search(r"^\s*HTTP_Port\s+(\d+)", BASE_CONF.read_text(), re.M)
    assert port is not None
    assert of("EXPOSE") == [port[1]]


def test_bytecode_is_compiled_at_build_time() -> None:
    runs = " ".join(of("RUN"))
    assert "compileall" in runs
    env = " ".join(of("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
