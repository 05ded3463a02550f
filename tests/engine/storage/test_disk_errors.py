"""Disk errors on chunk writes (ENOSPC, EROFS, EACCES): reported, counted, backpressure, no
loss. A small tmpfs when this machine lets us mount one, else a directory we may not write."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rillet.engine.deadletter import DeadLetters
from tests.engine.harness import running, wait_for
from tests.engine.storage.helpers import async_test, batch, feed, numbers, pipeline, sink


@contextlib.contextmanager
def small_disk(path: Path, size: str = "64k") -> Iterator[bool]:
    """Mount a tmpfs of ``size`` at ``path``; yields False (nothing mounted) where mount is
    not permitted."""
    path.mkdir()
    # RILLET_NO_MOUNT=1 runs the fallback where mounting works too.
    mounted = (not os.environ.get("RILLET_NO_MOUNT") and os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True).returncode == 0)
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _break(root: Path, mounted: bool) -> None:
    """Read-only (EROFS) where mounted; else the input's directory becomes a plain file, so
    writes fail (ENOTDIR) even for root."""
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        return
    directory = root / "test_feed.0"
    if directory.is_dir():
        directory.rmdir()
    directory.write_bytes(b"")


def _repair(root: Path, mounted: bool) -> None:
    if mounted:
        subprocess.run(["mount", "-o", "remount,rw", str(root)], check=True)
        return
    directory = root / "test_feed.0"
    directory.unlink()
    directory.mkdir()


@async_test
async def test_full_disk_pauses_the_input_and_loses_nothing(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    root = tmp_path / "store"
    with small_disk(root) as mounted:
        f = feed("in")
        s = sink("o0")
        s.gate = asyncio.Event()
        async with running(pipeline(root)) as engine:
            if not mounted:  # no small disk here: make writes fail another way
                _break(root, mounted)
            sent = 0
            for i in range(60):  # ~4 KB per chunk: a 64k tmpfs fills up
                f.put(batch("t", i * 10, 10, ack=i, pad=400))
                sent += 1
                await asyncio.sleep(0.06)
                if f.ctx is not None and f.ctx.paused:
                    break
            assert f.ctx is not None and f.ctx.paused
            assert engine.store is not None and engine.store.stats["write_errors"] >= 1
            assert engine.store.faulty
            if not mounted:
                _repair(root, mounted)
            s.gate.set()
            await wait_for(lambda: len(f.acks) == sent, timeout=10)
            await wait_for(lambda: not f.ctx.paused)
        assert sorted(set(numbers(s.delivered))) == list(range(sent * 10))
    errors = [r for r in caplog.records if "cannot write chunks under" in r.getMessage()]
    assert len(errors) == 1  # once per condition, with the path
    assert str(root) in errors[0].getMessage()


@async_test
async def test_read_only_storage_is_backpressure_and_memory_inputs_are_unaffected(
        tmp_path: Path) -> None:
    root = tmp_path / "store"
    with small_disk(root, "1m") as mounted:
        f = feed("in")
        s = sink("o0")
        async with running(pipeline(root)) as engine:
            f.put(batch("t", 0, 5, ack="before"))
            await wait_for(lambda: len(s.delivered) == 5)
            _break(root, mounted)
            try:
                s.gate = asyncio.Event()
                f.put(batch("t", 5, 5, ack="during"))
                await wait_for(lambda: f.ctx is not None and f.ctx.paused)
                assert engine.store is not None and engine.store.stats["write_errors"] >= 1
                assert ("during", True) not in f.acks  # not on disk, not delivered: not final
            finally:
                _repair(root, mounted)
            s.gate.set()
            await wait_for(lambda: ("during", True) in f.acks)
            await wait_for(lambda: f.ctx is not None and not f.ctx.paused)
        assert numbers(s.delivered) == list(range(10))

        # A memory input never touches the disk, even when the storage path is unwritable.
        _break(root, mounted)
        try:
            f2 = feed("in")
            s2 = sink("o0")
            async with running(pipeline(root, storage="memory")):
                f2.put(batch("t", 0, 5, ack="m"))
                await wait_for(lambda: f2.acks == [("m", True)])
            assert len(s2.delivered) == 5
        finally:
            _repair(root, mounted)


def test_dead_letter_files_are_size_bounded(tmp_path: Path) -> None:
    import logging

    dead = DeadLetters(str(tmp_path / "rejected"), 2000, logging.getLogger("t"))
    for i in range(20):
        assert dead.write("es.0", "tail.0", "t", "bad", [i], [{"n": i, "pad": "x" * 100}])
    path = tmp_path / "rejected" / "es.0.jsonl"
    assert path.stat().st_size <= 2000
    assert (tmp_path / "rejected" / "es.0.jsonl.1").stat().st_size <= 2000
    assert dead.written == 20
    (tmp_path / "file").write_bytes(b"")
    broken = DeadLetters(str(tmp_path / "file" / "rejected"), 2000, logging.getLogger("t"))
    assert not broken.write("x.0", "i", "t", "bad", [1], [{"n": 1}])
    assert broken.errors == 1 and broken.written == 0


@async_test
async def test_a_chunk_that_cannot_be_serialized_is_delivered_from_memory(
        tmp_path: Path) -> None:
    from rillet.engine.chunk import Batch

    f = feed("in")
    s = sink("o0")
    async with running(pipeline(tmp_path)) as engine:
        f.put(Batch("t", [1], [{"n": 2**70}], 30, "big"))  # beyond what JSON encoders take
        await wait_for(lambda: f.acks == [("big", True)])
        assert s.delivered == [{"n": 2**70}]
        assert engine.store is not None and engine.store.files == {}
        assert f.ctx is not None and not f.ctx.paused
