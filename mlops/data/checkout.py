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
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import deepfs
from ..errors import CorruptObjectError, InvalidPathError, MissingObjectError, UnsafeNameError, UsageError
from ..fsio import TMP_PREFIX
from ..parallel import run_parallel
from ..paths import Destinations, check_unique, inside
from ..progress import NO_PROGRESS, Progress
from ..repo.git import git_repo
from ..repo.repo import Repo
from ..store.links import stage
from ..store.state import stat_key
from ..store.tree import FileRecord
from .pointer import Pointer
from .snapshot import pointers_from_blobs, read_workspace, require_pointer_records, workspace_pointers
from .workspace import list_folders, make_folders, remove_temps, remove_tree


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
    (pipeline outputs), placed too when no targets are given.

    The whole snapshot is checked before anything is written: every pointer, every manifest
    below it and every destination (``paths.Destinations``). One bad entry refuses it all."""
    if rev is None:
        pointers = workspace_pointers(repo, targets)
    else:
        pointers = pointers_from_blobs(git_repo(repo.root).pointer_files_at(rev), origin=f"at revision {rev}")
        if targets:
            wanted = {repo.check_user_path(t.removesuffix(".mlops"), must_exist=False) for t in targets}
            missing = sorted(wanted - {p.target for p in pointers})
            if missing:
                raise InvalidPathError(
                    f"{missing[0]}: is not tracked at revision {rev}", hint=f"see 'mlops diff {rev}'"
                )
            pointers = [p for p in pointers if p.target in wanted]
    # two pointer files may name one path (a 'path:' field): one of them would silently win
    check_unique([p.target for p in pointers], where="pointer files" + (f" at revision {rev}" if rev else ""))
    if not targets:
        known = {p.target for p in pointers}
        extra = [p for p in extra_pointers if p.target not in known]
        check_unique([p.target for p in extra], where="pipeline outputs")
        pointers = [*pointers, *extra]
    destinations = Destinations(repo.root)
    try:
        with repo.store_lock(), contextlib.ExitStack() as held:
            for target in sorted({p.target for p in pointers}):  # one order for every process: no deadlock
                held.enter_context(repo.path_lock(target))
            plans = [_plan(repo, p, destinations, force=force, jobs=jobs) for p in pointers]
            done = [_apply(repo, plan, jobs=jobs, progress=progress) for plan in plans]
    finally:
        deepfs.forget()  # folders held open for paths past PATH_MAX: this command is done with them
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
    try:
        plan = _plan(repo, pointer, Destinations(repo.root), force=force, jobs=jobs, link_kinds=link_kinds)
        return _apply(repo, plan, jobs=jobs, progress=progress)
    finally:
        deepfs.forget()


@dataclass
class _Plan:
    """What a checkout of one path will do, decided (and checked) before anything is written."""

    pointer: Pointer
    kinds: tuple[str, ...]
    temps: tuple[str, ...] = ()
    done: CheckedOut | None = None  # nothing to write: the result as it stands
    wanted: dict[str, FileRecord] = field(default_factory=dict)
    clear_top: str | None = None  # "dir", "file" or "link": what stands where the other kind belongs
    to_place: list[str] = field(default_factory=list)
    to_remove: list[str] = field(default_factory=list)
    unchanged: int = 0
    make_top: bool = False


def _plan(
    repo: Repo,
    pointer: Pointer,
    destinations: Destinations,
    *,
    force: bool,
    jobs: int | None,
    link_kinds: tuple[str, ...] | None = None,
) -> _Plan:
    """Decide what to write for one path, and check it all, writing nothing."""
    store = repo.objects
    kinds = link_kinds or repo.config.link_types
    where = pointer.pointer_path
    target = pointer.target
    destinations.check(target, where=where)  # lexical, and every folder above it is a real one
    top = repo.abs(target)
    top_is_link = os.path.islink(top)
    if top_is_link and not inside(repo.root, top):
        # not even read: what it points at is not the repository's
        raise UnsafeNameError(
            f"refused {target} in {where}: it is a symlink that leads outside the repository",
            hint=f"remove the symlink {target} if it is not meant to be there, then try again",
            entry=target,
            source=where,
        )
    try:
        quick = read_workspace(repo, target, need_records=False, jobs=jobs)
    except InvalidPathError as exc:
        # a link inside the tracked folder that leads out of the repository, a name that cannot
        # travel: planted where received data goes, it is refused like a bad entry
        raise UnsafeNameError(
            f"refused {target} in {where}: {exc.message}", hint=exc.hint, entry=target, source=where
        ) from None
    plan = _Plan(pointer, kinds, temps=() if top_is_link else tuple(quick.temps))
    if quick.kind == pointer.kind and quick.hash == pointer.hash:
        plan.done = CheckedOut(target, 0, 0, pointer.files, None)  # already in place
        return plan
    wanted = require_pointer_records(repo, pointer)  # every manifest below decoded and checked
    current = quick if quick.records is not None else read_workspace(repo, target, jobs=jobs)
    assert current.records is not None
    plan.wanted = wanted
    if top_is_link:
        # a link where data belongs is replaced, never written through; what it points at stays
        plan.clear_top = "link"
        current_records: dict[str, FileRecord] = {}
    elif current.kind is not None and current.kind != pointer.kind:
        # a file where a folder belongs, or the reverse: it goes as a whole
        _refuse_losing(repo, pointer, [(target, r.hash) for r in current.records.values()], force)
        plan.clear_top = current.kind
        current_records = {}
    else:
        current_records = current.records

    plan.to_place = [rel for rel, rec in wanted.items() if current_records.get(rel) != rec]
    plan.to_remove = [rel for rel in current_records if rel not in wanted] if pointer.is_dir else []
    plan.unchanged = len(wanted) - len(plan.to_place)
    plan.make_top = pointer.is_dir and (plan.clear_top is not None or not top.is_dir())
    if not plan.to_place and not plan.to_remove and not plan.make_top and plan.clear_top is None:
        plan.done = CheckedOut(target, 0, 0, plan.unchanged, None)
        return plan

    if pointer.is_dir:
        if plan.clear_top is None:
            destinations.check_folder(target, where=where)
        prefix = target + "/"
        destinations.check_all([prefix + rel for rel in (*plan.to_place, *plan.to_remove)], where=where)
    at_risk = [
        (_full(target, rel), current_records[rel].hash)
        for rel in (*plan.to_place, *plan.to_remove)
        if rel in current_records
    ]
    _refuse_losing(repo, pointer, at_risk, force)

    missing = sorted({wanted[rel].hash for rel in plan.to_place if not store.exists(wanted[rel].hash)})
    if missing:
        raise MissingObjectError(
            f"{target}: {len(missing)} object(s) not in the cache (first: {missing[0]})",
            hint="run 'mlops pull' to fetch them from the remote",
            objects=missing[:20],
        )
    return plan


def _full(target: str, rel: str) -> str:
    return f"{target}/{rel}" if rel else target


def _apply(repo: Repo, plan: _Plan, *, jobs: int | None, progress: Progress) -> CheckedOut:
    """Write what ``_plan`` decided (the caller holds the store lock and the path's lock)."""
    remove_temps(list(plan.temps))  # left by an interrupted checkout; we hold the path's lock
    if plan.done is not None:
        return plan.done
    store = repo.objects
    pointer, wanted, kinds = plan.pointer, plan.wanted, plan.kinds
    to_place, to_remove = plan.to_place, plan.to_remove
    top = repo.abs(pointer.target)
    root = str(repo.root)
    if plan.clear_top == "dir":
        remove_tree(top)
    elif plan.clear_top is not None:
        os.unlink(top)  # a file, or a link (never followed)
    if pointer.is_dir:
        # a file standing where a folder of the snapshot goes is one of the files to remove
        needed = {rel.rpartition("/")[0] for rel in to_place}
        above: set[str] = set()  # every folder the files to place need, with its parents
        for folder in needed:
            while folder and folder not in above:
                above.add(folder)
                folder = folder.rpartition("/")[0]
        blocking = [rel for rel in to_remove if rel in above]
        for rel in blocking:
            deepfs.call(os.unlink, f"{root}/{_full(pointer.target, rel)}")
        if blocking:
            gone = set(blocking)
            to_remove = [rel for rel in to_remove if rel not in gone]
        # and a folder standing where a file goes holds only files to remove
        for rel in to_place:
            path = f"{root}/{_full(pointer.target, rel)}"
            try:
                mode = deepfs.call(os.lstat, path).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode):
                remove_tree(path)
        if plan.make_top:
            make_folders(repo.root, pointer.target)  # a tracked folder that is (or became) empty still exists
        for folder in sorted({f for f in needed if f}):
            make_folders(repo.root, f"{pointer.target}/{folder}")
    else:
        parent = pointer.target.rpartition("/")[0]
        if parent:
            make_folders(repo.root, parent)
    if not to_place and not to_remove:
        return CheckedOut(pointer.target, 0, 0, plan.unchanged, None)

    def full(rel: str) -> str:
        return _full(pointer.target, rel)

    staged: list[tuple[str, str, str]] = []  # (temp, destination, rel)
    link_used: set[str] = set()
    learned: list[tuple[tuple[int, int, int], str]] = []

    def work(rel: str) -> tuple[str, str, str, str]:
        record = wanted[rel]
        dest = f"{root}/{full(rel)}"
        try:
            tmp, kind = deepfs.call2(
                stage, store.file(record.hash), dest, kinds, executable=record.executable, expect=record.hash
            )
        except ValueError:
            raise CorruptObjectError(
                f"{full(rel)}: object {record.hash} in the cache is corrupt; nothing placed for {pointer.target}",
                hint="run 'mlops verify', then 'mlops pull' to fetch a good copy",
                object=record.hash,
                file=full(rel),
            ) from None
        if len(dest) > deepfs.FAST:  # staged through a stand-in path (deepfs): named by the full one
            tmp = f"{dest.rpartition('/')[0]}/{tmp.rpartition('/')[2]}"
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
            deepfs.call2(os.replace, tmp, dest)
            with contextlib.suppress(OSError):
                learned.append((stat_key(deepfs.call(os.stat, dest)), wanted[rel].hash))
    except BaseException:
        # the first error (or Ctrl-C) stops the placing: no temp file of ours may stay behind;
        # each destination holds its old file or its whole new one
        _remove_own_temps({f"{root}/{full(rel)}".rpartition("/")[0] for rel in to_place})
        repo.state.record(learned)
        raise

    for rel in to_remove:
        with contextlib.suppress(FileNotFoundError):
            deepfs.call(os.unlink, f"{root}/{full(rel)}")
    if to_remove:
        _prune_empty_dirs(top)
    repo.state.record(learned)
    return CheckedOut(
        pointer.target, len(to_place), len(to_remove), plan.unchanged, ",".join(sorted(link_used)) or None
    )


def _refuse_losing(repo: Repo, pointer: Pointer, at_risk: list[tuple[str, str]], force: bool) -> None:
    """Refuse to overwrite or delete workspace content that exists nowhere else."""
    if force:
        return
    target = pointer.target
    lost = [path for path, digest in at_risk if not repo.objects.exists(digest)]
    if lost:
        more = f" and {len(lost) - 1} more" if len(lost) > 1 else ""
        if _is_tracked_data(repo, target, lost):
            hint = f"run 'mlops add {target}' to keep them, or 'mlops checkout --force' to discard them"
        else:
            # a pointer file (perhaps one that just arrived through git) names a path that holds
            # files mlops never tracked: --force would delete them, so it is not offered
            hint = (
                f"{target} holds files that are not tracked data (tracked by git, or not ignored by it); "
                f"check where {pointer.pointer_path} came from, and move the files away if it is right"
            )
        raise UsageError(
            f"checkout would lose changes that are not in the cache: {lost[0]}{more}", hint=hint, paths=lost[:50]
        )


def _is_tracked_data(repo: Repo, target: str, paths: list[str]) -> bool:
    """Whether ``paths`` are data mlops tracks: ``target`` is ignored by git (as ``mlops add``
    arranges) and none of them is in git's index. Outside git, every path counts as data."""
    if not (repo.root / ".git").exists():
        return True
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", "--", target], cwd=repo.root, capture_output=True, check=False
    )
    if ignored.returncode == 1:
        return False
    shown: list[str] = []
    room = 1 << 20  # bytes of arguments: paths nested past PATH_MAX are long, and the system takes ~2 MiB
    for path in paths[:100]:
        room -= len(path) + 1
        if room < 0:
            break
        shown.append(path)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", target, *shown], cwd=repo.root, capture_output=True, check=False
    )
    return ignored.returncode == 0 and listed.returncode == 0 and not listed.stdout


def _remove_own_temps(folders: set[str]) -> None:
    marker = f".{os.getpid()}."
    for folder in folders:
        with contextlib.suppress(FileNotFoundError), deepfs.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(TMP_PREFIX) and marker in entry.name:
                    with contextlib.suppress(FileNotFoundError):
                        deepfs.call(os.unlink, f"{folder}/{entry.name}")


def _prune_empty_dirs(top: os.PathLike[str]) -> None:
    """Remove the empty folders below ``top`` (deepest first; a loop, not recursion)."""
    for folder in reversed(list_folders(top)):
        if folder != os.fspath(top):
            with contextlib.suppress(OSError):  # not empty: keep it
                deepfs.call(os.rmdir, folder)
