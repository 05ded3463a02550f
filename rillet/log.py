"""Log lines in Fluent Bit's style, on stderr.

``[2026/11/28 10:00:00] [ info] [engine] started`` -- the component in the last brackets is
``engine``, ``config``, or ``input:tail:tail.0`` for a plugin instance.
"""

from __future__ import annotations

import logging
import sys
import time

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

# Fluent Bit's level names -> Python levels. "off" silences everything.
LEVELS = {
    "off": logging.CRITICAL + 10,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
LEVEL_CHOICES = ("off", "error", "warn", "warning", "info", "debug", "trace")

_TAGS = {
    logging.CRITICAL: "error",
    logging.ERROR: "error",
    logging.WARNING: " warn",
    logging.INFO: " info",
    logging.DEBUG: "debug",
    TRACE: "trace",
}

ROOT = "rillet"


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
        level = _TAGS.get(record.levelno, record.levelname.lower())
        component = record.name[len(ROOT) + 1:] if record.name.startswith(ROOT + ".") else "engine"
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return f"[{stamp}] [{level}] [{component}] {text}"


_handler: logging.Handler | None = None


def setup(level: str = "info", stream: object = None, path: str | None = None) -> None:
    """Install the stderr (or ``Log_File``) handler on the ``rillet`` logger."""
    global _handler
    root = logging.getLogger(ROOT)
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    handler: logging.Handler = (logging.FileHandler(path) if path else
                                logging.StreamHandler(stream or sys.stderr))  # type: ignore[arg-type]
    handler.setFormatter(_Formatter())
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    root.propagate = False
    _handler = handler


def get(component: str, level: str | None = None) -> logging.Logger:
    """Logger for a component such as ``engine`` or ``input:tail:tail.0``; ``level`` overrides."""
    logger = logging.getLogger(f"{ROOT}.{component}")
    if level:
        logger.setLevel(LEVELS[level.lower()])
    return logger

