"""`mlops add`: snapshot files and directories into the cache and write their pointer files.

Order (children before parents): objects (made durable in a batch), then manifests,
then the pointer file, then .gitignore. A crash at any point leaves either the old
pointer or the new one, and at worst objects that nothing references (gc removes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import deepfs
from ..errors import InvalidPathError
from ..formats import read_bytes
from ..fsio import atomic_write
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo
from ..store.links import is_link_kind_shared, place
from ..store.tree import build_tree
from .pointer import POINTER_SUFFIX, Pointer, read_pointer, write_pointer
from .workspace import hash_files, remove_temps, scan_dir, scan_file, summarize_dir


@dataclass(frozen=True)
class AddedTarget:
    path: str
    kind: str
    hash: str
    size: int
    files: int
    hashed: int  # files read because the state database did not know them
    changed: bool  # the pointer file changed (or is new)
    gitignore: str  # the .gitignore that lists the data


@dataclass(frozen=True)
class AddResult:
    targets: tuple[AddedTarget, ...]


def add(repo: Repo, paths: Sequence[str], *, jobs: int | None = None, progress: Progress = NO_PROGRESS) -> AddResult:
    rels = [repo.check_user_path(p) for p in paths]
    for rel in rels:
        _check_not_inside_tracked(repo, rel)
        for other in rels:
            if rel.startswith(other + "/"):
                raise InvalidPathError(
                    f"{rel}: is inside {other}, which this command also adds",
                    hint=f"add {other} alone: it includes {rel}",
                )
    done = []
    with repo.store_lock():
        for rel in dict.fromkeys(rels):
            with repo.path_lock(rel):
                done.append(_add_one(repo, rel, jobs=jobs, progress=progress))
    return AddResult(tuple(done))


def _check_not_inside_tracked(repo: Repo, rel: str) -> None:
    parts = rel.split("/")
    for depth in range(1, len(parts)):
        ancestor = "/".join(parts[:depth])
        if (repo.root / (ancestor + POINTER_SUFFIX)).is_file():
            raise InvalidPathError(
                f"{rel}: is inside {ancestor}, which is tracked as a whole",
                hint=f"change the file, then run 'mlops add {ancestor}'",
            )


@dataclass(frozen=True)
class Snapshot:
    """A path snapshotted into the store: its pointer, and how many files had to be read."""

    pointer: Pointer
    hashed: int


def snapshot_path(
    repo: Repo, rel: str, *, link_workspace: bool = True, jobs: int | None = None, progress: Progress = NO_PROGRESS
) -> Snapshot:
    """Store a workspace file or folder in the cache (objects, then manifests) and name it.

    Used by `add` (which then writes a pointer file) and by pipeline stages (whose
    outputs the lock file names). With a shared link kind first in cache.type, the
    workspace copy becomes a read-only link to the cache afterwards, unless
    ``link_workspace`` is False (a git-tracked file that must stay a plain file).
    """
    try:
        return _snapshot_path(repo, rel, link_workspace=link_workspace, jobs=jobs, progress=progress)
    finally:
        deepfs.forget()  # folders held open for paths past PATH_MAX: this snapshot is done with them


def _snapshot_path(repo: Repo, rel: str, *, link_workspace: bool, jobs: int | None, progress: Progress) -> Snapshot:
    absolute = repo.abs(rel)
    store = repo.objects
    kinds = repo.config.link_types
    link = link_workspace and is_link_kind_shared(kinds[0])
    adopt = link and kinds[0] == "hardlink"  # the file itself becomes the object: nothing copied
    if absolute.is_dir():
        temps: list[str] = []
        files = scan_dir(repo, str(absolute), temps=temps)
        remove_temps(temps)  # left by an interrupted checkout; the caller holds the path's lock
        nested = sorted(r for r in files if r.endswith(POINTER_SUFFIX))
        if nested:
            raise InvalidPathError(
                f"{rel}: holds tracked data of its own ({rel}/{nested[0]})",
                hint="track the folders inside separately, or remove their pointer files first",
            )
        if link:
            # every workspace file is replaced by a link below, so every file's hash is needed
            with store.batch() as batch:
                outcome = hash_files(
                    repo, files.values(), into=batch, adopt=adopt, jobs=jobs, progress=progress, description=rel
                )
                tree = build_tree(outcome.records)
                for data in tree.manifests.values():
                    batch.add_bytes(data)
            pointer = Pointer(rel, "dir", tree.hash, tree.size, tree.files)
            workspace = [(files[r].path, outcome.records[r]) for r in files]
            hashed = outcome.hashed
        else:
            # only folders that changed are looked at: one new file costs the folders on its path
            with store.batch() as batch:
                summary = summarize_dir(repo, files, into=batch, jobs=jobs, progress=progress, description=rel)
            pointer = Pointer(rel, "dir", summary.hash, summary.size, summary.files)
            workspace = []
            hashed = summary.hashed
    else:
        item = scan_file(str(absolute))
        if item is None:
            raise InvalidPathError(f"{rel}: not a regular file or folder")
        with store.batch() as batch:
            outcome = hash_files(repo, [item], into=batch, adopt=adopt, progress=progress, description=rel)
        record = outcome.records[""]
        pointer = Pointer(rel, "file", record.hash, record.size)
        workspace = [(item.path, record)]
        hashed = outcome.hashed
    if link:
        # the workspace copy becomes a read-only link to the cache, as cache.type asks
        for path, record in workspace:
            # a file nested past PATH_MAX through a stand-in path (deepfs)
            deepfs.call2(place, store.file(record.hash), path, kinds, executable=record.executable)
    return Snapshot(pointer, hashed)


def _add_one(repo: Repo, rel: str, *, jobs: int | None, progress: Progress) -> AddedTarget:
    old = _old_pointer(repo, rel)
    snap = snapshot_path(repo, rel, jobs=jobs, progress=progress)
    pointer = snap.pointer
    changed = old != pointer
    if changed:
        write_pointer(repo.root, pointer)
    gitignore = ignore_in_git(repo, rel)
    return AddedTarget(rel, pointer.kind, pointer.hash, pointer.size, pointer.files, snap.hashed, changed, gitignore)


def _old_pointer(repo: Repo, rel: str) -> Pointer | None:
    if not (repo.root / (rel + POINTER_SUFFIX)).is_file():
        return None
    try:
        return read_pointer(repo.root, rel + POINTER_SUFFIX)
    except Exception:  # noqa: BLE001 - a broken pointer is simply replaced by add
        return None


def _gitignore_escape(name: str) -> str:
    """A file name as a literal .gitignore pattern (no wildcards, no comment, no negation)."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in name)
    if escaped.startswith(("#", "!")):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def ignore_in_git(repo: Repo, rel: str) -> str:
    """List ``/name`` in the .gitignore beside the data, as DVC does; idempotent."""
    parent, _, name = rel.rpartition("/")
    gitignore = repo.root / parent / ".gitignore" if parent else repo.root / ".gitignore"
    entry = "/" + _gitignore_escape(name)
    with repo.lock("gitignore", what=".gitignore files"):
        # bytes, not text: git reads .gitignore in any encoding; a folder in its place is named
        text = read_bytes(gitignore, what=".gitignore file") if gitignore.exists() else b""
        if entry.encode() not in text.splitlines():
            if text and not text.endswith(b"\n"):
                text += b"\n"
            atomic_write(gitignore, text + entry.encode() + b"\n")
    return repo.rel(gitignore)
