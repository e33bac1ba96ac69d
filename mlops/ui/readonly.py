"""The repository as the UI sees it: the same reads, no writes.

The one write a read would make is the state database (``.mlops/tmp/state.db``), the hash
cache that the pipeline's status fills as it hashes stage inputs. The UI keeps its own cache
in memory instead: the repository's files stay as they were (a test holds it), and a second
view of the pipeline page hashes nothing that did not change.

Git's racy rule without a tick file (writing one would be a write): a file whose mtime is less
than ``RACY_NS`` old when hashed is not kept, as it may still change within its timestamp tick.
"""

from __future__ import annotations

import threading
import time
from functools import cached_property
from pathlib import Path

from ..repo.repo import Repo
from ..store.state import StateDB, StatKey

RACY_NS = 2_000_000_000  # coarser than any filesystem's timestamp tick (FAT's is 2 s)
MAX_ENTRIES = 1_000_000  # bounded memory: past it the cache starts again


class MemoryState(StateDB):
    """The state database's interface over two dicts; never touches the disk."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent/ui-memory-state"))
        self._unusable = True  # the base class never opens a file
        self._hashes: dict[int, tuple[int, int, str]] = {}
        self._trees: dict[str, tuple[str, int, int]] = {}
        self._guard = threading.Lock()

    def lookup_many(self, keys: list[StatKey]) -> list[str | None]:
        with self._guard:
            out: list[str | None] = []
            for inode, size, mtime in keys:
                hit = self._hashes.get(inode)
                out.append(hit[2] if hit is not None and hit[0] == size and hit[1] == mtime else None)
            return out

    def tick_ns(self) -> int | None:
        return time.time_ns() - RACY_NS

    def record(self, entries) -> int:  # type: ignore[no-untyped-def]
        tick = self.tick_ns()
        assert tick is not None
        rows = [(k, digest) for k, digest in entries if k[2] < tick]
        with self._guard:
            if len(self._hashes) + len(rows) > MAX_ENTRIES:
                self._hashes.clear()
            for (inode, size, mtime), digest in rows:
                self._hashes[inode] = (size, mtime, digest)
        return len(rows)

    def lookup_trees(self, fingerprints: list[str]) -> dict[str, tuple[str, int, int]]:
        with self._guard:
            return {fp: self._trees[fp] for fp in fingerprints if fp in self._trees}

    def record_trees(self, rows: list[tuple[str, str, int, int, int]]) -> None:
        tick = self.tick_ns()
        assert tick is not None
        with self._guard:
            if len(self._trees) + len(rows) > MAX_ENTRIES:
                self._trees.clear()
            for fingerprint, digest, size, files, newest in rows:
                if newest < tick:
                    self._trees[fingerprint] = (digest, size, files)

    def close(self) -> None:
        return None


class ReadOnlyRepo(Repo):
    """A Repo whose hash cache lives in this process's memory, not in ``.mlops/tmp/``."""

    @cached_property
    def state(self) -> StateDB:
        return MemoryState()


def read_only(repo: Repo) -> ReadOnlyRepo:
    return ReadOnlyRepo(repo.root)
