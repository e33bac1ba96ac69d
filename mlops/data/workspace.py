"""Reading the workspace: scanning tracked paths and hashing what the state database does not know."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import xxhash

from ..errors import InvalidPathError
from ..fsio import TMP_PREFIX
from ..parallel import run_parallel
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo
from ..store.hashing import hash_file
from ..store.objects import ObjectBatch
from ..store.state import StatKey, stat_key
from ..store.tree import FileRecord



class WorkspaceFile(NamedTuple):
    rel: str  # relative to the tracked path (posix); "" for a tracked single file
    path: str  # absolute
    key: StatKey
    executable: bool


def _workspace_file(rel: str, path: str, st: os.stat_result) -> WorkspaceFile:
    return WorkspaceFile(rel, path, stat_key(st), bool(st.st_mode & stat.S_IXUSR))


def scan_file(path: str) -> WorkspaceFile | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _workspace_file("", path, st)


def scan_dir(repo: Repo, top: str, *, temps: list[str] | None = None) -> dict[str, WorkspaceFile]:
    """Every regular file below ``top`` (absolute), by posix path relative to it.

    Symlinks are followed when they stay inside the repository and refused when they
    leave it or loop; temp files of interrupted mlops writers are skipped (and listed in
    ``temps`` for a writer holding the path's lock to remove). File names must be UTF-8:
    manifests are shared between machines.
    """
    out: dict[str, WorkspaceFile] = {}
    root_real = os.path.realpath(repo.root)
    top_stat = os.stat(top)
    visited = {(top_stat.st_dev, top_stat.st_ino)}
    stack: list[tuple[str, str]] = [(top, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(TMP_PREFIX):
                    if temps is not None:
                        temps.append(entry.path)
                    continue
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidPathError(
                        f"{repo.rel(folder)}/{name.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')}: "
                        "file name is not valid UTF-8",
                        hint="rename the file; tracked names must be UTF-8 to travel between machines",
                    ) from None
                rel = prefix + name
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if not (real == root_real or real.startswith(root_real + os.sep)):
                        raise InvalidPathError(
                            f"{repo.rel(entry.path)}: is a symlink that points outside the repository (to {real})",
                            hint="replace it with the data itself, or remove it",
                        )
                    try:
                        st = os.stat(entry.path)
                    except FileNotFoundError:
                        raise InvalidPathError(f"{repo.rel(entry.path)}: is a broken symlink") from None
                    if stat.S_ISDIR(st.st_mode):
                        if (st.st_dev, st.st_ino) in visited:
                            raise InvalidPathError(
                                f"{repo.rel(entry.path)}: is a symlink that loops back to a folder above it",
                                hint="remove the symlink, or replace it with the data itself",
                            )
                        visited.add((st.st_dev, st.st_ino))
                        stack.append((entry.path, rel + "/"))
                    elif stat.S_ISREG(st.st_mode):
                        out[rel] = _workspace_file(rel, entry.path, st)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, rel + "/"))
                elif entry.is_file(follow_symlinks=False):
                    out[rel] = _workspace_file(rel, entry.path, entry.stat(follow_symlinks=False))
    return out


def remove_temps(paths: list[str]) -> None:
    """Delete temp files that an interrupted writer left (the caller holds the path's lock)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(path)


def dir_fingerprint(files: dict[str, WorkspaceFile]) -> str:
    """A hash of every file's path, stat key and executable bit: equal means unchanged."""
    hasher = xxhash.xxh3_128()
    for rel in sorted(files):
        item = files[rel]
        ino, size, mtime = item.key
        hasher.update(f"{rel}\0{ino}\0{size}\0{mtime}\0{int(item.executable)}\n".encode())
    return hasher.hexdigest()


@dataclass
class HashOutcome:
    records: dict[str, FileRecord]
    hashed: int  # files whose bytes were read (not known to the state database)


def hash_files(
    repo: Repo,
    files: Iterable[WorkspaceFile],
    *,
    into: ObjectBatch | None = None,
    adopt: bool = False,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
    description: str = "hashing",
) -> HashOutcome:
    """Hash workspace files, reading only those the state database does not know.

    With ``into``, every file whose object is not yet in the cache is copied in while it
    is hashed (one read); with ``adopt`` as well (cache.type hardlink), it is hashed in
    place and hard-linked in instead: no bytes are written at all. Newly learned hashes
    are recorded in the state database.
    """
    state = repo.state
    store = repo.objects
    records: dict[str, FileRecord] = {}
    todo: list[WorkspaceFile] = []
    for item in files:
        known = state.lookup(item.key)
        if known is not None and (into is None or store.exists(known)):
            records[item.rel] = FileRecord(known, item.key[1], item.executable)
        else:
            todo.append(item)
    if not todo:
        return HashOutcome(records, 0)

    # filled by the workers themselves (list.append is atomic), so that every hash computed
    # before an error or Ctrl-C is remembered, even one the main thread had not collected yet
    learned: list[tuple[StatKey, str]] = []

    def work(item: WorkspaceFile) -> tuple[WorkspaceFile, str, int]:
        if into is None:
            digest, size = hash_file(item.path)
        elif adopt and not item.executable:  # an executable file keeps its own mode: copy it in
            digest, size = hash_file(item.path)
            try:
                into.link_in(item.path, digest)
            except OSError:  # another device, or links refused: copy after all
                digest, size = into.add_file(item.path)
        else:
            digest, size = into.add_file(item.path)
        learned.append((item.key, digest))
        return item, digest, size

    with progress.task(description, total=len(todo)) as task:
        try:
            with run_parallel(work, todo, jobs=jobs) as results:
                for item, digest, size in results:
                    records[item.rel] = FileRecord(digest, size, item.executable)
                    task.advance()
        finally:
            state.record(learned)  # what was hashed before an error or Ctrl-C is not hashed again
    return HashOutcome(records, len(todo))

