"""What gc, verify, push, fetch and pull must keep and carry beyond the workspace's pointer files.

The data room knows pointer files only; the rooms above it name objects too: pipeline.lock's
outputs and the run cache (pipeline), the runs' artifacts (tracking), the registered versions'
artifacts and data snapshots (registry). Each question is answered here once: at the
workspace, across every commit, or in the commits a `git push` sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data.pointer import Pointer
    from ..data.references import Root
    from ..repo.repo import Repo


def lock_outputs(repo: Repo, rev: str | None = None) -> list[Pointer]:
    """Pipeline outputs named by pipeline.lock (in the workspace, or at ``rev``) that checkout
    and pull place beside the pointer files' data."""
    from ..pipeline.lock import LOCK_FILE
    from ..pipeline.roots import lock_pointers

    if rev is None and not (repo.root / LOCK_FILE).is_file():  # the pipeline modules load only when needed
        return []
    return lock_pointers(repo, rev)


def keep_roots(repo: Repo, *, all_commits: bool = False) -> list[Root]:
    """Objects the pipeline (lock file, run cache), tracked runs (artifacts), experiments and the model
    registry (artifacts, data snapshots) reference: pushed, fetched and kept by gc.
    ``all_commits``: also what any commit's lock file and model files name."""
    from ..experiments.keep import experiment_roots
    from ..pipeline.roots import pipeline_roots
    from ..registry import registry_roots
    from ..tracking.store import artifact_roots

    return [
        *pipeline_roots(repo, all_commits=all_commits),
        *artifact_roots(repo),
        *experiment_roots(repo),
        *registry_roots(repo, all_commits=all_commits),
    ]


def pushed_roots(repo: Repo, tips: list[str], exclude: list[str]) -> list[Root]:
    """What a `git push` of ``tips`` must bring along (``exclude``: rev-list arguments for what
    the remote has): every pointer file, pipeline.lock output and registered model version
    (artifacts, data snapshots) in the tips' trees, and those the commits in between added."""
    from ..data.references import commit_roots
    from ..pipeline.roots import commit_lock_roots
    from ..registry.roots import commit_registry_roots

    roots: list[Root] = []
    for revs in (["--no-walk", *tips], [*tips, *exclude]):
        roots += [*commit_lock_roots(repo, revs), *commit_registry_roots(repo, revs)]
    return [*commit_roots(repo, tips, exclude), *roots]
