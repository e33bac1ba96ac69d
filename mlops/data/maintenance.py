"""`mlops gc` (drop unreferenced objects) and `mlops verify` (rehash every object)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import UsageError
from ..parallel import run_parallel
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo
from .references import Root, all_commit_roots, reachable, workspace_roots


@dataclass(frozen=True)
class GcResult:
    removed: int
    freed_bytes: int
    kept: int
    dry_run: bool
    temp_files_removed: int
    unexpanded: tuple[str, ...]  # directory roots whose manifests were missing: their files cannot be told apart

    def to_dict(self) -> dict[str, object]:
        return {
            "removed": self.removed,
            "freed_bytes": self.freed_bytes,
            "kept": self.kept,
            "dry_run": self.dry_run,
            "temp_files_removed": self.temp_files_removed,
            "unexpanded": list(self.unexpanded),
        }


def gc(
    repo: Repo,
    *,
    extra_roots: Iterable[Root] | Callable[[], Iterable[Root]],
    all_commits: bool = False,
    dry_run: bool = False,
    force: bool = False,
) -> GcResult:
    """Remove every object that nothing references: the workspace's pointer files, the
    roots that other layers name and, with ``all_commits``, any git commit's pointer files.

    ``extra_roots`` is required: the data room cannot see what the pipeline, the runs and the
    registry keep, and a caller that forgot them would delete their objects.
    ``mlops.workflows.data.gc`` passes ``mlops.workflows.roots.keep_roots``; pass ``()`` only
    for a repository that has none.

    ``extra_roots`` may be a function: it is called inside the exclusive store lock, so a
    writer that stored an object and is about to name it (it holds the lock shared until it
    has) is either finished - its reference is read - or not started.

    A current directory whose manifest is missing hides which objects it needs: gc then
    refuses (unless ``force``) rather than delete what a fetch would make useful again.
    """
    store = repo.objects
    with repo.store_lock(exclusive=True):  # no add, checkout or pull may publish objects meanwhile
        extra = extra_roots() if callable(extra_roots) else extra_roots
        current = [*workspace_roots(repo), *extra]
        roots = list(current)
        if all_commits:
            roots += all_commit_roots(repo)
        keep = reachable(repo, roots)
        current_hashes = {r.hash for r in current}
        blind = [r for r in keep.unexpanded if r.hash in current_hashes]
        if blind and not force:
            raise UsageError(
                f"{blind[0].label}: its directory manifest {blind[0].hash} is not in the cache, "
                "so gc cannot tell which objects it needs",
                hint="run 'mlops fetch' first, or 'mlops gc --force' to remove unreferenced objects anyway",
            )
        keep_all = keep.all
        removed = freed = kept = 0
        for digest in list(store.iter_digests()):
            if digest in keep_all:
                kept += 1
                continue
            removed += 1
            freed += store.size(digest) if dry_run else store.remove(digest)
        # every writer holds the store lock shared: under our exclusive hold, any temp file is a leftover
        temps = 0 if dry_run else store.clean_tmp(older_than=0)
    return GcResult(removed, freed, kept, dry_run, temps, tuple(r.label for r in keep.unexpanded))


@dataclass(frozen=True)
class BadObject:
    hash: str
    problem: str  # corrupt | malformed | missing
    used_by: str | None  # a path that references it, when known
    detail: str = ""  # malformed: what is wrong with it

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"hash": self.hash, "problem": self.problem, "used_by": self.used_by}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    corrupt: tuple[BadObject, ...]  # bytes that no longer match their hash, then manifests that are malformed
    missing: tuple[BadObject, ...]

    @property
    def ok(self) -> bool:
        return not self.corrupt


def verify(
    repo: Repo, *, extra_roots: Iterable[Root] = (), jobs: int | None = None, progress: Progress = NO_PROGRESS
) -> VerifyResult:
    """Rehash every object in the cache; also list referenced objects that are missing.
    ``extra_roots`` (the pipeline's, the registry's) name who uses a bad object too.

    Read-only: takes no lock and never waits for a writer.
    """
    store = repo.objects
    digests = list(store.iter_digests())
    bad: list[str] = []

    def check(digest: str) -> tuple[str, bool]:
        return digest, store.check(digest)

    with (
        progress.task("verifying", total=len(digests)) as task,
        run_parallel(check, digests, jobs=jobs, adaptive=True) as results,
    ):
        for digest, good in results:
            if not good and store.exists(digest):  # vanished meanwhile (a gc): not corruption
                bad.append(digest)
            task.advance()
    refs = reachable(repo, [*workspace_roots(repo), *extra_roots], tolerate_corrupt=True)
    labels = {**refs.files, **refs.manifests}
    corrupt = tuple(BadObject(d, "corrupt", labels.get(d)) for d in sorted(bad))
    # whole bytes, but not a manifest mlops would write (a crafted one, fetched before this check
    # existed, or planted in the cache): as unusable as corrupt bytes
    corrupt += tuple(
        BadObject(d, "malformed", label, problem)
        for d, (label, problem) in sorted(refs.malformed.items())
        if d not in bad
    )
    missing_digests = sorted(d for d in labels if not store.exists(d))
    missing_digests += [r.hash for r in refs.unexpanded if not store.exists(r.hash) and r.hash not in labels]
    missing = tuple(BadObject(d, "missing", labels.get(d) or _label(refs.unexpanded, d)) for d in missing_digests)
    return VerifyResult(len(digests), corrupt, missing)


def _label(roots: list[Root], digest: str) -> str | None:
    return next((r.label for r in roots if r.hash == digest), None)
