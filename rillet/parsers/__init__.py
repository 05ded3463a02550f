"""Parsers (json, regex, logfmt, ltsv, time formats, multiline)."""
