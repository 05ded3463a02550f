"""Filesystem buffering: chunks on disk before acknowledgement, replay to exactly the outputs
still owed after a restart, order per tag, shutdown persistence, corrupt files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rillet.config.model import ConfigError
from rillet.engine.chunk import Chunk
from rillet.engine.storage.format import decode
from rillet.engine.storage.store import Store
from tests.engine.harness import running, wait_for
from tests.engine.storage.helpers import (
    async_test,
    batch,
    chunk_files,
    feed,
    numbers,
    pipeline,
    sink,
)


@async_test
async def test_chunk_is_on_disk_and_acknowledged_before_delivery(tmp_path: Path) -> None:
    f = feed("in")
    s = sink("o0")
    s.gate = asyncio.Event()  # the output never answers while the gate is shut
    async with running(pipeline(tmp_path)) as engine:
        f.put(batch("t", 0, 5, ack="a1"))
        await wait_for(lambda: f.acks == [("a1", True)])
        files = chunk_files(tmp_path)
        assert len(files) == 1 and files[0].parent.name == "test_feed.0"
        assert engine.store is not None and engine.store.stats["chunks_written"] == 1
        s.gate.set()
        await wait_for(lambda: len(s.delivered) == 5)
        await wait_for(lambda: not chunk_files(tmp_path))  # deleted once delivered


@async_test
async def test_restart_replays_to_exactly_the_outputs_that_did_not_finish(
        tmp_path: Path) -> None:
    f = feed("in")
    done, down = sink("o0"), sink("o1")
    down.gate = asyncio.Event()
    async with running(pipeline(tmp_path, outputs=2)):
        for i in range(6):  # several chunks of one tag
            f.put(batch("t", i * 10, 10, ack=i))
            await wait_for(lambda i=i: len(f.acks) == i + 1)
            await asyncio.sleep(0.06)  # > Flush: one chunk each
        await wait_for(lambda: len(done.delivered) == 60)
    assert len(chunk_files(tmp_path)) >= 2
    assert all(complete for _, complete in f.acks)

    feed("in")
    again_done, again_down = sink("o0"), sink("o1")
    async with running(pipeline(tmp_path, outputs=2)):
        await wait_for(lambda: len(again_down.delivered) == 60)
        await asyncio.sleep(0.1)
    assert again_done.delivered == []  # o0 had finished every chunk
    assert numbers(again_down.delivered) == list(range(60))  # in order
    assert chunk_files(tmp_path) == []
    assert not (tmp_path / "test_feed.0" / "done.log").exists()


@async_test
async def test_sigterm_persists_memory_backlog_and_acknowledges_it(tmp_path: Path) -> None:
    f = feed("in")
    s = sink("o0", script=lambda chunk, n: asyncio.sleep(60))
    async with running(pipeline(tmp_path, storage="memory")) as engine:
        f.put(batch("t", 0, 20, ack="tok"))
        await wait_for(lambda: len(s.calls) == 1)
        assert f.acks == []  # memory storage: not final until delivered
    assert f.acks == [("tok", True)]  # written at exit, so final for the input
    assert engine.persisted_at_exit == 1 and len(chunk_files(tmp_path)) == 1

    feed("in")
    s2 = sink("o0")
    async with running(pipeline(tmp_path, storage="memory")):
        await wait_for(lambda: len(s2.delivered) == 20)
    assert numbers(s2.delivered) == list(range(20))
    assert chunk_files(tmp_path) == []


def _write_chunk(root: Path, n: int = 3) -> Path:
    store = Store(str(root))
    store.scan()
    chunk = Chunk("t", "test_feed.0", [1, 2, 3][:n], [{"n": i} for i in range(n)], 30)
    return Path(store.persist(chunk, ["test_sink.0"]).path)


@pytest.mark.parametrize("delete", [False, True])
def test_corrupt_and_truncated_files_are_quarantined_at_start(tmp_path: Path,
                                                                delete: bool) -> None:
    good = _write_chunk(tmp_path)
    data = good.read_bytes()
    (good.parent / "000000000100.flb").write_bytes(data[:-4])  # truncated
    (good.parent / "000000000101.flb").write_bytes(b"garbage" * 10)
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    (good.parent / "000000000102.flb").write_bytes(bytes(flipped))  # caught by the checksum?
    (good.parent / "000000000103.flb.tmp").write_bytes(data)  # never renamed: just removed

    async def main() -> None:
        feed("in")
        s = sink("o0")
        service = {"storage.checksum": "off", "storage.delete_irrecoverable_chunks":
                   "on" if delete else "off"}
        async with running(pipeline(tmp_path, service=service)) as engine:
            await wait_for(lambda: len(s.delivered) >= 3)
            await asyncio.sleep(0.1)
            assert engine.store is not None
            stats = engine.store.stats
            assert stats["chunks_deleted" if delete else "chunks_quarantined"] == 2
        # Without checksums a flipped byte inside a body is not detected by structure:
        # that file was delivered as it is. The good one arrived intact.
        assert numbers(s.delivered[:3]) == [0, 1, 2]

    asyncio.run(main())
    quarantine = sorted(p.name for p in (tmp_path / "quarantine").rglob("*.flb"))
    assert quarantine == ([] if delete else ["000000000100.flb", "000000000101.flb"])
    assert chunk_files(tmp_path) == []
    assert not list(tmp_path.rglob("*.tmp"))


def test_checksum_on_quarantines_a_flipped_byte(tmp_path: Path) -> None:
    store = Store(str(tmp_path), checksum=True)
    store.scan()
    path = Path(store.persist(Chunk("t", "i", [1], [{"n": 1}], 10), ["o"]).path)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    again = Store(str(tmp_path), checksum=True)
    assert len(again.scan()) == 1  # structure is fine: found
    assert again.take() is None  # the checksum fails when it is loaded
    assert again.stats["chunks_quarantined"] == 1
    assert (tmp_path / "quarantine" / "i" / path.name).exists()


def test_a_damaged_chunk_is_salvaged_record_by_record(tmp_path: Path) -> None:
    store = Store(str(tmp_path), checksum=True)
    store.scan()
    bodies: list = [{"n": i} for i in range(50)]
    path = Path(store.persist(Chunk("t", "i", list(range(50)), bodies, 500), ["o"]).path)
    original = path.read_bytes()
    data = bytearray(original)
    data[-3] ^= 0x04  # inside the last record
    path.write_bytes(bytes(data))
    again = Store(str(tmp_path), checksum=True)
    (sc,) = again.scan()
    taken = again.take()
    assert taken is not None
    sc, times, got = taken
    assert times == list(range(49)) and got == [b'{"n":%d}' % i for i in range(49)]
    assert sc.records == 49
    assert again.stats["chunks_salvaged"] == 1 and again.stats["records_corrupt"] == 1
    # The damaged file is kept for inspection; the live file now holds the 49 good records.
    assert (tmp_path / "quarantine" / "i" / path.name).read_bytes() == bytes(data)
    assert len(decode(path.read_bytes())[2]) == 49
    again.done(sc, "o")
    assert not path.exists()


def test_filesystem_storage_needs_storage_path() -> None:
    from tests.engine.harness import make_pipeline

    with pytest.raises(ConfigError, match=r"storage\.path"):
        make_pipeline(inputs=[{"name": "test_feed", "id": "in", "storage.type": "overflow"}],
                      outputs=[{"name": "test_sink", "id": "o0", "match": "*"}])
    with pytest.raises(ConfigError, match=r"storage\.path"):
        make_pipeline(service={"storage.keep.rejected": "on"},
                      inputs=[{"name": "test_feed", "id": "in"}],
                      outputs=[{"name": "test_sink", "id": "o0", "match": "*"}])


@async_test
async def test_chunks_owed_to_a_removed_output_are_routed_by_tag(tmp_path: Path) -> None:
    f = feed("in")
    old = sink("o0")
    old.gate = asyncio.Event()
    async with running(pipeline(tmp_path, output_opts=[{"alias": "old"}])):
        f.put(batch("t", 0, 5, ack="a"))
        await wait_for(lambda: f.acks == [("a", True)])
    assert len(chunk_files(tmp_path)) == 1

    feed("in")
    new = sink("o0")
    async with running(pipeline(tmp_path, output_opts=[{"alias": "new"}])):
        await wait_for(lambda: len(new.delivered) == 5)
        await wait_for(lambda: not chunk_files(tmp_path))
