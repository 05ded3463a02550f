"""``emitter`` input: the internal input through which a filter re-emits records (Fluent Bit's
in_emitter, created by ``rewrite_tag``).

The pipeline creates one instance per filter that asks for it (see
``rillet.engine.pipeline``); the filter hands it batches with :meth:`Emitter.add` while it runs,
and the emitter's task sends them into the pipeline from the start, so they are routed by their
new tag. ``Mem_Buf_Limit`` works as for any input: it pauses the emitter while its records are
in flight, and :meth:`Emitter.add` refuses batches while the records waiting to be emitted
exceed the limit (the filter then keeps the records where they were).

Acknowledgements: a re-emitted batch carries the shareable refs (``chunk.AckRef``) of the batch
its records came from, each held once more. When the re-emitted records are final the emitter
releases those holds; the source input is acknowledged when its last holder is done, so it never
advances past a record whose re-emitted copy is still on its way.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from rillet.engine.chunk import AckList, AckRef, Batch
from rillet.engine.plugin import Input, InputContext, register

_SHUTDOWN_WAIT = 1.0  # seconds an emit may wait for room while the emitter is stopping


class Upstream:
    """The ack token of a re-emitted batch: the source's refs it holds."""

    __slots__ = ("refs",)

    def __init__(self, refs: list[AckRef]) -> None:
        self.refs = refs


def shared_refs(ack: Any) -> list[AckRef] | None:
    """A batch's acknowledgement as refs that can be held by another batch; None when some
    token is not shareable (then re-emitted copies cannot hold the source back)."""
    if ack is None:
        return []
    if type(ack) is AckRef:
        return [ack]
    if type(ack) is AckList and all(type(a) is AckRef for a in ack):
        return list(ack)
    return None


def release(refs: list[AckRef], complete: bool) -> None:
    """Drop one hold on each ref; acknowledge the inputs whose last holder this was."""
    for ref in refs:
        if not ref.release(complete):
            continue
        inst = getattr(ref.owner, "inst", None)  # the engine's runtime of the source input
        plugin = getattr(inst, "plugin", None)
        if isinstance(plugin, Input):
            try:
                plugin.on_ack(ref.token, ref.complete)
            except Exception:
                inst.log.exception("acknowledgement handler failed")  # type: ignore[union-attr]


@register
class Emitter(Input):
    name = "emitter"
    description = "internal input: records re-emitted by a filter (rewrite_tag)"
    options = ()

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pending: collections.deque[Batch] = collections.deque()
        self.pending_bytes = 0
        self.limit = 0  # set by the pipeline from the filter's Emitter_Mem_Buf_Limit
        self._wake = asyncio.Event()
        self.ctx: InputContext | None = None
        self.closed = False

    def room(self, size: int) -> bool:
        """Whether ``size`` more bytes may wait to be emitted (never once it has stopped)."""
        if self.closed:
            return False
        return not self.limit or self.pending_bytes + size <= self.limit

    def add(self, batch: Batch) -> None:
        self.pending.append(batch)
        self.pending_bytes += batch.size
        self._wake.set()

    def request_exit(self) -> None:
        if self.ctx is not None:
            self.ctx.request_exit()

    async def run(self, ctx: InputContext) -> None:
        self.ctx = ctx
        pending = self.pending
        try:
            while True:
                if not pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = pending.popleft()
                self.pending_bytes -= batch.size
                await ctx.emit(batch)
        except asyncio.CancelledError:
            # Shutdown: send what is waiting while the engine still delivers (Grace), unless
            # the emitter is paused; a wait for room is bounded so that stopping cannot hang.
            self.closed = True
            while pending and not ctx.paused:
                batch = pending.popleft()
                self.pending_bytes -= batch.size
                try:
                    await asyncio.wait_for(ctx.emit(batch), _SHUTDOWN_WAIT)
                except TimeoutError:
                    break
            raise
        finally:
            self.closed = True
            if pending:
                # Never emitted: their sources stay unacknowledged, so a source such as tail
                # reads them again after a restart.
                self.log.warning("%d re-emitted records not sent at shutdown",
                                 sum(len(b) for b in pending))

    def on_ack(self, token: Any, complete: bool) -> None:
        if type(token) is Upstream:
            release(token.refs, complete)
