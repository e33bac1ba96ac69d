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
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
    """The cache. Whatever state its file is in (garbage, truncated, a folder, another schema,
    left locked by a dead process, a read-only folder), it never raises: a damaged database is
    removed and built anew, and one that cannot be opened at all makes every lookup a miss."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._unusable = False  # could not be opened even after a rebuild: work without the cache
        self._rebuilt = False
        # One connection serves every thread of a command (`mlops run -j 8` snapshots outputs in
        # parallel). sqlite3 lets threads share it but not interleave on it: two BEGINs on one
        # connection fail, and a close() in one thread while another executes crashed the
        # interpreter (SIGSEGV). Every use of the connection holds this lock.
        self._lock = threading.RLock()

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is None and not self._unusable:
            conn = self._open()
            if conn is None:
                self._remove()
                conn = self._open()
            self._unusable = conn is None
            self._conn = conn
        return self._conn

    def _open(self) -> sqlite3.Connection | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=2.0, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError):
            return None
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
            conn.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last commit costs a rehash
            conn.executescript(SCHEMA)
            # a database of another shape (same table names, other columns) is as good as damaged
            conn.execute("SELECT inode, size, mtime_ns, hash FROM hashes LIMIT 1").fetchall()
            conn.execute("SELECT fingerprint, hash, size, files FROM trees LIMIT 1").fetchall()
        except sqlite3.Error:
            conn.close()
            return None
        return conn

    def _remove(self) -> None:
        """Remove the database and its side files; a folder in its place only when empty."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            side = self.path.with_name(self.path.name + suffix)
            with contextlib.suppress(OSError):
                if side.is_dir() and not side.is_symlink():
                    side.rmdir()
                else:
                    side.unlink()

    def _damaged(self, exc: sqlite3.Error) -> None:
        """A damaged file found while in use (not a busy or read-only one): rebuilt once."""
        if isinstance(exc, sqlite3.OperationalError) or self._rebuilt:
            return
        self._rebuilt = True
        self.close()
        self._remove()

    def _select_in(self, sql: str, keys: list[Any]) -> list[tuple[Any, ...]] | None:
        """Rows of ``sql`` (with one ``IN ({marks})``) for every key, asked in chunks below
        sqlite's bound-parameter limit; None when the database cannot be read."""
        rows: list[tuple[Any, ...]] = []
        with self._lock:
            conn = self._connect()
            if conn is None:
                return None
            try:
                for start in range(0, len(keys), 900):
                    chunk = keys[start : start + 900]
                    rows.extend(conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk))
            except sqlite3.Error as exc:
                self._damaged(exc)
                return None
        return rows

    def _insert_many(self, sql: str, rows: list[tuple[Any, ...]]) -> bool:
        """One transaction; False when busy, read-only or damaged (the cache stays as it was)."""
        with self._lock:
            conn = self._connect()
            if conn is None:
                return False
            try:
                conn.execute("BEGIN")
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                self._damaged(exc)
                return False
        return True

    def lookup_many(self, keys: list[StatKey]) -> list[str | None]:
        """The recorded hash of each file whose stat still matches (None where not).

        Asked in batches by inode, so a command that touches a thousand files of a
        million-file directory reads a thousand rows, not the whole table.
        """
        rows = self._select_in(
            "SELECT inode, size, mtime_ns, hash FROM hashes WHERE inode IN ({marks})", list({k[0] for k in keys})
        )
        if rows is None:
            return [None] * len(keys)
        found = {inode: (size, mtime, digest) for inode, size, mtime, digest in rows}
        out: list[str | None] = []
        for inode, size, mtime in keys:
            hit = found.get(inode)
            out.append(hit[2] if hit is not None and hit[0] == size and hit[1] == mtime else None)
        return out

    def lookup(self, key: StatKey) -> str | None:
        """The recorded hash of a file whose stat still matches, else None."""
        return self.lookup_many([key])[0]

    def tick_ns(self) -> int | None:
        """The filesystem's idea of 'now', at its own timestamp granularity; None when the
        tick file cannot be written (then nothing is recorded: every stat counts as racy)."""
        tick = self.path.parent / "state.tick"
        try:
            tick.parent.mkdir(parents=True, exist_ok=True)
            with open(tick, "wb") as handle:
                handle.write(b"t")
            return os.stat(tick).st_mtime_ns
        except OSError:
            return None

    def record(self, entries: Iterable[tuple[StatKey, str]]) -> int:
        """Record hashes for stats taken before now; racy ones are skipped. Returns the count kept."""
        tick = self.tick_ns()
        if tick is None:
            return 0
        rows = [(k[0], k[1], k[2], digest) for k, digest in entries if k[2] < tick]
        if not rows:
            return 0
        ok = self._insert_many("INSERT OR REPLACE INTO hashes (inode, size, mtime_ns, hash) VALUES (?, ?, ?, ?)", rows)
        return len(rows) if ok else 0

    # --- folders ------------------------------------------------------------------------------
    # A folder's fingerprint hashes its files' (name, stat key, executable bit) and its
    # sub-folders' manifest hashes. When it matches a recorded one, the folder's manifest
    # is known without looking up or hashing a single file in it: an unchanged folder costs
    # its stat calls only, and one changed file costs only the folders on its path.

    def lookup_trees(self, fingerprints: list[str]) -> dict[str, tuple[str, int, int]]:
        rows = self._select_in(
            "SELECT fingerprint, hash, size, files FROM trees WHERE fingerprint IN ({marks})", fingerprints
        )
        return {fingerprint: (digest, size, files) for fingerprint, digest, size, files in rows or ()}

    def record_trees(self, rows: list[tuple[str, str, int, int, int]]) -> None:
        """(fingerprint, manifest hash, size, files, newest file mtime); racy folders are skipped."""
        tick = self.tick_ns()
        if tick is None:
            return
        keep = [(fp, digest, size, files) for fp, digest, size, files, newest in rows if newest < tick]
        if keep:
            self._insert_many("INSERT OR REPLACE INTO trees (fingerprint, hash, size, files) VALUES (?, ?, ?, ?)", keep)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
