"""Build parsers from settings, as a parsers file would define them."""

from __future__ import annotations

from rillet.config.model import Section
from rillet.config.options import resolve
from rillet.parsers.definitions import PARSER_OPTIONS, decode_order
from rillet.parsers.parser import Parser, build


def make_parser(**settings: str | list[str]) -> Parser:
    section = Section("parser", "p.conf", 1)
    settings.setdefault("name", "test")
    for key, value in settings.items():
        for v in value if isinstance(value, list) else [value]:
            section.set(key, v)
    errors: list[str] = []
    opts = resolve(section, PARSER_OPTIONS, errors, ignore=())
    assert errors == []
    opts["decode_order"] = decode_order(section)
    return build(opts)
