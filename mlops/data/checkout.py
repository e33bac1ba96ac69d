"""`mlops checkout`: make the workspace match the pointer files (of the workspace, or of a git revision).

Each tracked path is done in two phases: every file to place is first staged at a temp
name beside its destination, its object's bytes hashed on the way; only when all of a
path's files staged cleanly are they renamed into place. A corrupt object therefore
places nothing, and Ctrl-C leaves each file either old or new, never half-written.
Workspace content that is not in the cache is never overwritten or removed without
``force``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import CorruptObjectError, InvalidPathError, MissingObjectError, UsageError
from ..fsio import TMP_PREFIX
from ..parallel import run_parallel
from ..progress import NO_PROGRESS, Progress
from ..repo.git import git_repo
from ..repo.repo import Repo
from ..store.links import stage
from ..store.state import stat_key
from ..store.tree import FileRecord
from .pointer import Pointer
from .snapshot import pointers_from_blobs, read_workspace, require_pointer_records, workspace_pointers
from .workspace import remove_temps


@dataclass(frozen=True)
class CheckedOut:
    path: str
    placed: int
    removed: int
    unchanged: int
    link: str | None  # the link kind used, when something was placed

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "placed": self.placed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "link": self.link,
        }


@dataclass(frozen=True)
class CheckoutResult:
    targets: tuple[CheckedOut, ...]

    @property
    def changed_files(self) -> int:
        return sum(t.placed + t.removed for t in self.targets)


def checkout(
    repo: Repo,
    targets: list[str] | None = None,
    *,
    rev: str | None = None,
    force: bool = False,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
    extra_pointers: Sequence[Pointer] = (),
) -> CheckoutResult:
    """Place the data the pointer files name; ``extra_pointers`` are paths other layers name
    (pipeline outputs), placed too when no targets are given."""
    if rev is None:
        pointers = workspace_pointers(repo, targets)
    else:
        pointers = pointers_from_blobs(git_repo(repo.root).pointer_files_at(rev))
        if targets:
            wanted = {repo.check_user_path(t.removesuffix(".mlops"), must_exist=False) for t in targets}
            missing = sorted(wanted - {p.target for p in pointers})
            if missing:
                raise InvalidPathError(
                    f"{missing[0]}: is not tracked at revision {rev}", hint=f"see 'mlops diff {rev}'"
                )
            pointers = [p for p in pointers if p.target in wanted]
    if not targets:
        known = {p.target for p in pointers}
        pointers = [*pointers, *(p for p in extra_pointers if p.target not in known)]
    done = []
    with repo.store_lock():
        for pointer in pointers:
            with repo.path_lock(pointer.target):
                done.append(checkout_pointer(repo, pointer, force=force, jobs=jobs, progress=progress))
    return CheckoutResult(tuple(done))


def checkout_pointer(
    repo: Repo,
    pointer: Pointer,
    *,
    force: bool = False,
    link_kinds: tuple[str, ...] | None = None,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> CheckedOut:
    """Make one path match a pointer (the caller holds the store lock and the path's lock).

    ``link_kinds`` overrides cache.type (a git-tracked file is placed as a copy)."""
    store = repo.objects
    kinds = link_kinds or repo.config.link_types
    quick = read_workspace(repo, pointer.target, need_records=False, jobs=jobs)
    remove_temps(list(quick.temps))  # left by an interrupted checkout; we hold the path's lock
    if quick.kind == pointer.kind and quick.hash == pointer.hash:
        return CheckedOut(pointer.target, 0, 0, pointer.files, None)  # already in place
    wanted = require_pointer_records(repo, pointer)
    current = quick if quick.records is not None else read_workspace(repo, pointer.target, jobs=jobs)
    assert current.records is not None
    top = repo.abs(pointer.target)

    if current.kind is not None and current.kind != pointer.kind:
        # a file where a folder belongs, or the reverse: it goes as a whole
        _refuse_losing(repo, pointer.target, [(pointer.target, r.hash) for r in current.records.values()], force)
        if current.kind == "dir":
            shutil.rmtree(top)
        else:
            os.unlink(top)
        current_records: dict[str, FileRecord] = {}
    else:
        current_records = current.records

    to_place = [rel for rel, rec in wanted.items() if current_records.get(rel) != rec]
    to_remove = [rel for rel in current_records if rel not in wanted] if pointer.is_dir else []
    unchanged = len(wanted) - len(to_place)
    if pointer.is_dir and not top.is_dir():
        top.mkdir(parents=True)  # a tracked folder that is (or became) empty still exists
    if not to_place and not to_remove:
        return CheckedOut(pointer.target, 0, 0, unchanged, None)

    def full(rel: str) -> str:
        return f"{pointer.target}/{rel}" if rel else pointer.target

    at_risk = [(full(rel), current_records[rel].hash) for rel in (*to_place, *to_remove) if rel in current_records]
    _refuse_losing(repo, pointer.target, at_risk, force)

    missing = sorted({wanted[rel].hash for rel in to_place if not store.exists(wanted[rel].hash)})
    if missing:
        raise MissingObjectError(
            f"{pointer.target}: {len(missing)} object(s) not in the cache (first: {missing[0]})",
            hint="run 'mlops pull' to fetch them from the remote",
            objects=missing[:20],
        )

    if pointer.is_dir:
        for folder in {os.path.dirname(full(rel)) for rel in to_place}:
            (repo.root / folder).mkdir(parents=True, exist_ok=True)
    else:
        top.parent.mkdir(parents=True, exist_ok=True)

    staged: list[tuple[str, str, str]] = []  # (temp, destination, rel)
    link_used: set[str] = set()
    learned: list[tuple[tuple[int, int, int], str]] = []

    def work(rel: str) -> tuple[str, str, str, str]:
        record = wanted[rel]
        dest = str(repo.root / full(rel))
        try:
            tmp, kind = stage(store.file(record.hash), dest, kinds, executable=record.executable, expect=record.hash)
        except ValueError:
            raise CorruptObjectError(
                f"{full(rel)}: object {record.hash} in the cache is corrupt; nothing placed for {pointer.target}",
                hint="run 'mlops verify', then 'mlops pull' to fetch a good copy",
                object=record.hash,
                file=full(rel),
            ) from None
        return tmp, dest, rel, kind

    try:
        results = []
        with (
            progress.task(f"checkout {pointer.target}", total=len(to_place)) as task,
            run_parallel(work, to_place, jobs=jobs, adaptive=True) as staging,
        ):
            for result in staging:
                results.append(result)
                task.advance()
        for tmp, dest, rel, kind in results:
            staged.append((tmp, dest, rel))
            link_used.add(kind)
        for tmp, dest, rel in staged:
            os.replace(tmp, dest)
            with contextlib.suppress(OSError):
                learned.append((stat_key(os.stat(dest)), wanted[rel].hash))
    except BaseException:
        # the first error (or Ctrl-C) stops the placing: no temp file of ours may stay behind;
        # each destination holds its old file or its whole new one
        _remove_own_temps({os.path.dirname(str(repo.root / full(rel))) for rel in to_place})
        repo.state.record(learned)
        raise

    for rel in to_remove:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(repo.root / full(rel))
    if to_remove:
        _prune_empty_dirs(top)
    repo.state.record(learned)
    return CheckedOut(pointer.target, len(to_place), len(to_remove), unchanged, ",".join(sorted(link_used)) or None)


def _refuse_losing(repo: Repo, target: str, at_risk: list[tuple[str, str]], force: bool) -> None:
    """Refuse to overwrite or delete workspace content that exists nowhere else."""
    if force:
        return
    lost = [path for path, digest in at_risk if not repo.objects.exists(digest)]
    if lost:
        more = f" and {len(lost) - 1} more" if len(lost) > 1 else ""
        raise UsageError(
            f"checkout would lose changes that are not in the cache: {lost[0]}{more}",
            hint=f"run 'mlops add {target}' to keep them, or 'mlops checkout --force' to discard them",
            paths=lost[:50],
        )


def _remove_own_temps(folders: set[str]) -> None:
    marker = f".{os.getpid()}."
    for folder in folders:
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(TMP_PREFIX) and marker in entry.name:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


def _prune_empty_dirs(top: os.PathLike[str]) -> None:
    for folder, _dirs, _files in os.walk(top, topdown=False):
        if folder != os.fspath(top):
            with contextlib.suppress(OSError):  # not empty: keep it
                os.rmdir(folder)
