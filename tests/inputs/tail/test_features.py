"""The tail input through the real engine: following, offsets and the DB, options."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import pytest

from rillet.engine.engine import Engine
from rillet.engine.plugin import Status
from tests.engine.harness import make_pipeline, wait_for
from tests.inputs.tail.helpers import aio, running

FB_SCHEMA = ("CREATE TABLE in_tail_files (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
             "offset INTEGER, inode INTEGER, created INTEGER, rotated INTEGER DEFAULT 0)")


def rows(db: Path) -> list[tuple[str, int, int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT name, offset, inode, rotated FROM in_tail_files "
                            "ORDER BY id").fetchall()


@aio
async def test_follows_appends_from_the_end_by_default(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("old\n")
    async with running({"path": str(log)}) as run:
        await asyncio.sleep(0.2)
        with log.open("a") as fh:
            fh.write("new 1\nnew")
        await run.wait_records(1)
        with log.open("a") as fh:
            fh.write(" 2\n")
        assert await run.wait_records(2) == [{"log": "new 1"}, {"log": "new 2"}]
        assert run.counters["files_opened"] == 1


@aio
async def test_new_files_are_read_from_head_and_tagged_by_path(tmp_path: Path) -> None:
    async with running({"path": f"{tmp_path}/*.log", "tag": "kube.*",
                        "refresh_interval": "0.2", "path_key": "file",
                        "offset_key": "off"}) as run:
        (tmp_path / "b.log").write_text("one\ntwo\n")
        recs = await run.wait_records(2)
        path = str(tmp_path / "b.log")
        assert recs == [{"file": path, "off": 0, "log": "one"},
                        {"file": path, "off": 4, "log": "two"}]
        chunk_tags = {c for c in run.engine.inputs[0].routes}
        assert chunk_tags == {"kube" + path.replace("/", ".") }


@aio
async def test_offsets_are_stored_only_after_delivery(tmp_path: Path) -> None:
    log, db = tmp_path / "a.log", tmp_path / "tail.db"
    log.write_text("a\nb\n")
    async with running({"path": str(log), "read_from_head": "on", "db": str(db)}) as run:
        run.sink.gate = asyncio.Event()  # the output holds every chunk
        await wait_for(lambda: len(run.sink.calls) >= 1, 5)
        await asyncio.sleep(0.6)  # several commit periods
        assert rows(db)[0][1] == 0
        run.sink.gate.set()
        await run.wait_records(2)
        await wait_for(lambda: rows(db)[0][1] == 4, 5)


@aio
async def test_failed_delivery_keeps_the_offset_until_retried(tmp_path: Path) -> None:
    log, db = tmp_path / "a.log", tmp_path / "tail.db"
    log.write_text("x\n")
    answers = [Status.RETRY]

    def script(chunk: object, n: int) -> Status:
        return answers.pop(0) if answers else Status.OK

    async with running({"path": str(log), "read_from_head": "on", "db": str(db)},
                       {"scheduler.base": 0.3, "scheduler.cap": 0.3},
                       sink_script=script) as run:
        await wait_for(lambda: len(run.sink.calls) == 1, 5)
        await asyncio.sleep(0.1)
        assert rows(db)[0][1] == 0
        await run.wait_records(1)
        await wait_for(lambda: rows(db)[0][1] == 2, 5)


@aio
async def test_restart_resumes_at_the_stored_offset(tmp_path: Path) -> None:
    log, db = tmp_path / "a.log", tmp_path / "tail.db"
    log.write_text("1\n2\n")
    props = {"path": str(log), "read_from_head": "on", "db": str(db)}
    async with running(props) as run:
        await run.wait_records(2)
    with log.open("a") as fh:
        fh.write("3\n")
    async with running(props) as run:
        assert await run.wait_records(1) == [{"log": "3"}]
        await asyncio.sleep(0.2)
        assert run.logs() == ["3"]


@aio
async def test_a_fluent_bit_db_resumes_at_its_offsets(tmp_path: Path) -> None:
    """A DB as Fluent Bit 5.x leaves it (1.9 schema plus the columns it adds by ALTER)."""
    log, db = tmp_path / "a.log", tmp_path / "flb_kube.db"
    log.write_text("read by fluent-bit\nnot yet\n")
    with sqlite3.connect(db) as conn:
        conn.execute(FB_SCHEMA)
        conn.execute("ALTER TABLE in_tail_files ADD COLUMN skip INTEGER DEFAULT 0")
        conn.execute("ALTER TABLE in_tail_files ADD COLUMN anchor INTEGER DEFAULT 0")
        conn.execute("INSERT INTO in_tail_files (name, offset, inode, created) "
                     "VALUES (?, ?, ?, ?)", (str(log), 19, log.stat().st_ino, 1700000000))
        conn.execute("INSERT INTO in_tail_files (name, offset, inode, created) "
                     "VALUES ('/gone.log', 5, 999999999, 1700000000)")
    async with running({"path": str(log), "db": str(db), "read_from_head": "on"}) as run:
        assert await run.wait_records(1) == [{"log": "not yet"}]
        await asyncio.sleep(0.2)
        assert run.logs() == ["not yet"]
    # The stale row was purged at startup, ours carries the new offset.
    assert rows(db) == [(str(log), 27, log.stat().st_ino, 0)]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@aio
async def test_db_shared_between_instances_is_warned(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "t.db"
    (tmp_path / "a.log").write_text("")
    p = make_pipeline(inputs=[{"name": "tail", "path": f"{tmp_path}/a.log", "db": str(db)},
                              {"name": "tail", "path": f"{tmp_path}/b.log", "db": str(db)}],
                      outputs=[{"name": "null", "match": "*"}])
    engine = Engine(p)
    task = asyncio.create_task(engine.run())
    await engine.started.wait()
    await asyncio.sleep(0.2)
    engine.request_stop()
    await task
    assert any("also used by" in r.getMessage() for r in caplog.records)


@aio
async def test_exit_on_eof_waits_for_delivery_then_exits(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.log").write_text("".join(f"{name}{i}\n" for i in range(1000)))
    p = make_pipeline(inputs=[{"name": "tail", "path": f"{tmp_path}/*.log",
                               "read_from_head": "on", "exit_on_eof": "on",
                               "db": str(tmp_path / "db")}],
                      outputs=[{"name": "null", "match": "*"}])
    engine = Engine(p)
    assert await asyncio.wait_for(engine.run(), 10) == 0
    assert p.metrics.counters("output", "null.0")["proc_records"] == 2000
    size = (tmp_path / "a.log").stat().st_size
    assert sorted(r[1] for r in rows(tmp_path / "db")) == [size, size]


@aio
async def test_skip_empty_lines_and_crlf(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"a\r\n\r\n\nb\n")
    async with running({"path": str(log), "read_from_head": "on",
                        "skip_empty_lines": "on"}) as run:
        assert await run.wait_records(2) == [{"log": "a"}, {"log": "b"}]
        await asyncio.sleep(0.2)
        assert len(run.sink.delivered) == 2


@aio
async def test_docker_mode_flushes_an_unfinished_line_after_the_timeout(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text('{"log":"part 1 ","stream":"stdout","time":"2024-01-01T00:00:00.5Z"}\n'
                   '{"log":"part 2","stream":"stdout","time":"2024-01-01T00:00:01.25Z"}\n')
    async with running({"path": str(log), "read_from_head": "on", "docker_mode": "on",
                        "parser": "docker", "docker_mode_flush": "1", "db":
                        str(tmp_path / "db")}) as run:
        await asyncio.sleep(0.5)
        assert run.sink.delivered == []
        recs = await run.wait_records(1, timeout=5)
        assert recs == [{"log": "part 1 part 2", "stream": "stdout",
                         "time": "2024-01-01T00:00:01.25Z"}]
        assert run.sink.calls and run.engine.pipeline.inputs[0].plugin.files
    # The held fragments kept the offset at 0 until they were delivered.
    await asyncio.sleep(0)
    assert rows(tmp_path / "db")[0][1] == log.stat().st_size


@aio
async def test_docker_parser_time_and_invalid_json(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text('{"log":"ok\\n","stream":"stderr","time":"2024-01-01T00:00:00.123456789Z"}\n'
                   '{"log":"broken\n'
                   '{"log":"é\\n","stream":"stdout","time":"2024-01-01T00:00:01Z"}\n')
    async with running({"path": str(log), "read_from_head": "on", "docker_mode": "on",
                        "parser": "docker"}) as run:
        recs = await run.wait_records(3)
        times = run.sink.calls
        assert recs[0] == {"log": "ok\n", "stream": "stderr",
                           "time": "2024-01-01T00:00:00.123456789Z"}
        assert recs[1] == {"log": '{"log":"broken'}
        assert recs[2]["log"] == "é\n"
        assert times


@aio
async def test_old_multiline_mode(tmp_path: Path) -> None:
    pf = tmp_path / "parsers.conf"
    pf.write_text("[PARSER]\n    Name first\n    Format regex\n"
                  "    Regex ^(?<time>\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d) (?<msg>.*)\n"
                  "    Time_Key time\n    Time_Format %Y-%m-%d %H:%M:%S\n"
                  "[PARSER]\n    Name kv\n    Format regex\n    Regex ^k=(?<k>\\w+)$\n")
    log = tmp_path / "a.log"
    log.write_text("orphan\n2024-01-01 00:00:00 boom\n  at a()\nk=v\n  at b()\n"
                   "2024-01-01 00:00:05 next\n")
    async with running({"path": str(log), "read_from_head": "on", "multiline": "on",
                        "parser_firstline": "first", "parser_1": "kv",
                        "multiline_flush": "1"}, parsers_file=pf) as run:
        recs = await run.wait_records(3, timeout=5)
        assert recs == [{"log": "orphan"}, {"msg": "boom\n  at a()", "k": "v\n  at b()"},
                        {"msg": "next"}]
        assert run.sink.calls


@aio
async def test_ignore_older_skips_old_files(tmp_path: Path) -> None:
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    old.write_text("old\n")
    new.write_text("new\n")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    async with running({"path": f"{tmp_path}/*.log", "read_from_head": "on",
                        "ignore_older": "1h"}) as run:
        assert await run.wait_records(1) == [{"log": "new"}]
        await asyncio.sleep(0.2)
        assert len(run.sink.delivered) == 1


@aio
async def test_bounded_descriptors_reopen_on_change(tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / f"f{i}.log").write_text(f"{i}\n")
    async with running({"path": f"{tmp_path}/*.log", "read_from_head": "on",
                        "max_open_files": "2", "inotify_watcher": "off"}) as run:
        await run.wait_records(6)
        tail = run.tail
        await wait_for(lambda: tail.open_count <= 2, 5)
        with (tmp_path / "f0.log").open("a") as fh:
            fh.write("again\n")
        await run.wait_records(7)
        assert run.logs()[-1] == "again"
        assert sum(1 for f in tail.files.values() if f.fd is not None) <= 3


@aio
async def test_deleted_file_is_read_to_its_end_released_and_forgotten(tmp_path: Path) -> None:
    log, db = tmp_path / "a.log", tmp_path / "db"
    log.write_text("1\n")
    async with running({"path": str(log), "read_from_head": "on", "db": str(db)}) as run:
        await run.wait_records(1)
        with log.open("a") as fh:
            fh.write("2\n3\n")
            log.unlink()
        await run.wait_records(3)
        await wait_for(lambda: run.counters["files_closed"] == 1, 5)
        await wait_for(lambda: rows(db) == [], 5)
        assert run.logs() == ["1", "2", "3"]


@aio
async def test_stat_polling_watcher(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    async with running({"path": str(log), "inotify_watcher": "off"}) as run:
        await asyncio.sleep(0.1)
        with log.open("a") as fh:
            fh.write("polled\n")
        assert await run.wait_records(1) == [{"log": "polled"}]
        assert run.tail.bytes_behind() == {str(log): 0}


@aio
async def test_symlink_retarget_is_a_rotation_and_keeps_the_link_tag(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    links = tmp_path / "containers"
    links.mkdir()
    (pods / "0.log").write_text("first\n")
    link = links / "app.log"
    os.symlink(pods / "0.log", link)
    async with running({"path": f"{links}/*.log", "read_from_head": "on", "tag": "kube.*",
                        "rotate_wait": "0", "watcher_interval": "1",
                        "db": str(tmp_path / "db")}) as run:
        await run.wait_records(1)
        with (pods / "0.log").open("a") as fh:
            fh.write("last of 0\n")
        (pods / "1.log").write_text("restarted\n")
        tmp_link = links / "app.log.tmp"
        os.symlink(pods / "1.log", tmp_link)
        os.replace(tmp_link, link)
        recs = await run.wait_records(3, timeout=6)
        assert sorted(r["log"] for r in recs) == ["first", "last of 0", "restarted"]
        assert set(run.engine.inputs[0].routes) == {"kube" + str(link).replace("/", ".")}
        await wait_for(lambda: run.counters["files_rotated"] == 1, 5)
        await wait_for(lambda: run.counters["files_closed"] == 1, 5)


@aio
async def test_cri_partials_are_rejoined_with_multiline_cri(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("2024-05-01T10:00:00.000000001Z stdout P hello \n"
                   "2024-05-01T10:00:00.000000002Z stdout P big \n"
                   "2024-05-01T10:00:00.000000003Z stdout F world\n"
                   "2024-05-01T10:00:01.5Z stderr F alone\n")
    async with running({"path": str(log), "read_from_head": "on",
                        "multiline.parser": "docker, cri", "db": str(tmp_path / "db")}) as run:
        recs = await run.wait_records(2, timeout=6)
        assert [r["log"] for r in recs] == ["hello big world", "alone"]
        assert [r["stream"] for r in recs] == ["stdout", "stderr"]
        assert run.sink.calls
    assert rows(tmp_path / "db")[0][1] == log.stat().st_size


@aio
async def test_docker_16k_splits_are_rejoined_with_multiline_docker(tmp_path: Path) -> None:
    part = "a" * 16384
    log = tmp_path / "a.log"
    log.write_text(f'{{"log":"{part}","stream":"stdout","time":"2024-05-01T10:00:00.1Z"}}\n'
                   f'{{"log":"end\\n","stream":"stdout","time":"2024-05-01T10:00:00.2Z"}}\n')
    async with running({"path": str(log), "read_from_head": "on",
                        "multiline.parser": "docker"}) as run:
        recs = await run.wait_records(1, timeout=6)
        assert recs[0]["log"] == part + "end\n"


@aio
async def test_tag_regex_tags_each_file(tmp_path: Path) -> None:
    cid = "c" * 64
    log = tmp_path / f"web-1_prod_nginx-{cid}.log"
    log.write_text("x\n")
    (tmp_path / "other.log").write_text("not tailed\n")
    async with running({"path": f"{tmp_path}/*.log", "read_from_head": "on",
                        "tag": "kube.<namespace_name>.<pod_name>.<container_name>",
                        "tag_regex": r"/(?<pod_name>[a-z0-9-]+)_(?<namespace_name>[^_/]+)_"
                                     r"(?<container_name>[^/]+)-(?<container_id>[a-z0-9]{64})"
                                     r"\.log$"}) as run:
        assert await run.wait_records(1) == [{"log": "x"}]
        await asyncio.sleep(0.2)
        assert set(run.engine.inputs[0].routes) == {"kube.prod.web-1.nginx"}
        assert len(run.tail.files) == 1


@aio
async def test_db_locking_is_released_for_a_successor(tmp_path: Path) -> None:
    log, db = tmp_path / "a.log", tmp_path / "db"
    log.write_text("1\n")
    props = {"path": str(log), "read_from_head": "on", "db": str(db), "db.locking": "on",
             "db.journal_mode": "delete", "db.sync": "full"}
    async with running(props) as run:
        await run.wait_records(1)
    with log.open("a") as fh:
        fh.write("2\n")
    async with running(props) as run:
        assert await run.wait_records(1) == [{"log": "2"}]


@aio
async def test_regex_json_and_raw_docker_modes(tmp_path: Path) -> None:
    pf = tmp_path / "parsers.conf"
    pf.write_text("[PARSER]\n    Name kv\n    Format regex\n    Regex ^(?<k>\\w+)=(?<v>\\w+)$\n"
                  "[PARSER]\n    Name j\n    Format json\n    Time_Key ts\n"
                  "    Time_Format %Y-%m-%dT%H:%M:%S.%L%z\n")
    log = tmp_path / "a.log"
    log.write_text("a=1\nnot kv\n")
    async with running({"path": str(log), "read_from_head": "on", "parser": "kv"},
                       parsers_file=pf) as run:
        assert run.tail.mode == 1  # per-line parse
        assert await run.wait_records(2) == [{"k": "a", "v": "1"}, {"log": "not kv"}]
    lines = [f'{{"n":{i},"ts":"2024-05-01T10:00:0{i % 10}.5Z"}}' for i in range(20)]
    log.write_text("\n".join([*lines, "[1]", "plain"]) + "\n")
    async with running({"path": str(log), "read_from_head": "on", "parser": "j"},
                       parsers_file=pf) as run:
        assert run.tail.mode == 2  # JSON shortcut
        recs = await run.wait_records(22)
        assert recs[:2] == [{"n": 0}, {"n": 1}]
        assert recs[20:] == [{"log": "[1]"}, {"log": "plain"}]
        times = [t for _, bodies in run.sink.calls for t in [0] * len(bodies)]
        assert len(times) == 22
    log.write_text('{"log":"a ","stream":"stdout"}\n{"log":"b\\n","stream":"stdout"}\n')
    async with running({"path": str(log), "read_from_head": "on", "docker_mode": "on"}) as run:
        assert run.tail.mode == 4  # Docker mode without a JSON parser
        recs = await run.wait_records(1)
        assert recs == [{"log": '{"log":"a b\\n","stream":"stdout"}'}]


@aio
async def test_json_shortcut_times_match_the_parser(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    stamps = ["2024-05-01T10:00:00.5Z", "2024-05-01T10:00:00.123456789Z",
              "2024-05-01T10:00:00Z", "2024-05-01T12:00:00.25+02:00"] * 3
    log.write_text("".join(f'{{"log":"x\\n","stream":"stdout","time":"{s}"}}\n'
                           for s in stamps))
    got: list[int] = []

    def capture(chunk: object, n: int) -> Status:
        got.extend(chunk.times)  # type: ignore[attr-defined]
        return Status.OK

    async with running({"path": str(log), "read_from_head": "on", "parser": "docker"},
                       sink_script=capture) as run:
        await run.wait_records(len(stamps))
        parser = run.tail.parser
        assert got == [parser.time_of(s) or -1 for s in stamps]


def open_fds_under(path: Path) -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(path)):
                n += 1
        except OSError:
            continue
    return n


@aio
async def test_thousands_of_files_with_bounded_descriptors(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(2000):
        (logs / f"f{i:04d}.log").write_text(f"{i}\n")
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, open_fds_under(logs))
            await asyncio.sleep(0.005)

    async with running({"path": f"{logs}/*.log", "read_from_head": "on",
                        "max_open_files": "64", "refresh_interval": "0.5"}) as run:
        watcher = asyncio.create_task(watch())
        await run.wait_records(2000, timeout=20)
        watcher.cancel()
        assert peak <= 65
        await wait_for(lambda: open_fds_under(logs) <= 64, 5)
        for i in (3, 1500, 1999):  # closed files are reopened when they change
            with (logs / f"f{i:04d}.log").open("a") as fh:
                fh.write(f"more {i}\n")
        await run.wait_records(2003, timeout=10)
        assert sorted(run.logs()[2000:]) == ["more 1500", "more 1999", "more 3"]
        assert open_fds_under(logs) <= 64 + 3
