"""The parsers a pipeline knows: the built-in ones and the user's ``[PARSER]`` and
``[MULTILINE_PARSER]`` definitions (a user's definition overrides a built-in of the same name).

Plugins reach it as ``self.parsers`` (see :class:`rillet.engine.plugin.Plugin`) and look parsers
up by name while they are constructed, so an unknown name is a startup error.
Parser objects are built once per name and shared; they are stateless between calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rillet.config.options import Options

if TYPE_CHECKING:
    from rillet.parsers.multiline import MultilineParser
    from rillet.parsers.parser import Parser


class ParserRegistry:
    def __init__(self, parsers: dict[str, Options] | None = None,
                 multiline: dict[str, Options] | None = None) -> None:
        self._defs: dict[str, Options] = dict(parsers or {})
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
