"""`mlops push`, `fetch` and `pull`: move the objects that pointer files reference, and only
those the other side lacks, in parallel, checking every object's hash on arrival.

Children before parents on the receiving side too: file objects first, then manifests
deepest first, so a remote that has a manifest always has what it lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..parallel import run_parallel
from ..progress import NO_PROGRESS, Progress
from ..remotes.base import Remote, open_remote
from ..repo.repo import Repo
from ..store.tree import decode_manifest
from .checkout import CheckoutResult, checkout
from .pointer import Pointer
from .references import Root, all_commit_roots, reachable, workspace_roots
from .snapshot import workspace_pointers


@dataclass(frozen=True)
class TransferResult:
    remote: str
    direction: str  # push | fetch
    transferred: int
    bytes: int
    present: int  # already on the receiving side
    missing_locally: tuple[str, ...] = ()  # push: referenced objects this cache lacks (skipped)

    def to_dict(self) -> dict[str, object]:
        return {
            "remote": self.remote,
            "direction": self.direction,
            "transferred": self.transferred,
            "bytes": self.bytes,
            "present": self.present,
            "missing_locally": list(self.missing_locally),
        }


def get_remote(repo: Repo, name: str | None = None) -> Remote:
    remotes = repo.config.remotes
    name = name or repo.config.default_remote
    if not name:
        raise ConfigError(
            "no remote named and no default remote set",
            hint="mlops remote add NAME URL --default, or pass -r NAME",
        )
    if name not in remotes:
        raise ConfigError(f"no remote named '{name}'", hint="see 'mlops remote list'")
    return open_remote(name, remotes[name], root=repo.root)


def _roots(repo: Repo, targets: list[str] | None, all_commits: bool, extra_roots: Iterable[Root]) -> list[Root]:
    if targets:
        roots = [Root(p.hash, p.is_dir, p.target) for p in workspace_pointers(repo, targets)]
    else:
        roots = workspace_roots(repo)
    if all_commits:
        roots += all_commit_roots(repo)
    return [*roots, *extra_roots]


def push(
    repo: Repo,
    *,
    remote: str | None = None,
    targets: list[str] | None = None,
    all_commits: bool = False,
    extra_roots: Iterable[Root] = (),
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> TransferResult:
    target = get_remote(repo, remote)
    store = repo.objects
    refs = reachable(repo, _roots(repo, targets, all_commits, extra_roots))
    files = [d for d in refs.files if store.exists(d)]
    manifests = list(reversed(list(refs.manifests)))  # a parent is walked before its children: reverse
    missing_locally = tuple(sorted({d for d in refs.files if not store.exists(d)} | {r.hash for r in refs.unexpanded}))
    wanted = [*files, *manifests]
    with progress.task(f"checking {target.name}", total=None):
        absent = target.missing(wanted)
    moved = nbytes = 0
    try:
        for group in (files, manifests):
            todo = [d for d in group if d in absent]
            if not todo:
                continue
            with progress.task(f"push to {target.name}", total=len(todo)) as task, run_parallel(
                lambda d: target.upload(d, store.path(d)), todo, jobs=jobs
            ) as uploads:
                for size in uploads:
                    moved += 1
                    nbytes += size
                    task.advance()
        target.finish()
    except BaseException:
        target.abort()
        raise
    return TransferResult(target.name, "push", moved, nbytes, len(wanted) - len(absent), missing_locally)


def fetch(
    repo: Repo,
    *,
    remote: str | None = None,
    targets: list[str] | None = None,
    all_commits: bool = False,
    extra_roots: Iterable[Root] = (),
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> TransferResult:
    source = get_remote(repo, remote)
    store = repo.objects
    roots = _roots(repo, targets, all_commits, extra_roots)
    moved = nbytes = present = 0
    seen: set[str] = set()

    def pull_into_cache(digests: list[str], label: str) -> None:
        nonlocal moved, nbytes, present
        todo = [d for d in digests if not store.exists(d)]
        present += len(digests) - len(todo)
        if not todo:
            return
        with store.batch() as batch, progress.task(f"{label} from {source.name}", total=len(todo)) as task, run_parallel(
            lambda d: source.download(d, batch), todo, jobs=jobs
        ) as downloads:
            for size in downloads:
                moved += 1
                nbytes += size
                task.advance()

    with repo.store_lock():
        files = [r.hash for r in roots if not r.is_dir]
        level = [r.hash for r in roots if r.is_dir]
        # manifests level by level: each level names the next
        while level:
            level = [d for d in dict.fromkeys(level) if d not in seen]
            seen.update(level)
            pull_into_cache(level, "manifests")
            next_level: list[str] = []
            for digest in level:
                for entry in decode_manifest(store.read_bytes(digest), digest):
                    (next_level if entry.kind == "t" else files).append(entry.hash)
            level = next_level
        pull_into_cache(list(dict.fromkeys(files)), "fetch")
    return TransferResult(source.name, "fetch", moved, nbytes, present)


def pull(
    repo: Repo,
    *,
    remote: str | None = None,
    targets: list[str] | None = None,
    force: bool = False,
    extra_roots: Iterable[Root] = (),
    extra_pointers: Sequence[Pointer] = (),
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> tuple[TransferResult, CheckoutResult]:
    fetched = fetch(repo, remote=remote, targets=targets, extra_roots=extra_roots, jobs=jobs, progress=progress)
    placed = checkout(repo, targets, force=force, jobs=jobs, progress=progress, extra_pointers=extra_pointers)
    return fetched, placed
