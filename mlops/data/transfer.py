"""`mlops push`, `fetch` and `pull`: move the objects that pointer files reference, and only
those the other side lacks, in parallel, checking every object's hash on arrival.

A download is bounded too: a file object must have the length its manifest entry or pointer
file records (the remote stops reading one byte past it), and a manifest, whose length no
one records, at most ``MAX_MANIFEST_SIZE``.

Children before parents on the receiving side too: file objects first, then manifests
deepest first, so a remote that has a manifest always has what it lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, FormatError
from ..parallel import run_parallel
from ..progress import NO_PROGRESS, Progress
from ..remotes.base import Remote, open_remote
from ..repo.repo import Repo
from ..store.objects import ObjectBatch
from ..store.tree import decode_manifest
from .checkout import CheckoutResult, checkout
from .pointer import Pointer
from .references import Root, all_commit_roots, workspace_roots
from .snapshot import workspace_pointers

# One folder's manifest (the tree itself is one manifest per folder): 64 MiB holds about a
# million entries of a typical name length, far beyond any folder `mlops add` meets, and
# bounds what a hostile remote can make a fetch write and hold in memory before the hash says no.
MAX_MANIFEST_SIZE = 64 << 20


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
        roots = [
            Root(p.hash, p.is_dir, p.target, None if p.is_dir else p.size) for p in workspace_pointers(repo, targets)
        ]
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
    only_roots: Iterable[Root] | None = None,
    full: bool = False,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> TransferResult:
    """Send what the roots reach and the remote lacks; ``only_roots`` replaces the workspace's
    pointer files as the roots (a pre-push hook sends what the pushed commits name)."""
    target = get_remote(repo, remote)
    store = repo.objects
    with progress.task(f"checking {target.name}", total=None):
        roots = list(only_roots) if only_roots is not None else _roots(repo, targets, all_commits, extra_roots)
        plan = _push_plan(repo, target, roots, full=full)
    files, manifests = plan.files, plan.manifests
    moved = nbytes = 0
    try:
        for group in (files, manifests):
            todo = group
            if not todo:
                continue
            with (
                progress.task(f"push to {target.name}", total=len(todo)) as task,
                run_parallel(
                    lambda d: target.upload(d, store.file(d)),
                    todo,
                    jobs=target.parallelism(jobs, store.root),
                    adaptive=target.local_io,
                ) as uploads,
            ):
                for size in uploads:
                    moved += 1
                    nbytes += size
                    task.advance()
        target.finish()
    except BaseException:
        target.abort()
        raise
    return TransferResult(target.name, "push", moved, nbytes, plan.present, plan.missing_locally)


@dataclass
class _PushPlan:
    files: list[str]  # absent on the remote, present here
    manifests: list[str]  # absent on the remote, deepest first
    present: int
    missing_locally: tuple[str, ...]


def _push_plan(repo: Repo, target: Remote, roots: list[Root], *, full: bool = False) -> _PushPlan:
    """What the remote lacks, found top-down: a manifest the remote has means it has
    everything below (pushes publish children before parents), so an unchanged
    sub-folder costs one existence check, not one per file. ``full`` checks every object
    (to repair a remote that lost some). A manifest whose subtree this cache cannot
    complete is not sent: the remote's manifests must keep meaning "all below is here"."""
    store = repo.objects
    candidates = list(dict.fromkeys(r.hash for r in roots if not r.is_dir))
    manifests: list[str] = []
    parents: dict[str, list[str]] = {}  # object -> absent manifests that list it
    missing_locally: set[str] = set()
    present = 0
    level = list(dict.fromkeys(r.hash for r in roots if r.is_dir))
    seen: set[str] = set(level)
    while level:
        absent = target.missing(level)
        present += len(level) - len(absent)
        next_level: list[str] = []
        for digest in level:
            if digest not in absent and not full:
                continue
            if not store.exists(digest):
                if digest in absent:
                    missing_locally.add(digest)
                continue
            if digest in absent:
                manifests.append(digest)
            for entry in decode_manifest(store.read_bytes(digest), digest):
                parents.setdefault(entry.hash, []).append(digest)
                if entry.kind == "t":
                    if entry.hash not in seen:
                        seen.add(entry.hash)
                        next_level.append(entry.hash)
                else:
                    candidates.append(entry.hash)
        level = next_level
    candidates = list(dict.fromkeys(candidates))
    absent_files = target.missing(candidates) if candidates else set()
    present += len(candidates) - len(absent_files)
    files = []
    for digest in candidates:
        if digest in absent_files:
            if store.exists(digest):
                files.append(digest)
            else:
                missing_locally.add(digest)
    incomplete: set[str] = set()
    stack = list(missing_locally)
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in incomplete:
                incomplete.add(parent)
                stack.append(parent)
    keep = [m for m in reversed(manifests) if m not in incomplete]
    return _PushPlan(files, keep, present, tuple(sorted(missing_locally)))


def fetch(
    repo: Repo,
    *,
    remote: str | None = None,
    targets: list[str] | None = None,
    all_commits: bool = False,
    extra_roots: Iterable[Root] = (),
    only_roots: Iterable[Root] | None = None,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> TransferResult:
    """Take what the roots reach and this cache lacks. Every object is checked against the
    length its referrer records (a manifest entry, a pointer file) and its hash; a manifest,
    whose length nothing records, against ``MAX_MANIFEST_SIZE``. ``only_roots`` replaces the
    workspace's pointer files as the roots (``mlops stage exec`` takes one stage's inputs only)."""
    source = get_remote(repo, remote)
    store = repo.objects
    roots = list(only_roots) if only_roots is not None else _roots(repo, targets, all_commits, extra_roots)
    moved = nbytes = present = 0
    seen: set[str] = set()
    # digest -> (the length it must have, or None; where the snapshot names it), first claim wins
    expected: dict[str, tuple[int | None, str]] = {}

    def want(digest: str, size: int | None, label: str) -> None:
        if digest not in expected:
            expected[digest] = (size, label)

    def fetch_one(digest: str, batch: ObjectBatch, manifests: bool) -> int:
        size, label = expected.get(digest, (None, None))
        if manifests:
            return source.download(digest, batch, max_size=MAX_MANIFEST_SIZE, last=True, label=label)
        return source.download(digest, batch, size=size, label=label)

    def download(batch: ObjectBatch, digests: list[str], label: str, *, manifests: bool) -> None:
        nonlocal moved, nbytes, present
        todo = [d for d in digests if not store.exists(d)]
        present += len(digests) - len(todo)
        if not todo:
            return
        with (
            progress.task(f"{label} from {source.name}", total=len(todo)) as task,
            run_parallel(
                lambda d: fetch_one(d, batch, manifests),
                todo,
                jobs=source.parallelism(jobs, store.root),
                adaptive=source.local_io,
            ) as downloads,
        ):
            for size in downloads:
                moved += 1
                nbytes += size
                task.advance()

    # one batch: manifests are read as soon as they arrive (to find what they list) but
    # published last, children before parents, so a manifest in the cache always means
    # everything below it is there too (add and push rely on that)
    with repo.store_lock(), store.batch() as batch:
        files: list[str] = []
        level: list[str] = []
        for root in roots:
            want(root.hash, root.size, root.label)
            (level if root.is_dir else files).append(root.hash)
        while level:
            level = [d for d in dict.fromkeys(level) if d not in seen]
            seen.update(level)
            download(batch, level, "manifests", manifests=True)
            next_level: list[str] = []
            for digest in level:
                data = batch.staged_bytes(digest) if not store.exists(digest) else store.read_bytes(digest)
                if data is None:  # pragma: no cover - download() raised before this
                    continue
                where = expected.get(digest, (None, digest))[1]
                # a refusal names the tracked path the manifest belongs to and the remote it came from
                source_where = f"tree {digest} of {where} from remote '{source.name}'"
                for entry in decode_manifest(data, digest, where=source_where):
                    child = f"{where}/{entry.name}"
                    if entry.kind == "t":
                        want(entry.hash, None, child)
                        next_level.append(entry.hash)
                    else:
                        want(entry.hash, _recorded_size(entry.size, digest, entry.name), child)
                        files.append(entry.hash)
            level = next_level
        download(batch, list(dict.fromkeys(files)), "fetch", manifests=False)
    return TransferResult(source.name, "fetch", moved, nbytes, present)


def _recorded_size(size: object, manifest: str, name: str) -> int:
    """A manifest entry's size, which a download must match; a manifest that records none is refused."""
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        return size
    raise FormatError(
        f"object {manifest} is not a valid tree manifest: entry {name!r} has size {size!r}", object=manifest
    )


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
