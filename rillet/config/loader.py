"""Public entry points: read a configuration file, then the parsers files it names.

The format follows the file name as in ``flb_cf_create_from_file``: ``.yaml``/``.yml`` (any
case) is YAML, anything else is classic. Parsers files are separate reads, as in Fluent Bit's
``flb_parser_conf_file``: a relative name is looked up from the working directory first, then
from the main configuration's directory; each may be classic or YAML by its own extension, and
it may only define parsers.
"""

from __future__ import annotations

import os

from rillet.config.classic import MAIN_KINDS, PARSER_KINDS, read_classic, resolve_from
from rillet.config.model import ConfigError, ConfigModel, Entry, entry_error
from rillet.config.yaml_reader import PARSER_KEYS, read_yaml

_YAML_SUFFIXES = (".yaml", ".yml")
_PARSERS_FILE = "a parsers file"


def is_yaml(path: str) -> bool:
    """Whether ``path`` is read as YAML (by its extension, case-insensitively)."""
    return path.lower().endswith(_YAML_SUFFIXES)


def load_config(path: str) -> ConfigModel:
    """Read the configuration ``path`` and every ``parsers_file`` of its service section.

    Raises :class:`ConfigError` listing every problem found.
    """
    if is_yaml(path):
        model = read_yaml(path)
    else:
        model = read_classic(path, allowed=MAIN_KINDS,
                             role="the main configuration file; they belong in a parsers_file")
    errors: list[str] = []
    for entry in [e for e in model.service.entries if e.key == "parsers_file"]:
        try:
            load_parsers_file(str(entry.value), model, origin=entry)
        except ConfigError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return model


def load_parsers_file(path: str, model: ConfigModel, origin: Entry | None = None) -> None:
    """Append the parsers and multiline parsers of ``path`` to ``model``.

    ``origin`` is the ``parsers_file`` entry that named the file (None for the CLI's ``-R``);
    errors about a missing file point at it.
    """
    resolved = _resolve(path, model)
    if not os.path.isfile(resolved):
        reason = f"cannot open parsers file '{path}': no such file"
        if origin is None:
            raise ConfigError(f"{path}: {reason}")
        raise ConfigError(entry_error(model.service, origin, origin.key, reason))
    if is_yaml(resolved):
        read_yaml(resolved, model, allowed=PARSER_KEYS, role=_PARSERS_FILE)
    else:
        read_classic(resolved, model, allowed=PARSER_KINDS, role=_PARSERS_FILE)


def _resolve(path: str, model: ConfigModel) -> str:
    """As given if it exists, else relative to the main configuration's directory."""
    if not model.files:
        return path
    return resolve_from(path, os.path.dirname(os.path.realpath(model.files[0])))
