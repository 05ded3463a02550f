"""store_dir staging: metadata, torn appends, $INDEX."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rillet.outputs.s3.store import Store


def test_objects_survive_and_come_back_sealed(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.open()
    obj = store.new_object("tag.a", 123, "/k", "/k-x")
    store.append(obj, b'{"a":1}\n')
    store.append(obj, b'{"a":2}\n')
    obj.upload_id = "up-1"
    obj.parts = [[1, '"etag"', 0, 8]]
    obj.uploaded = 8
    store.save(obj)
    again = Store(str(tmp_path))
    (loaded,), problems = again.load()
    assert problems == []
    assert (loaded.tag, loaded.first_time, loaded.key, loaded.put_key) == ("tag.a", 123, "/k",
                                                                           "/k-x")
    assert loaded.size == 16 and again.used == 16 and loaded.sealed
    assert (loaded.upload_id, loaded.parts, loaded.uploaded) == ("up-1", [[1, '"etag"', 0, 8]],
                                                                 8)
    assert again.read(loaded, 8, 16) == b'{"a":2}\n'
    again.remove(loaded)
    assert os.listdir(tmp_path / "objects") == [] and again.used == 0


def test_torn_append_is_cut_back_to_the_last_line(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.open()
    obj = store.new_object("t", 1, "/k", "/k")
    store.append(obj, b'{"a":1}\n{"a":2}\n')
    with open(store.data_path(obj), "ab") as fp:
        fp.write(b'{"a":3,"tor')  # the crash happened in the middle of this append
    (loaded,), _ = Store(str(tmp_path)).load()
    assert loaded.size == 16
    assert Path(store.data_path(obj)).read_bytes() == b'{"a":1}\n{"a":2}\n'


def test_empty_and_broken_objects(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.open()
    empty = store.new_object("t", 1, "/k", "/k")  # created, no record appended yet
    broken = tmp_path / "objects" / "0001-x.json"
    broken.write_bytes(b"{not json")
    (tmp_path / "objects" / "0002-y.json.tmp").write_bytes(b"{}")
    objects, problems = Store(str(tmp_path)).load()
    assert objects == []
    assert len(problems) == 1 and "unreadable metadata" in problems[0]
    assert broken.exists()  # never deleted: left for the operator
    assert not Path(store.meta_path(empty)).exists()
    assert not (tmp_path / "objects" / "0002-y.json.tmp").exists()


def test_index_is_persisted(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.open()
    assert store.read_index() == 0
    store.write_index(7)
    assert Store(str(tmp_path)).read_index() == 7


def test_failed_write_is_taken_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(str(tmp_path))
    store.open()
    obj = store.new_object("t", 1, "/k", "/k")
    store.append(obj, b'{"a":1}\n')
    real_write = os.write

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data[:3]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        store.append(obj, b'{"a":2}\n')
    monkeypatch.undo()
    assert obj.size == 8 and store.used == 8
    store.append(obj, b'{"a":3}\n')
    assert Path(store.data_path(obj)).read_bytes() == b'{"a":1}\n{"a":3}\n'


def test_one_writer_per_store(tmp_path: Path) -> None:
    first = Store(str(tmp_path))
    first.open()
    with pytest.raises(OSError, match="in use by another s3 output"):
        Store(str(tmp_path)).open()
    first.close()
    second = Store(str(tmp_path))
    second.open()
    second.close()
