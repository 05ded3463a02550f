"""Where the kubernetes filter gets Pod and Namespace objects from.

A *source* answers lookups synchronously from memory and never blocks the event loop: the filter
calls :meth:`MetaSource.lookup` inside its batch loop (once per batch/file, not per record).
Network work (list + watch of the node's pods, GETs for misses, kubelet polling, token re-reads)
happens in the source's own asyncio tasks, started by :meth:`MetaSource.start`.

Implementations:
- ``rillet.filters.kubernetes.api.ApiSource``: the API server (node-scoped list + watch, GET on a
  miss, negative cache with backoff, deleted pods kept for a delay), or the kubelet's ``/pods``
  when ``Use_Kubelet`` is on.
- ``rillet.filters.kubernetes.preload.PreloadSource``: ``Kube_Meta_Preload_Cache_Dir`` files.
- ``rillet.filters.kubernetes.preload.ChainSource``: the first source that knows an object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Kind = Literal["pod", "namespace"]


@dataclass(slots=True)
class Entry:
    """What a source knows about one object.

    ``obj`` is the object as the API serves it (a Pod or Namespace dict, or for a kubelet source
    the Pod item of its ``/pods`` list), or None when the object is known to be absent (404) or
    could not be fetched (API unreachable, 401/403, timeout: ``error`` says which). The filter
    passes records without metadata in that case (counted) and asks again later: a source keeps
    negative answers only for a backoff period, so asking often is cheap and never causes a
    request storm.

    ``version`` increases every time ``obj`` changes (watch MODIFIED event, re-list, a refetch
    that returned different content), so the filter can cache what it renders from ``obj`` (the
    serialized ``kubernetes`` block, the parser/exclude decisions) keyed by the version.
    """

    obj: dict[str, Any] | None
    version: int
    error: str = ""


class MetaSource(Protocol):
    async def start(self, wait: float) -> None:
        """Begin (initial list, watch, preload). Return once the first sync is done or after
        ``wait`` seconds, whichever comes first; never raise because the API is unreachable
        (log it, count it, keep retrying in the background)."""

    async def stop(self) -> None:
        """Cancel background tasks and close connections."""

    def lookup(self, kind: Kind, namespace: str, name: str) -> Entry | None:
        """The entry for a pod (``namespace``, ``name``) or a namespace (``name``; ``namespace``
        equal to it). None means "not known yet": a fetch has been scheduled (unless one is in
        flight or a negative answer is still fresh) and a later call may return an entry."""
        ...
