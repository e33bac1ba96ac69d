"""What the pipeline adds to the data layer's view: outputs named by pipeline.lock and the run cache.

`mlops checkout` places the lock file's cached outputs beside the pointer files' data;
`push`, `fetch` and `gc` treat them (and the run cache's) as references.
"""

from __future__ import annotations

from ..data.pointer import Pointer
from ..data.references import Root
from ..repo.repo import Repo
from . import runcache
from .lock import LOCK_FILE, LockEntry, parse_lock, read_lock


def _cached_paths(repo: Repo, entries: dict[str, LockEntry]) -> list[Pointer]:
    """Outputs to place in the workspace: those the pipeline caches (not git-tracked metrics),
    of stages the pipeline still has."""
    from ..errors import MlopsError
    from .spec import PIPELINE_FILE, load_pipeline

    uncached: set[str] = set()
    if (repo.root / PIPELINE_FILE).is_file():
        try:
            pipeline = load_pipeline(repo.root)
            uncached = {o.path for s in pipeline.stages.values() for o in s.outs if not o.cache}
            entries = {name: e for name, e in entries.items() if name in pipeline.stages}
        except MlopsError:  # a broken pipeline.yaml must not stop a checkout of data
            uncached = set()
    out = []
    for entry in entries.values():
        for locked in entry.outs:
            if locked.hash is not None and locked.path not in uncached:
                out.append(Pointer(locked.path, locked.kind, locked.hash, locked.size, locked.files))
    return out


def lock_pointers(repo: Repo, rev: str | None = None) -> list[Pointer]:
    """The cached outputs pipeline.lock names, in the workspace or at a git revision."""
    if rev is None:
        return _cached_paths(repo, read_lock(repo.root))
    from ..repo.git import git_repo

    text = git_repo(repo.root).read_file_at(rev, LOCK_FILE)
    if text is None:
        return []
    return _cached_paths(repo, parse_lock(text.decode("utf-8"), f"{rev}:{LOCK_FILE}"))


def pipeline_roots(repo: Repo, *, all_commits: bool = False) -> list[Root]:
    """Every object the lock file and the run cache name (with ``all_commits``, also every
    commit's lock file): gc keeps them, push sends them."""
    roots = [Root(p.hash, p.is_dir, f"{LOCK_FILE}:{p.target}") for p in lock_pointers(repo)]
    for entry in read_lock(repo.root).values():  # git-tracked outputs are stored too (the run cache restores them)
        roots.extend(Root(o.hash, o.kind == "dir", f"{LOCK_FILE}:{o.path}") for o in entry.outs if o.hash)
    roots.extend(Root(o.hash, o.kind == "dir", f"runcache:{o.path}") for o in runcache.all_outputs(repo) if o.hash)
    if all_commits:
        roots += commit_lock_roots(repo, ["--all"])
    return roots


def commit_lock_roots(repo: Repo, revs: list[str]) -> list[Root]:
    """The outputs named by every pipeline.lock that `git rev-list --objects REVS` lists
    (``["--all"]``: any commit; ``["--no-walk", tip]``: the tip's own)."""
    from ..repo.git import git_repo

    roots = []
    for path, data in git_repo(repo.root).blobs_in(revs, lambda p: p == LOCK_FILE):
        for entry in parse_lock(data.decode("utf-8"), f"git:{path}").values():
            roots.extend(Root(o.hash, o.kind == "dir", f"git:{LOCK_FILE}:{o.path}") for o in entry.outs if o.hash)
    return roots
