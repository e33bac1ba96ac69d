"""`mlops status` and `mlops diff`: what changed in tracked data. Read-only: they take no lock."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import deepfs
from ..progress import NO_PROGRESS, Progress
from ..repo.git import git_repo
from ..repo.repo import Repo
from ..store.tree import FileRecord
from .pointer import Pointer
from .snapshot import pointer_records, pointers_from_blobs, read_workspace, workspace_pointers


@dataclass(frozen=True)
class FileChanges:
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.added) + len(self.modified) + len(self.deleted)


def compare_records(old: dict[str, FileRecord], new: dict[str, FileRecord]) -> FileChanges:
    added = tuple(sorted(p for p in new if p not in old))
    deleted = tuple(sorted(p for p in old if p not in new))
    modified = tuple(
        sorted(p for p in new if p in old and (new[p].hash, new[p].executable) != (old[p].hash, old[p].executable))
    )
    return FileChanges(added, modified, deleted)


@dataclass(frozen=True)
class TargetStatus:
    path: str
    kind: str
    state: str  # unchanged | modified | deleted
    in_cache: bool  # the pointer's object (or top manifest) is in the local cache
    changes: FileChanges = field(default_factory=FileChanges)
    detail: str = ""  # e.g. why file-level changes could not be listed

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "kind": self.kind, "state": self.state, "in_cache": self.in_cache}
        if self.kind == "dir" and self.state == "modified":
            out.update(
                added=list(self.changes.added), modified=list(self.changes.modified), deleted=list(self.changes.deleted)
            )
        if self.detail:
            out["detail"] = self.detail
        return out


NOT_PULLED = "not in cache"
PULL_HINT = "not in the cache (run 'mlops pull')"


@dataclass(frozen=True)
class StatusResult:
    targets: tuple[TargetStatus, ...]

    @property
    def clean(self) -> bool:
        # data a fresh clone has not pulled yet is not a change: there is nothing to record
        return all(t.state in ("unchanged", NOT_PULLED) for t in self.targets)


def status(
    repo: Repo, targets: list[str] | None = None, *, jobs: int | None = None, progress: Progress = NO_PROGRESS
) -> StatusResult:
    out = []
    try:
        for pointer in workspace_pointers(repo, targets):
            out.append(_target_status(repo, pointer, jobs=jobs, progress=progress))
    finally:
        deepfs.forget()  # folders held open for paths past PATH_MAX: this command is done with them
    return StatusResult(tuple(out))


def _target_status(repo: Repo, pointer: Pointer, *, jobs: int | None, progress: Progress) -> TargetStatus:
    in_cache = repo.objects.exists(pointer.hash)
    current = read_workspace(repo, pointer.target, need_records=False, jobs=jobs, progress=progress)
    if current.kind is None:
        if not in_cache:  # a fresh clone before `mlops pull`: nothing here, nothing in the cache
            return TargetStatus(pointer.target, pointer.kind, NOT_PULLED, False, detail=PULL_HINT)
        return TargetStatus(pointer.target, pointer.kind, "deleted", in_cache)
    if current.hash == pointer.hash and current.kind == pointer.kind:
        return TargetStatus(pointer.target, pointer.kind, "unchanged", in_cache)
    if pointer.kind == "file" or current.kind == "file":
        return TargetStatus(pointer.target, pointer.kind, "modified", in_cache)
    if current.records is None:
        current = read_workspace(repo, pointer.target, jobs=jobs, progress=progress)
    recorded = pointer_records(repo, pointer)
    if recorded is None:
        return TargetStatus(
            pointer.target,
            "dir",
            "modified",
            in_cache,
            detail="its manifest is not in the cache: run 'mlops fetch' for file-level changes",
        )
    return TargetStatus(pointer.target, "dir", "modified", in_cache, compare_records(recorded, current.records))


# --- diff between revisions ------------------------------------------------------------------


@dataclass(frozen=True)
class DiffEntry:
    change: str  # added | deleted | modified
    path: str  # the file (inside a directory: dir/relative)
    old_hash: str | None
    new_hash: str | None

    def to_dict(self) -> dict[str, object]:
        return {"change": self.change, "path": self.path, "old": self.old_hash, "new": self.new_hash}


@dataclass(frozen=True)
class DiffResult:
    a_rev: str
    b_rev: str  # "workspace" when comparing with the workspace
    entries: tuple[DiffEntry, ...]
    notes: tuple[str, ...] = ()


def diff(repo: Repo, a_rev: str, b_rev: str | None = None, *, jobs: int | None = None) -> DiffResult:
    git = git_repo(repo.root)
    old = {p.target: p for p in pointers_from_blobs(git.pointer_files_at(a_rev), origin=f"at revision {a_rev}")}
    notes: list[str] = []
    if b_rev is None:
        new_records, new_pointers = _workspace_side(repo, jobs=jobs)
    else:
        new_pointers = {
            p.target: p for p in pointers_from_blobs(git.pointer_files_at(b_rev), origin=f"at revision {b_rev}")
        }
        new_records = {}
    entries: list[DiffEntry] = []
    for target in sorted(set(old) | set(new_pointers)):
        a, b = old.get(target), new_pointers.get(target)
        if a is not None and b is not None and a.hash == b.hash and a.kind == b.kind:
            continue
        a_files = _records(repo, a, notes) if a else {}
        b_files = new_records.get(target) if target in new_records else (_records(repo, b, notes) if b else {})
        if a_files is None or b_files is None:
            change = "added" if a is None else "deleted" if b is None else "modified"
            entries.append(DiffEntry(change, target, a.hash if a else None, b.hash if b else None))
            continue
        changes = compare_records(a_files, b_files)
        for kind, paths in (("added", changes.added), ("deleted", changes.deleted), ("modified", changes.modified)):
            for rel in paths:
                full = f"{target}/{rel}" if rel else target
                old_rec, new_rec = a_files.get(rel), b_files.get(rel)
                entries.append(
                    DiffEntry(kind, full, old_rec.hash if old_rec else None, new_rec.hash if new_rec else None)
                )
    entries.sort(key=lambda e: e.path)
    return DiffResult(a_rev, b_rev or "workspace", tuple(entries), tuple(dict.fromkeys(notes)))


def _records(repo: Repo, pointer: Pointer, notes: list[str]) -> dict[str, FileRecord] | None:
    records = pointer_records(repo, pointer)
    if records is None:
        notes.append(
            f"{pointer.target}: manifest {pointer.hash} not in the cache; run 'mlops fetch' for file-level changes"
        )
    return records


def _workspace_side(repo: Repo, *, jobs: int | None) -> tuple[dict[str, dict[str, FileRecord]], dict[str, Pointer]]:
    """The workspace as it is: every tracked path read from disk (through the state database)."""
    records: dict[str, dict[str, FileRecord]] = {}
    pointers: dict[str, Pointer] = {}
    try:
        for pointer in workspace_pointers(repo):
            current = read_workspace(repo, pointer.target, jobs=jobs)
            if current.kind is None:
                continue
            records[pointer.target] = current.records
            pointers[pointer.target] = Pointer(
                pointer.target, current.kind, current.hash or "", current.size, len(current.records)
            )
    finally:
        deepfs.forget()
    return records, pointers
