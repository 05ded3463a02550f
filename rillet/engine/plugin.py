"""The three plugin interfaces and the registry.

- An :class:`Input` produces batches through its :class:`InputContext` and may learn, through
  :meth:`Input.on_ack`, when the records of each batch are final (delivered or given up on).
- A :class:`Filter` maps a batch to a batch, in one tight loop.
- An :class:`Output` delivers a chunk and answers OK / RETRY / ERROR for the whole chunk or per
  record range (:class:`Partial`).

Each plugin module declares its options as a table (``options``); the engine owns scheduling,
routing, retries, buffering, acks and metrics.
"""

from __future__ import annotations

import enum
import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from rillet.config.options import Option, Options, OptionTable, T
from rillet.log import LEVEL_CHOICES

if TYPE_CHECKING:
    from rillet.engine.chunk import Batch, Chunk
    from rillet.engine.metrics import Counters
    from rillet.parsers.registry import ParserRegistry


class Status(enum.IntEnum):
    OK = 0
    RETRY = 1
    ERROR = 2


@dataclass
class Partial:
    """Per-record-range outcome of a flush: ``(start, stop, status, reason)`` segments.

    Records not covered by any segment count as OK. ``reason`` explains ERROR segments in logs.
    """

    segments: list[tuple[int, int, Status, str]] = field(default_factory=list)

    def add(self, start: int, stop: int, status: Status, reason: str = "") -> Partial:
        if stop > start:
            self.segments.append((start, stop, status, reason))
        return self


FlushResult = Status | Partial


class Plugin:
    """Common part of every plugin: its name, description and option table."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    options: ClassVar[OptionTable] = ()

    def __init__(self, instance: str, opts: Options, log: logging.Logger,
                 counters: Counters, parsers: ParserRegistry | None = None) -> None:
        """Check option combinations here and raise ``ValueError`` with a reason: that is a
        configuration error reported at startup and by ``--dry-run``.

        ``parsers`` holds the pipeline's parser definitions (built-in and the user's); look up
        the parsers an instance names here, so that an unknown name fails at startup."""
        self.instance = instance
        self.opts = opts
        self.log = log
        self.counters = counters
        if parsers is None:
            from rillet.parsers.registry import ParserRegistry
            parsers = ParserRegistry()
        self.parsers = parsers


class InputContext:
    """What the engine gives an input: a way to emit batches, and backpressure."""

    async def emit(self, batch: Batch) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    async def wait_resumed(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def paused(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def request_exit(self) -> None:  # pragma: no cover - interface
        """Ask the engine to shut down once everything read so far is delivered."""
        raise NotImplementedError


class Input(Plugin):
    kind = "input"

    async def run(self, ctx: InputContext) -> None:
        """Produce batches until cancelled (or until done: returning is fine)."""
        raise NotImplementedError

    def on_ack(self, token: Any, complete: bool) -> None:
        """The records of the batch carrying ``token`` are final for every output that matched.

        ``complete`` is False when some of the chunk's records were given up on (errors or
        retries exhausted; counted in the outputs' metrics). Either way they will not be sent
        again, so an input may advance its offsets past them."""

    async def stop(self) -> None:
        """Release resources after ``run`` has ended."""


class Filter(Plugin):
    kind = "filter"
    # A filter that keeps records between batches (multiline) sets this. The engine then hands
    # it each batch's ack token wrapped in a shareable ``chunk.AckRef``, calls ``tick()`` on
    # every flush tick and ``tick(final=True)`` once when the inputs have stopped.
    holds_records: ClassVar[bool] = False

    def filter(self, batch: Batch) -> Batch:
        """Return the batch to pass on (the same object, a changed one, or an empty one)."""
        raise NotImplementedError

    def tick(self, final: bool = False) -> list[Batch]:
        """Records released by time (every held record when ``final``), as batches that go on
        through the filters after this one."""
        return []

    async def start(self) -> None:
        """Connect to what the filter needs (called once before inputs start)."""

    async def stop(self) -> None:
        """Release resources."""


class Output(Plugin):
    kind = "output"
    # Fluent Bit's per-plugin default for `workers`.
    default_workers: ClassVar[int] = 1

    async def start(self) -> None:
        """Open connections or files (called once before inputs start)."""

    async def flush(self, chunk: Chunk) -> FlushResult:
        raise NotImplementedError

    async def stop(self) -> None:
        """Flush and close (called once after the last delivery)."""


# --- options every instance of a kind takes -------------------------------------------------

COMMON_INPUT: tuple[Option, ...] = (
    Option("tag", T.STR, None, "tag of the records; defaults to the instance name (e.g. dummy.0)"),
    Option("alias", T.STR, None, "name of the instance in logs and metrics"),
    Option("log_level", T.STR, None, "log level of this instance", choices=LEVEL_CHOICES),
    Option("mem_buf_limit", T.SIZE, "0", "pause the input while this many bytes are in flight "
           "(0 = no limit)"),
    Option("storage.type", T.STR, "memory", "where chunks are buffered: memory, filesystem "
           "(on disk before the input is acknowledged) or overflow (rillet: in memory, spilled "
           "to disk only under backpressure); the last two need storage.path",
           choices=("memory", "filesystem", "overflow")),
    Option("storage.pause_on_chunks_overlimit", T.BOOL, "off", "filesystem: pause the input "
           "instead of keeping chunks only on disk once storage.max_chunks_up are in memory"),
    Option("storage.spill_threshold", T.SIZE, "8M", "overflow (rillet): spill new chunks to "
           "disk while the input has this many bytes waiting for outputs"),
)
COMMON_FILTER: tuple[Option, ...] = (
    Option("match", T.STR, None, "tag pattern of the records to filter ('*' matches anything)"),
    Option("match_regex", T.STR, None, "regular expression on the tag, anchored at the start"),
    Option("alias", T.STR, None, "name of the instance in logs and metrics"),
    Option("log_level", T.STR, None, "log level of this instance", choices=LEVEL_CHOICES),
)
COMMON_OUTPUT: tuple[Option, ...] = (
    Option("match", T.STR, None, "tag pattern of the records to deliver ('*' matches anything)"),
    Option("match_regex", T.STR, None, "regular expression on the tag, anchored at the start"),
    Option("alias", T.STR, None, "name of the instance in logs and metrics"),
    Option("log_level", T.STR, None, "log level of this instance", choices=LEVEL_CHOICES),
    Option("retry_limit", T.STR, "1", "retries per chunk: a number, no_limits/false/off "
           "(unlimited) or no_retries"),
    Option("workers", T.INT, None, "concurrent flushes for this output"),
    Option("storage.total_limit_size", T.SIZE, None, "disk budget of the chunk files this "
           "output still owes (none = unlimited)"),
    Option("storage.total_limit_action", T.STR, "pause", "when the budget is full: pause the "
           "inputs (rillet) or drop_oldest waiting chunks (Fluent Bit)",
           choices=("pause", "drop_oldest")),
)
COMMON = {"input": COMMON_INPUT, "filter": COMMON_FILTER, "output": COMMON_OUTPUT}


def full_table(cls: type[Plugin]) -> tuple[Option, ...]:
    """The plugin's own options followed by the ones every plugin of its kind takes."""
    own = tuple(cls.options)
    names = {o.name for o in own}
    return own + tuple(o for o in COMMON[cls.kind] if o.name not in names)


# --- registry -------------------------------------------------------------------------------

_REGISTRY: dict[str, dict[str, type[Plugin]]] = {"input": {}, "filter": {}, "output": {}}


def register(cls: type[Plugin]) -> type[Plugin]:
    """Class decorator: make a plugin known under its name and aliases."""
    table = _REGISTRY[cls.kind]
    for name in (cls.name, *cls.aliases):
        table[name] = cls
    return cls


def lookup(kind: str, name: str) -> type[Plugin] | None:
    name = name.lower()
    cls = _REGISTRY[kind].get(name)
    if cls is None:
        module = _modules(kind).get(name)
        if module is None:
            return None
        importlib.import_module(module)  # its @register fills the registry
        cls = _REGISTRY[kind].get(name)
    return cls


def names(kind: str) -> Sequence[str]:
    """Every plugin name (and alias) of a kind, built in or registered by other code."""
    return sorted(set(_modules(kind)) | set(_REGISTRY[kind]))


def _modules(kind: str) -> dict[str, str]:
    """The built-in plugins of a kind: name -> module (imported on first use only, so that a
    pipeline loads only the plugins it names)."""
    package = importlib.import_module(_PACKAGES[kind])
    modules: dict[str, str] = package.MODULES
    return modules


_PACKAGES = {"input": "rillet.inputs", "filter": "rillet.filters", "output": "rillet.outputs"}
