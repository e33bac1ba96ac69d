"""Reading the workspace: scanning tracked paths and hashing what the state database does not know."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import xxhash

from .. import deepfs
from ..errors import InvalidPathError
from ..fsio import TMP_PREFIX
from ..parallel import run_parallel
from ..paths import PATH_MAX
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo
from ..store.hashing import hash_bytes, hash_file
from ..store.objects import CLONE_FROM, ObjectBatch
from ..store.state import StatKey, stat_key
from ..store.tree import FileRecord, TreeEntry, encode_manifest


class WorkspaceFile(NamedTuple):
    rel: str  # relative to the tracked path (posix); "" for a tracked single file
    path: str  # absolute
    key: StatKey
    executable: bool


def _workspace_file(rel: str, path: str, st: os.stat_result) -> WorkspaceFile:
    return WorkspaceFile(rel, path, stat_key(st), bool(st.st_mode & stat.S_IXUSR))


def scan_file(path: str) -> WorkspaceFile | None:
    try:
        st = deepfs.call(os.stat, path)
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
    top_stat = deepfs.call(os.stat, top)
    visited = {(top_stat.st_dev, top_stat.st_ino)}
    stack: list[tuple[str, str]] = [(top, "")]
    fast = deepfs.FAST
    while stack:
        folder, prefix = stack.pop()
        # a folder nested past PATH_MAX is read through a descriptor: its entries' paths are
        # bare names, joined here (the long full path is what callers keep)
        joined = len(folder) > fast
        try:
            entries = os.scandir(folder) if not joined else deepfs.scandir(folder)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            raise InvalidPathError(
                f"{repo.rel(top)}/{prefix[:80]}...: folders nested too deep to be read by path (over {PATH_MAX} bytes)",
                hint="flatten the folders, or track the deepest ones separately",
            ) from None
        with entries:
            for entry in entries:
                name = entry.name
                path = entry.path if not joined else f"{folder}/{name}"
                if name.startswith(TMP_PREFIX):
                    if temps is not None:
                        temps.append(path)
                    continue
                if not name.isascii():
                    try:
                        name.encode("utf-8")
                    except UnicodeEncodeError:
                        raise InvalidPathError(
                            f"{repo.rel(folder)}/{name.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')}: "
                            "file name is not valid UTF-8",
                            hint="rename the file; tracked names must be UTF-8 to travel between machines",
                        ) from None
                rel = prefix + name
                # the common cases first; is_dir/is_symlink read the entry's type, no system call
                if entry.is_dir(follow_symlinks=False):
                    stack.append((path, rel + "/"))
                elif not entry.is_symlink():
                    st = entry.stat(follow_symlinks=False)
                    if st.st_mode & 0o170000 == 0o100000:  # a regular file
                        out[rel] = WorkspaceFile(
                            rel, path, (st.st_ino, st.st_size, st.st_mtime_ns), bool(st.st_mode & 0o100)
                        )
                else:
                    if joined:
                        # realpath reads each component by its full path: past PATH_MAX it cannot
                        # tell where a link leads, and an unchecked link is never followed
                        raise InvalidPathError(
                            f"{repo.rel(folder)[:80]}.../{name}: is a symlink nested too deep to check where it leads",
                            hint="replace it with the data itself, or remove it",
                        )
                    real = os.path.realpath(path)
                    if not (real == root_real or real.startswith(root_real + os.sep)):
                        raise InvalidPathError(
                            f"{repo.rel(path)}: is a symlink that points outside the repository (to {real})",
                            hint="replace it with the data itself, or remove it",
                        )
                    try:
                        st = os.stat(path)
                    except FileNotFoundError:
                        raise InvalidPathError(f"{repo.rel(path)}: is a broken symlink") from None
                    if stat.S_ISDIR(st.st_mode):
                        if (st.st_dev, st.st_ino) in visited:
                            raise InvalidPathError(
                                f"{repo.rel(path)}: is a symlink that loops back to a folder above it",
                                hint="remove the symlink, or replace it with the data itself",
                            )
                        visited.add((st.st_dev, st.st_ino))
                        stack.append((path, rel + "/"))
                    elif stat.S_ISREG(st.st_mode):
                        out[rel] = _workspace_file(rel, path, st)
    return out


def remove_temps(paths: list[str]) -> None:
    """Delete temp files that an interrupted writer left (the caller holds the path's lock)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            deepfs.call(os.unlink, path)


def list_folders(top: str | os.PathLike[str]) -> list[str]:
    """``top`` and every real folder below it (symlinks not followed), parents before children.
    A loop, not ``os.walk``: Python 3.11's walk recurses, and a tree may be deeper than that."""
    out = [os.fspath(top)]
    stack = [out[0]]
    while stack:
        folder = stack.pop()
        joined = deepfs.joins(folder)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), deepfs.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    path = entry.path if not joined else f"{folder}/{entry.name}"
                    out.append(path)
                    stack.append(path)
    out.sort(key=lambda f: f.count(os.sep))
    return out


def remove_tree(top: str | os.PathLike[str]) -> None:
    """Delete a real folder and everything below it; links inside are removed, never followed."""
    folders = list_folders(top)
    for folder in reversed(folders):
        joined = deepfs.joins(folder)
        with contextlib.suppress(FileNotFoundError), deepfs.scandir(folder) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        if joined:
                            os.unlink(entry.name, dir_fd=entries.fd)
                        else:
                            os.unlink(entry.path)
        deepfs.call(os.rmdir, folder)


def make_folders(root: str | os.PathLike[str], rel: str) -> None:
    """``os.makedirs(root/rel, exist_ok=True)`` without recursion (a tree may be deeper than
    Python recurses, and than a path the kernel takes); the caller checked the way
    (``paths.Destinations``)."""
    path = os.path.join(root, rel)
    try:
        deepfs.call(os.mkdir, path)
        return
    except FileExistsError:
        return
    except FileNotFoundError:
        pass
    current = os.fspath(root)
    for part in rel.split("/"):
        current = f"{current}/{part}"
        with contextlib.suppress(FileExistsError):
            deepfs.call(os.mkdir, current)


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
    place and hard-linked in instead: no bytes are written at all. Where cache.type
    allows reflink and the filesystem has it, a large file is hashed and reflinked in
    (``ObjectBatch.add_file``): also no bytes written. Newly learned hashes are recorded
    in the state database.
    """
    state = repo.state
    store = repo.objects
    records: dict[str, FileRecord] = {}
    todo: list[WorkspaceFile] = []
    items = list(files)
    for item, known in zip(items, state.lookup_many([item.key for item in items]), strict=True):
        if known is not None and (into is None or store.exists(known)):
            records[item.rel] = FileRecord(known, item.key[1], item.executable)
        else:
            todo.append(item)
    if not todo:
        return HashOutcome(records, 0)

    # filled by the workers themselves (list.append is atomic), so that every hash computed
    # before an error or Ctrl-C is remembered, even one the main thread had not collected yet
    learned: list[tuple[StatKey, str]] = []
    # where cache.type allows reflink, a large file is reflinked into the cache after its
    # hash (read once, written never) on filesystems that have it
    clone = "reflink" in repo.config.link_types

    def read(path: str, item: WorkspaceFile) -> tuple[str, int]:
        if into is None:
            return hash_file(path)
        if adopt and not item.executable:  # an executable file keeps its own mode: copy it in
            try:
                adopted = into.adopt_file(path)
            except OSError:  # another device, or links refused: copy after all
                adopted = None
            return adopted if adopted is not None else into.add_file(path)
        # a small file is never cloned: asking would only open it once more
        return into.add_file(path, clone=clone and item.key[1] >= CLONE_FROM)

    def work(item: WorkspaceFile) -> tuple[WorkspaceFile, str, int]:
        # a file nested past PATH_MAX is read through a stand-in path (deepfs)
        digest, size = read(item.path, item) if len(item.path) <= deepfs.FAST else deepfs.call(read, item.path, item)
        learned.append((item.key, digest))
        return item, digest, size

    with progress.task(description, total=len(todo)) as task:
        try:
            with run_parallel(work, todo, jobs=jobs, adaptive=True) as results:
                for item, digest, size in results:
                    records[item.rel] = FileRecord(digest, size, item.executable)
                    task.advance()
        finally:
            state.record(learned)  # what was hashed before an error or Ctrl-C is not hashed again
    return HashOutcome(records, len(todo))


@dataclass(frozen=True)
class DirSummary:
    hash: str
    size: int
    files: int
    hashed: int  # files whose bytes were read


def summarize_dir(
    repo: Repo,
    files: dict[str, WorkspaceFile],
    *,
    into: ObjectBatch | None = None,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
    description: str = "hashing",
) -> DirSummary:
    """A directory's tree hash, doing work only for folders that changed.

    Folders are taken deepest first, a level at a time. A folder's fingerprint hashes its
    files' names, stat keys and executable bits and its sub-folders' manifest hashes;
    when the state database knows it, the folder's manifest is known without touching its
    files. Otherwise its files are looked up (or hashed, and with ``into`` stored) and its
    manifest is built (and with ``into`` stored, after its files: children before parents).
    """
    state = repo.state
    store = repo.objects
    direct: dict[str, list[WorkspaceFile]] = {"": []}
    children: dict[str, list[str]] = {"": []}
    for rel, item in files.items():
        folder = rel.rpartition("/")[0]
        if folder not in direct:
            ancestor = folder
            while ancestor not in direct:
                direct[ancestor] = []
                children.setdefault(ancestor, [])
                parent = ancestor.rpartition("/")[0]
                children.setdefault(parent, []).append(ancestor)
                ancestor = parent
        direct[folder].append(item)
    levels: dict[int, list[str]] = {}
    for folder in direct:
        levels.setdefault(folder.count("/") + 1 if folder else 0, []).append(folder)
    done: dict[str, tuple[str, int, int]] = {}  # folder -> (manifest hash, size, files)
    hashed = 0
    record_rows: list[tuple[str, str, int, int, int]] = []
    for depth in sorted(levels, reverse=True):
        folders = levels[depth]
        prints = {folder: _folder_fingerprint(folder, direct[folder], children[folder], done) for folder in folders}
        known = state.lookup_trees(list(set(prints.values())))
        missed = []
        for folder in folders:
            hit = known.get(prints[folder])
            if hit is not None and (into is None or store.exists(hit[0])):
                done[folder] = hit
            else:
                missed.append(folder)
        if not missed:
            continue
        outcome = hash_files(
            repo,
            [f for folder in missed for f in direct[folder]],
            into=into,
            jobs=jobs,
            progress=progress,
            description=description,
        )
        hashed += outcome.hashed
        for folder in missed:
            entries = [
                TreeEntry(
                    item.rel.rpartition("/")[2], "f", outcome.records[item.rel].hash, item.key[1], item.executable
                )
                for item in direct[folder]
            ]
            for child in children[folder]:
                digest, size, count = done[child]
                entries.append(TreeEntry(child.rpartition("/")[2], "t", digest, size, False, count))
            data = encode_manifest(entries)
            digest = hash_bytes(data)
            if into is not None:
                into.add_bytes(data)
            summary = (digest, sum(e.size for e in entries), sum(e.files for e in entries))
            done[folder] = summary
            newest = max((item.key[2] for item in direct[folder]), default=0)
            record_rows.append((prints[folder], *summary, newest))
    state.record_trees(record_rows)
    digest, size, count = done[""]
    return DirSummary(digest, size, count, hashed)


def _folder_fingerprint(
    folder: str, items: list[WorkspaceFile], subfolders: list[str], done: dict[str, tuple[str, int, int]]
) -> str:
    parts = sorted(
        f"f\0{item.rel.rpartition('/')[2]}\0{item.key[0]}\0{item.key[1]}\0{item.key[2]}\0{int(item.executable)}"
        for item in items
    )
    parts += sorted(f"t\0{child.rpartition('/')[2]}\0{done[child][0]}" for child in subfolders)
    return xxhash.xxh3_128_hexdigest("\n".join(parts).encode())
