"""Fluent Bit's value grammar (reference §1a: unit sizes, booleans, time values)."""

import pytest

from rillet.config import values


@pytest.mark.parametrize(("text", "expected"), [
    ("5MB", 5_000_000), ("5M", 5_000_000), ("5mb", 5_000_000), ("32k", 32_000),
    ("32KB", 32_000), ("1G", 1_000_000_000), ("1.5M", 1_500_000), ("32768", 32_768),
    ("0", 0), ("false", 0), (" 2 MB ", 2_000_000), ("100b", 100),
])
def test_sizes_are_decimal(text: str, expected: int) -> None:
    assert values.parse_size(text) == expected


@pytest.mark.parametrize("text", ["5MiB", "5X", "5MX", "", "MB", "-"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        values.parse_size(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("on", True), ("On", True), ("yes", True), ("TRUE", True),
    ("off", False), ("no", False), ("False", False),
])
def test_booleans(text: str, expected: bool) -> None:
    assert values.parse_bool(text) is expected


@pytest.mark.parametrize("text", ["1", "0", "enabled", "", "y"])
def test_bad_booleans(text: str) -> None:
    with pytest.raises(ValueError, match="invalid boolean"):
        values.parse_bool(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("10", 10), ("10s", 10), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1D", 86400),
    ("0.5", 0.5),
])
def test_time_values(text: str, expected: float) -> None:
    assert values.parse_time(text) == expected


@pytest.mark.parametrize("text", ["10x", "m", "", "1 hour"])
def test_bad_time_values(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time"):
        values.parse_time(text)


def test_lists() -> None:
    assert values.parse_clist(" a, b ,,c ") == ["a", "b", "c"]
    assert values.parse_slist("a  b\tc") == ["a", "b", "c"]
