"""Snapshots: what a tracked path holds, in the workspace or according to a pointer file.

Shared by status, diff and checkout: one way to read the workspace (through the state
database) and one way to expand a directory pointer into its files (through the
manifests in the cache).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidPathError, MissingObjectError
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo
from ..store.tree import FileRecord, build_tree, flatten_tree
from .pointer import Pointer, find_pointer_files, parse_pointer, read_pointer
from .workspace import WorkspaceFile, hash_files, scan_dir, scan_file, summarize_dir


@dataclass(frozen=True)
class WorkspaceSnapshot:
    """The workspace side of a tracked path; ``kind`` is None when the path is missing.

    ``records`` is None when the hash came from a directory fingerprint and the caller
    did not ask for the files' hashes.
    """

    kind: str | None
    hash: str | None
    size: int
    files: dict[str, WorkspaceFile]  # scanned files ("" for a single file)
    records: dict[str, FileRecord] | None  # their hashes
    temps: tuple[str, ...] = ()  # temp files of interrupted writers found inside


def read_workspace(
    repo: Repo, rel: str, *, need_records: bool = True, jobs: int | None = None, progress: Progress = NO_PROGRESS
) -> WorkspaceSnapshot:
    absolute = repo.abs(rel)
    if absolute.is_dir():
        temps: list[str] = []
        files = scan_dir(repo, str(absolute), temps=temps)
        if not need_records:
            summary = summarize_dir(repo, files, jobs=jobs, progress=progress, description=rel)
            return WorkspaceSnapshot("dir", summary.hash, summary.size, files, None, tuple(temps))
        records = hash_files(repo, files.values(), jobs=jobs, progress=progress, description=rel).records
        tree = build_tree(records)
        return WorkspaceSnapshot("dir", tree.hash, tree.size, files, records, tuple(temps))
    item = scan_file(str(absolute))
    if item is None:
        return WorkspaceSnapshot(None, None, 0, {}, {})
    records = hash_files(repo, [item], jobs=1).records
    return WorkspaceSnapshot("file", records[""].hash, records[""].size, {"": item}, records)


def pointer_records(repo: Repo, pointer: Pointer) -> dict[str, FileRecord] | None:
    """The files a pointer names, by relative path; None when its manifests are not in the cache."""
    if not pointer.is_dir:
        return {"": FileRecord(pointer.hash, pointer.size)}
    try:
        return flatten_tree(repo.objects.read_bytes, pointer.hash, source=pointer.pointer_path)
    except MissingObjectError:
        return None


def require_pointer_records(repo: Repo, pointer: Pointer) -> dict[str, FileRecord]:
    records = pointer_records(repo, pointer)
    if records is None:
        raise MissingObjectError(
            f"{pointer.target}: its directory manifest {pointer.hash} is not in the cache",
            hint="run 'mlops pull' (or 'mlops fetch') first",
            object=pointer.hash,
        )
    return records


def workspace_pointers(repo: Repo, targets: list[str] | None = None) -> list[Pointer]:
    """The pointer files in the workspace, or those of the named targets."""
    if targets:
        rels = []
        for target in targets:
            rel = repo.check_user_path(target.removesuffix(".mlops"), must_exist=False)
            if not (repo.root / (rel + ".mlops")).is_file():
                raise InvalidPathError(
                    f"{rel}: is not tracked (no {rel}.mlops)", hint=f"run 'mlops add {rel}' to track it"
                )
            rels.append(rel + ".mlops")
    else:
        rels = list(find_pointer_files(repo.root))
    return [read_pointer(repo.root, r) for r in rels]


def pointers_from_blobs(blobs: dict[str, bytes], *, origin: str = "") -> list[Pointer]:
    """Pointer files read from git (``origin`` says where: ``at revision v1``)."""
    return [parse_pointer(data, path, origin=origin) for path, data in sorted(blobs.items())]
