"""``${VAR}`` expansion (rillet.config.env)."""

from __future__ import annotations

import socket

import pytest

from rillet.config.env import expand, expand_entries
from rillet.config.model import Entry


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RT_A", "RT_B", "RT_EMPTY", "rt_a", "HOSTNAME"):
        monkeypatch.delenv(name, raising=False)


def test_config_variable_and_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_B", "from-env")
    warnings: list[str] = []
    assert expand("${RT_A}-${RT_B}", {"RT_A": "from-set"}, warnings) == "from-set-from-env"
    assert warnings == []


def test_config_variables_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_A", "env")
    assert expand("${RT_A}", {"RT_A": "set"}, []) == "set"


def test_unset_variable_is_empty_with_a_warning() -> None:
    warnings: list[str] = []
    assert expand("a${RT_A}b", {}, warnings) == "ab"
    assert warnings == ["[env] variable ${RT_A} is used but not set"]


def test_whole_value_unset_gives_empty_string() -> None:
    assert expand("${RT_A}", {}, []) == ""


def test_empty_process_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_EMPTY", "")
    warnings: list[str] = []
    assert expand("${RT_EMPTY}", {}, warnings) == ""
    assert warnings == ["[env] variable ${RT_EMPTY} is used but not set"]


def test_empty_config_variable_is_set() -> None:
    warnings: list[str] = []
    assert expand("x${RT_A}y", {"RT_A": ""}, warnings) == "xy"
    assert warnings == []


def test_default_when_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_EMPTY", "")
    warnings: list[str] = []
    assert expand("${RT_A:-dflt}", {}, warnings) == "dflt"
    assert expand("${RT_EMPTY:-dflt}", {}, warnings) == "dflt"
    assert expand("${RT_B:-dflt}", {"RT_B": ""}, warnings) == "dflt"
    assert expand("${RT_B:-dflt}", {"RT_B": "set"}, warnings) == "set"
    assert expand("${RT_A:-}", {}, warnings) == ""
    assert warnings == []


def test_names_are_case_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_A", "upper")
    warnings: list[str] = []
    assert expand("${rt_a}", {}, warnings) == ""
    assert warnings == ["[env] variable ${rt_a} is used but not set"]


def test_no_nesting() -> None:
    # The first '}' closes the variable: the default is the literal "${RT_B".
    assert expand("${RT_A:-${RT_B}}", {"RT_B": "b"}, []) == "${RT_B}"


def test_text_without_variables_is_unchanged() -> None:
    for text in ("plain", "$RT_A", "${", "${}", "a}b", "/^\\d{4}$/"):
        assert expand(text, {"RT_A": "x"}, []) == text


def test_several_variables_in_one_value() -> None:
    assert expand("${RT_A}/${RT_B}/${RT_A}", {"RT_A": "1", "RT_B": "2"}, []) == "1/2/1"


def test_hostname_preset_when_not_in_environment() -> None:
    assert expand("${HOSTNAME}", {}, []) == socket.gethostname()


def test_expand_entries_structured_values_and_located_warnings() -> None:
    rules = [{"state": "start_state", "regex": "/${RT_A}/", "next_state": "${RT_B}"}]
    entries = [Entry("rules", rules, "f.yaml", 7), Entry("tag", "${RT_B}", "f.yaml", 9)]
    warnings: list[str] = []
    expand_entries(entries, {"RT_A": "x"}, warnings)
    assert entries[0].value == [{"state": "start_state", "regex": "/x/", "next_state": ""}]
    assert entries[1].value == ""
    assert warnings == [
        "f.yaml:7: [env] variable ${RT_B} is used but not set",
        "f.yaml:9: [env] variable ${RT_B} is used but not set",
    ]
