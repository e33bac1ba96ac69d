"""The state database: (inode, size, mtime_ns) -> hash, so that unchanged files are never rehashed.

It is a cache: deleting it costs one rehash, never data. A stat can lie when a file is
changed within the same timestamp tick as it was recorded (git's "racy git" problem),
so before recording we touch a tick file on the same filesystem and record only files
whose mtime is strictly older than that tick; a racy file is simply hashed again next
time, when it is no longer racy.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS hashes (
    inode INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trees (
    fingerprint TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    files INTEGER NOT NULL
);
"""

StatKey = tuple[int, int, int]  # inode, size, mtime_ns


def stat_key(st: os.stat_result) -> StatKey:
    return st.st_ino, st.st_size, st.st_mtime_ns


class StateDB:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._cache: dict[int, tuple[int, int, str]] | None = None

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=2.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
                conn.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last commit costs a rehash
                conn.executescript(SCHEMA)
            except sqlite3.DatabaseError:
                # a damaged cache is rebuilt, never trusted
                with contextlib.suppress(OSError):
                    self.path.unlink()
                conn = sqlite3.connect(self.path, timeout=2.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
            self._conn = conn
        return self._conn

    def _load(self) -> dict[int, tuple[int, int, str]]:
        if self._cache is None:
            conn = self._connect()
            try:
                rows = conn.execute("SELECT inode, size, mtime_ns, hash FROM hashes").fetchall() if conn else []
            except sqlite3.DatabaseError:
                rows = []
            self._cache = {inode: (size, mtime, digest) for inode, size, mtime, digest in rows}
        return self._cache

    def lookup(self, key: StatKey) -> str | None:
        """The recorded hash of a file whose stat still matches, else None."""
        found = self._load().get(key[0])
        if found is not None and found[0] == key[1] and found[1] == key[2]:
            return found[2]
        return None

    def tick_ns(self) -> int:
        """The filesystem's idea of 'now', at its own timestamp granularity."""
        tick = self.path.parent / "state.tick"
        tick.parent.mkdir(parents=True, exist_ok=True)
        with open(tick, "wb") as handle:
            handle.write(b"t")
        return os.stat(tick).st_mtime_ns

    def record(self, entries: Iterable[tuple[StatKey, str]]) -> int:
        """Record hashes for stats taken before now; racy ones are skipped. Returns the count kept."""
        tick = self.tick_ns()
        rows = [(k[0], k[1], k[2], digest) for k, digest in entries if k[2] < tick]
        if not rows:
            return 0
        cache = self._load()
        for inode, size, mtime, digest in rows:
            cache[inode] = (size, mtime, digest)
        conn = self._connect()
        try:
            conn.execute("BEGIN")  # type: ignore[union-attr]
            conn.executemany(  # type: ignore[union-attr]
                "INSERT OR REPLACE INTO hashes (inode, size, mtime_ns, hash) VALUES (?, ?, ?, ?)", rows
            )
            conn.execute("COMMIT")  # type: ignore[union-attr]
        except sqlite3.OperationalError:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")  # type: ignore[union-attr]
            return 0  # busy or read-only: the cache simply stays as it was
        return len(rows)

    # --- whole directories ------------------------------------------------------------------
    # A directory's fingerprint hashes every file's (path, stat key, executable bit). When
    # it matches a recorded one, the directory's tree hash is known without looking up or
    # hashing a single file: an unchanged 20,000-file directory costs its stat calls only.

    def lookup_tree(self, fingerprint: str) -> tuple[str, int, int] | None:
        conn = self._connect()
        try:
            row = conn.execute("SELECT hash, size, files FROM trees WHERE fingerprint = ?", (fingerprint,)).fetchone()  # type: ignore[union-attr]
        except sqlite3.DatabaseError:
            return None
        return (row[0], row[1], row[2]) if row else None

    def record_tree(self, fingerprint: str, digest: str, size: int, files: int, newest_mtime_ns: int) -> None:
        if newest_mtime_ns >= self.tick_ns():
            return  # racy: a file may still change within this tick
        conn = self._connect()
        try:
            conn.execute(  # type: ignore[union-attr]
                "INSERT OR REPLACE INTO trees (fingerprint, hash, size, files) VALUES (?, ?, ?, ?)",
                (fingerprint, digest, size, files),
            )
        except sqlite3.OperationalError:
            pass  # busy or read-only: the cache simply stays as it was

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
