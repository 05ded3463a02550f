"""Shared pieces of the storage tests: feed/sink state, batches, chunk files on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from rillet.engine.chunk import Batch
from tests.engine.harness import make_pipeline
from tests.engine.test_engine import async_test, feed, sink

__all__ = ["async_test", "batch", "chunk_files", "feed", "numbers", "pipeline", "sink"]


def batch(tag: str, start: int, n: int, ack: Any = None, pad: int = 0) -> Batch:
    bodies: list[Any] = [{"n": i, "pad": "x" * pad} for i in range(start, start + n)]
    return Batch(tag, [1_700_000_000_000_000_000 + i for i in range(start, start + n)], bodies,
                 (40 + pad) * n, ack)


def numbers(bodies: list[Any]) -> list[int]:
    """The "n" of each delivered body (stored bodies come back as JSON bytes)."""
    return [(orjson.loads(b) if isinstance(b, bytes) else b)["n"] for b in bodies]


def chunk_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.flb") if "quarantine" not in p.parts)


def pipeline(root: Path | str, storage: str = "filesystem", outputs: int = 1,
             service: dict[str, Any] | None = None, input_opts: dict[str, Any] | None = None,
             output_opts: list[dict[str, Any]] | None = None) -> Any:
    outs = []
    for i in range(outputs):
        extra = (output_opts or [{}] * outputs)[i]
        outs.append({"name": "test_sink", "id": f"o{i}", "match": "*", **extra})
    return make_pipeline(
        service={"storage.path": str(root), "grace": 0.3, **(service or {})},
        inputs=[{"name": "test_feed", "id": "in", "tag": "t", "storage.type": storage,
                 **(input_opts or {})}],
        outputs=outs)


def listing(root: Path) -> list[str]:
    return sorted(os.path.relpath(p, root) for p in chunk_files(root))
