"""The data verbs with everything else that names objects: checkout, push, fetch, pull, gc and
verify over the pointer files plus what ``roots`` adds (pipeline.lock, runs, registry), and, with
``runs``, the experiment runs moved in the order that lets their artifacts travel with them.

Given targets, a verb works on those pointer files only, as the data room's verb does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..progress import NO_PROGRESS, Progress
from .roots import keep_roots, lock_outputs

if TYPE_CHECKING:  # the verbs' modules load when a verb is called: `mlops status` needs none of them
    from ..data.checkout import CheckoutResult
    from ..data.maintenance import GcResult, VerifyResult
    from ..data.transfer import TransferResult
    from ..repo.repo import Repo


@dataclass(frozen=True)
class Moved:
    """What push, fetch or pull moved: the objects, the runs (when asked), what pull checked out."""

    objects: TransferResult
    runs: Any = None  # tracking.sync.RunsTransfer, with ``runs=True``
    experiments: Any = None  # experiments.share.RecordsTransfer, with ``runs=True``
    checkout: CheckoutResult | None = None  # pull only
    run_cache: Any = None  # pipeline.runcache.EntriesTransfer, with ``run_cache=True``
    monitor: Any = None  # monitor.share.ProfilesTransfer, with ``runs=True``


def checkout(
    repo: Repo,
    targets: list[str] | None = None,
    *,
    rev: str | None = None,
    force: bool = False,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> CheckoutResult:
    """Make the workspace match the pointer files and, without targets, pipeline.lock's outputs."""
    from ..data.checkout import checkout as data_checkout

    extra = [] if targets else lock_outputs(repo, rev)
    return data_checkout(repo, targets, rev=rev, force=force, jobs=jobs, progress=progress, extra_pointers=extra)


def push(
    repo: Repo,
    targets: list[str] | None = None,
    *,
    remote: str | None = None,
    all_commits: bool = False,
    full: bool = False,
    runs: bool = False,
    run_cache: bool = False,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> Moved:
    """Send the objects the pointer files (and, without targets, ``keep_roots``) reference;
    then, with ``runs``, every ended run: a run on the remote finds its artifacts there; with
    ``run_cache``, every run-cache entry the remote lacks (after its objects)."""
    from ..data.transfer import get_remote
    from ..data.transfer import push as data_push

    if run_cache:  # one client for the objects and the entries
        remote = get_remote(repo, remote)  # type: ignore[assignment]
    extra = [] if targets else keep_roots(repo, all_commits=all_commits)
    result = data_push(
        repo,
        remote=remote,
        targets=targets,
        all_commits=all_commits,
        extra_roots=extra,
        full=full,
        jobs=jobs,
        progress=progress,
    )
    shared = records = profiles = None
    if runs:
        from ..experiments.share import push_records
        from ..tracking.sync import push_runs

        remote = get_remote(repo, remote)  # type: ignore[assignment]
        shared = push_runs(repo, remote, jobs=jobs, progress=progress)
        records = push_records(repo, remote)  # type: ignore[arg-type]  # their objects went with the data
        from ..monitor.share import push_profiles

        profiles = push_profiles(repo, remote)  # type: ignore[arg-type]
    entries = None
    if run_cache:
        from ..pipeline.runcache import push_entries

        entries = push_entries(repo, remote, jobs=jobs, progress=progress)
    return Moved(result, shared, records, run_cache=entries, monitor=profiles)


def _pull_run_cache(repo: Repo, remote: Any, run_cache: bool, targets: list[str] | None) -> Any:
    """With ``run_cache``, before the data: the shared run cache's entries that the current
    pipeline's stages would restore from (a dependency tracked by a pointer file counts with the
    pointer's hash: the pull brings it), without their objects. Those are roots of the data pull
    that follows (``keep_roots`` names every run-cache entry's outputs), so one parallel fetch
    takes the data and the outputs together; with targets, the entries' outputs are added."""
    if not run_cache:
        return None, []
    from ..data.references import Root
    from ..pipeline.runcache import lookup_entry, pull_entries

    entries = pull_entries(repo, remote, objects=False, deps_from_pointers=True)
    roots: list[Root] = []
    if targets:
        for key in (*entries.created, *entries.present):
            hit = lookup_entry(repo, key, need_objects=False)
            roots += [Root(o.hash, o.kind == "dir", f"runcache:{o.path}") for o in (hit.outs if hit else ()) if o.hash]
    return entries, roots


def _pull_runs_first(
    repo: Repo, remote: str | None, runs: bool, jobs: int | None, progress: Progress
) -> tuple[Any, Any]:
    """With ``runs``, take the remote's runs and experiment records before the data: the roots
    computed next then name the new runs' artifacts and the records' objects, so they arrive in
    the same call."""
    if not runs:
        return None, None, None
    from ..data.transfer import get_remote
    from ..experiments.share import pull_records
    from ..monitor.share import pull_profiles
    from ..tracking.sync import pull_runs

    source = get_remote(repo, remote)
    shared = pull_runs(repo, source, jobs=jobs, progress=progress)
    return shared, pull_records(repo, source), pull_profiles(repo, source)


def fetch(
    repo: Repo,
    targets: list[str] | None = None,
    *,
    remote: str | None = None,
    all_commits: bool = False,
    runs: bool = False,
    run_cache: bool = False,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> Moved:
    """Download what the pointer files (and, without targets, ``keep_roots``) reference, no checkout;
    with ``run_cache``, also the shared run cache's entries (and objects) the pipeline would restore from."""
    from ..data.transfer import fetch as data_fetch

    shared, records, profiles = _pull_runs_first(repo, remote, runs, jobs, progress)
    if run_cache:  # one client for the entries and the data
        from ..data.transfer import get_remote

        remote = get_remote(repo, remote)  # type: ignore[assignment]
    entries, entry_roots = _pull_run_cache(repo, remote, run_cache, targets)
    extra = entry_roots if targets else keep_roots(repo, all_commits=all_commits)
    result = data_fetch(
        repo,
        remote=remote,
        targets=targets,
        all_commits=all_commits,
        extra_roots=extra,
        jobs=jobs,
        progress=progress,
    )
    return Moved(result, shared, records, run_cache=entries, monitor=profiles)


def pull(
    repo: Repo,
    targets: list[str] | None = None,
    *,
    remote: str | None = None,
    force: bool = False,
    runs: bool = False,
    run_cache: bool = False,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> Moved:
    """Fetch, then check out (pipeline.lock's outputs too, without targets); with ``run_cache``,
    also the shared run cache's entries and objects that ``mlops run`` would restore from."""
    from ..data.transfer import pull as data_pull

    shared, records, profiles = _pull_runs_first(repo, remote, runs, jobs, progress)
    if run_cache:  # one client for the entries and the data
        from ..data.transfer import get_remote

        remote = get_remote(repo, remote)  # type: ignore[assignment]
    entries, entry_roots = _pull_run_cache(repo, remote, run_cache, targets)
    roots, pointers = (entry_roots, []) if targets else (keep_roots(repo), lock_outputs(repo))
    fetched, placed = data_pull(
        repo,
        remote=remote,
        targets=targets,
        force=force,
        extra_roots=roots,
        extra_pointers=pointers,
        jobs=jobs,
        progress=progress,
    )
    return Moved(fetched, shared, records, placed, entries, monitor=profiles)


def gc(repo: Repo, *, all_commits: bool = False, dry_run: bool = False, force: bool = False) -> GcResult:
    """Remove the cached objects nothing references: neither the pointer files nor ``keep_roots``
    (read inside gc's exclusive store lock, so a writer naming a new object is never missed)."""
    from ..data.maintenance import gc as data_gc
    from ..pipeline.stage_exec import clean_stale_snapshot_refs

    if not dry_run:
        # a killed driver's bundle ref keeps its snapshot commit from git's own gc: it goes too
        clean_stale_snapshot_refs(repo)
    return data_gc(
        repo,
        extra_roots=lambda: keep_roots(repo, all_commits=all_commits),
        all_commits=all_commits,
        dry_run=dry_run,
        force=force,
    )


def verify(repo: Repo, *, jobs: int | None = None, progress: Progress = NO_PROGRESS) -> VerifyResult:
    """Rehash every cached object; ``keep_roots`` name who uses a bad or missing one."""
    from ..data.maintenance import verify as data_verify

    return data_verify(repo, extra_roots=keep_roots(repo), jobs=jobs, progress=progress)
