"""Records, batches and chunks.

A record is a nanosecond timestamp plus a body. A body is either a ``dict`` or ``bytes`` holding
the record's JSON object text exactly as it will be written: inputs and filters that did not need
to look inside a record keep it serialized, and outputs splice it in untouched.

Records travel column-wise: a :class:`Batch` holds ``times`` and ``bodies`` lists of equal length,
all with one tag. Inputs emit batches, filters map a batch to a batch, and the engine appends
batches to :class:`Chunk` objects that it routes to outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

Body = dict[str, Any] | bytes

_dumps = orjson.dumps
_loads = orjson.loads
_Fragment = orjson.Fragment


def body_json(body: Body) -> bytes:
    """A body's JSON object text."""
    return body if type(body) is bytes else _dumps(body)


def body_dict(body: Body) -> dict[str, Any]:
    """A body as a dict (decodes serialized bodies; the caller owns the result)."""
    return _loads(body) if type(body) is bytes else body  # type: ignore[return-value]


def bodies_json(bodies: Sequence[Body]) -> list[bytes]:
    """Every body's JSON text, one tight loop."""
    dumps = _dumps
    return [b if type(b) is bytes else dumps(b) for b in bodies]


def bodies_fragments(bodies: Sequence[Body]) -> list[Any]:
    """Bodies ready to be embedded in a larger orjson document without re-encoding."""
    frag = _Fragment
    return [frag(b) if type(b) is bytes else b for b in bodies]


class AckRef:
    """An input's acknowledgement token shared by every batch that carries some of its records.

    The engine wraps a batch's token in one before the filters of a route with a filter that
    holds records back between batches (``Filter.holds_records``, e.g. ``multiline``). Such a
    filter may then attach the ref to several batches (``hold()`` once per extra batch, or keep a
    hold itself while records are pending); the input is acknowledged when the last holder is
    done, with ``complete`` False if any of them gave records up.
    """

    __slots__ = ("complete", "holds", "owner", "token")

    def __init__(self, token: Any, owner: Any = None) -> None:
        self.token = token
        self.owner = owner  # the engine's runtime of the input that made the token
        self.holds = 1
        self.complete = True

    def hold(self, n: int = 1) -> AckRef:
        self.holds += n
        return self

    def release(self, complete: bool) -> bool:
        """Drop one hold; True when it was the last (the input may now be acknowledged)."""
        self.holds -= 1
        if not complete:
            self.complete = False
        return self.holds <= 0


class AckList(list[Any]):
    """Several acknowledgement tokens (AckRefs) riding on one batch."""


@dataclass(slots=True)
class Batch:
    """Records of one tag, produced together (e.g. one read of one file)."""

    tag: str
    times: list[int]
    bodies: list[Body]
    size: int  # approximate bytes, used for metrics and Mem_Buf_Limit
    ack: Any = None  # opaque token handed back to the input once these records are final

    def __len__(self) -> int:
        return len(self.bodies)


_chunk_ids = itertools.count(1)


@dataclass(slots=True, eq=False)
class Chunk:
    """Records of one tag from one input, delivered to outputs as a unit."""

    tag: str
    input_name: str
    times: list[int] = field(default_factory=list)
    bodies: list[Body] = field(default_factory=list)
    size: int = 0
    acks: list[Any] = field(default_factory=list)
    id: int = field(default_factory=lambda: next(_chunk_ids))

    def __len__(self) -> int:
        return len(self.bodies)

    def append(self, batch: Batch) -> None:
        self.times.extend(batch.times)
        self.bodies.extend(batch.bodies)
        self.size += batch.size
        ack = batch.ack
        if ack is not None:
            if type(ack) is AckList:
                self.acks.extend(ack)
            else:
                self.acks.append(ack)

    def subset(self, ranges: Sequence[tuple[int, int]]) -> Chunk:
        """A chunk with only the records in ``ranges`` (same tag, id and input; no acks)."""
        times: list[int] = []
        bodies: list[Body] = []
        for start, stop in ranges:
            times.extend(self.times[start:stop])
            bodies.extend(self.bodies[start:stop])
        n = len(self.bodies) or 1
        size = self.size * len(bodies) // n
        return Chunk(self.tag, self.input_name, times, bodies, size, [], self.id)
