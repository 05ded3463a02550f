"""The offsets database: SQLite with Fluent Bit's schema, so either agent resumes the other's.

Table ``in_tail_files`` (``plugins/in_tail/tail_sql.h``)::

    id INTEGER PRIMARY KEY, name TEXT NOT NULL, offset INTEGER, inode INTEGER,
    created INTEGER, rotated INTEGER DEFAULT 0

Columns newer Fluent Bit releases add with ``ALTER TABLE`` are left alone (rows are read and
written by column name). Pragmas as Fluent Bit sets them: ``synchronous`` from ``DB.sync``,
``journal_mode`` from ``DB.journal_mode``, ``locking_mode=EXCLUSIVE`` with ``DB.locking``.

Unlike Fluent Bit, offsets are written only once every output has acknowledged the lines below
them; writes are batched in one transaction (see ``commit``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable

SYNC_LEVELS = {"off": 0, "normal": 1, "full": 2, "extra": 3}
JOURNAL_MODES = ("delete", "truncate", "persist", "memory", "wal", "off")

_CREATE = ("CREATE TABLE IF NOT EXISTS in_tail_files ("
           "  id      INTEGER PRIMARY KEY,"
           "  name    TEXT NOT NULL,"
           "  offset  INTEGER,"
           "  inode   INTEGER,"
           "  created INTEGER,"
           "  rotated INTEGER DEFAULT 0"
           ");")

# Databases opened by tail instances of this process: a DB shared between instances loses rows
# to the other instance's startup purge (fluent-bit#8928).
_OPEN: dict[str, str] = {}
_OPEN_LOCK = threading.Lock()


class OffsetDB:
    def __init__(self, path: str, instance: str, log: logging.Logger, sync: str = "normal",
                 locking: bool = False, journal_mode: str = "wal",
                 compare_filename: bool = False) -> None:
        self.path = path
        self.log = log
        self.compare_filename = compare_filename
        real = os.path.realpath(path)
        with _OPEN_LOCK:
            other = _OPEN.get(real)
            if other is not None and other != instance:
                log.warning("db: %s is also used by %s; each tail instance needs its own DB "
                            "(the startup purge of one deletes the other's offsets)", path, other)
            _OPEN[real] = instance
        self._real = real
        self._instance = instance
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute(_CREATE)
            self.conn.execute(f"PRAGMA synchronous={SYNC_LEVELS[sync]};")
            if locking:
                self.conn.execute("PRAGMA locking_mode=EXCLUSIVE;")
            self.conn.execute(f"PRAGMA journal_mode={journal_mode.upper()};").fetchall()
        except sqlite3.Error as exc:
            self._forget()
            raise OSError(f"db: cannot open {path}: {exc}") from exc

    def _forget(self) -> None:
        with _OPEN_LOCK:
            if _OPEN.get(self._real) == self._instance:
                del _OPEN[self._real]

    def lookup(self, inode: int, name: str) -> tuple[int, int] | None:
        """(id, offset) of the newest row for ``inode`` (and ``name`` with compare_filename)."""
        row = self.conn.execute("SELECT id, name, offset FROM in_tail_files WHERE inode=? "
                                "ORDER BY id DESC LIMIT 1;", (inode,)).fetchone()
        if row is None:
            return None
        if self.compare_filename and row[1] != name:
            self.conn.execute("DELETE FROM in_tail_files WHERE id=?;", (row[0],))
            return None
        return int(row[0]), int(row[2] or 0)

    def rotated_rows(self) -> list[tuple[int, str, int, int]]:
        """(id, name, offset, inode) of the rows of rotated files."""
        return [(int(r[0]), str(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in
                self.conn.execute("SELECT id, name, offset, inode FROM in_tail_files "
                                  "WHERE rotated=1 ORDER BY id;").fetchall()]

    def insert(self, name: str, offset: int, inode: int) -> int:
        cur = self.conn.execute("INSERT INTO in_tail_files (name, offset, inode, created) "
                                "VALUES (?, ?, ?, ?);", (name, offset, inode, int(time.time())))
        return int(cur.lastrowid or 0)

    def commit(self, offsets: Iterable[tuple[int, int]]) -> None:
        """Write ``(id, offset)`` pairs in one transaction."""
        conn = self.conn
        conn.execute("BEGIN;")
        try:
            conn.executemany("UPDATE in_tail_files SET offset=? WHERE id=?;",
                             [(off, rid) for rid, off in offsets])
        except sqlite3.Error:
            conn.execute("ROLLBACK;")
            raise
        conn.execute("COMMIT;")

    def rotate(self, rid: int, new_name: str) -> None:
        self.conn.execute("UPDATE in_tail_files SET name=?, rotated=1 WHERE id=?;",
                          (new_name, rid))

    def delete(self, rid: int) -> None:
        self.conn.execute("DELETE FROM in_tail_files WHERE id=?;", (rid,))

    def purge_stale(self, inodes: list[int]) -> int:
        """Delete rows whose inode is none of ``inodes`` (Fluent Bit's startup purge)."""
        if inodes:
            marks = ",".join("?" * len(inodes))
            cur = self.conn.execute(f"DELETE FROM in_tail_files WHERE inode NOT IN ({marks});",
                                    inodes)
        else:
            cur = self.conn.execute("DELETE FROM in_tail_files;")
        return cur.rowcount

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self._forget()
