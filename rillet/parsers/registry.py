"""The parsers a pipeline knows: the built-in ones and the user's ``[PARSER]`` and
``[MULTILINE_PARSER]`` definitions (a user's definition overrides a built-in of the same name).

Plugins reach it as ``self.parsers`` (see :class:`rillet.engine.plugin.Plugin`) and look parsers
up by name while they are constructed, so an unknown name is a startup error.
Parser objects are built once per name and shared; they are stateless between calls.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from rillet.config.options import Options

if TYPE_CHECKING:
    from rillet.parsers.multiline import MultilineParser
    from rillet.parsers.parser import Parser


BUILTIN_FILE = os.path.join(os.path.dirname(__file__), "builtin", "parsers.conf")


@functools.cache
def builtin_definitions() -> dict[str, Options]:
    """The parsers of the shipped ``builtin/parsers.conf`` (Fluent Bit's ``conf/parsers.conf``),
    resolved and validated once per process (their regexes compile when first used; the test
    suite compiles every one)."""
    from rillet.config.classic import PARSER_KINDS, read_classic
    from rillet.parsers import definitions

    model = read_classic(BUILTIN_FILE, allowed=PARSER_KINDS, role="a parsers file")
    errors: list[str] = []
    parsers, _ = definitions.validate(model, errors, compile_regexes=False)
    if errors:  # pragma: no cover - the shipped file is tested
        raise RuntimeError("built-in parsers file is invalid: " + "; ".join(errors))
    return parsers


def builtin_names() -> list[str]:
    return sorted(builtin_definitions())


class ParserRegistry:
    def __init__(self, parsers: dict[str, Options] | None = None,
                 multiline: dict[str, Options] | None = None,
                 multiline_buffer_limit: int = 2_000_000) -> None:
        # The service's multiline_buffer_limit: the largest message a multiline parser builds.
        self.multiline_buffer_limit = multiline_buffer_limit
        # The built-in parsers first; the user's definitions add to them and override by name.
        self._defs: dict[str, Options] = {**builtin_definitions(), **(parsers or {})}
        self._ml_defs: dict[str, Options] = dict(multiline or {})
        self._built: dict[str, Parser] = {}
        self._ml_built: dict[str, MultilineParser] = {}

    def names(self) -> list[str]:
        return sorted(self._defs)

    def multiline_names(self) -> list[str]:
        from rillet.parsers.multiline import BUILTIN_NAMES
        return sorted(set(self._ml_defs) | set(BUILTIN_NAMES))

    def __contains__(self, name: str) -> bool:
        return name in self._defs

    def get(self, name: str) -> Parser | None:
        """The parser called ``name``, or None when none is defined."""
        parser = self._built.get(name)
        if parser is None:
            opts = self._defs.get(name)
            if opts is None:
                return None
            from rillet.parsers.parser import build
            parser = self._built[name] = build(opts)
        return parser

    def multiline(self, name: str) -> MultilineParser | None:
        """The multiline parser called ``name`` (user-defined or built-in), or None."""
        parser = self._ml_built.get(name)
        if parser is None:
            from rillet.parsers import multiline
            opts = self._ml_defs.get(name)
            if opts is not None:
                parser = multiline.build(opts, self)
            else:
                parser = multiline.builtin(name, self)
                if parser is None:
                    return None
            self._ml_built[name] = parser
        return parser
