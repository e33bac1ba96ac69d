"""What the pipeline adds to the data layer's view: outputs named by pipeline.lock and the run cache.

`mlops checkout` places the lock file's cached outputs beside the pointer files' data;
`push`, `fetch` and `gc` treat them (and the run cache's) as references.

pipeline.lock comes through git like any file: an output it names is placed only when
pipeline.yaml declares that stage with that output, and never when it is pipeline.yaml,
pipeline.lock, a params file or a pointer file (docs/security.md).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data.pointer import Pointer
from ..data.references import Root
from ..errors import MlopsError, UnsafeNameError
from ..paths import check_tracked_path
from ..repo.repo import Repo
from . import runcache
from .lock import LOCK_FILE, LockEntry, decode_lock, read_lock, stage_label
from .spec import PIPELINE_FILE, Pipeline, load_pipeline


@dataclass(frozen=True)
class _Declared:
    """What pipeline.yaml declares: each stage's outputs (path -> cached), and the files no output may be."""

    outs: dict[str, dict[str, bool]]
    protected: frozenset[str]


def _declared(pipeline: Pipeline) -> _Declared:
    outs = {name: {o.path: o.cache for o in stage.outs} for name, stage in pipeline.stages.items()}
    protected = {PIPELINE_FILE, LOCK_FILE, pipeline.default_params}
    protected.update(p.file for stage in pipeline.stages.values() for p in stage.params)
    return _Declared(outs, frozenset(protected))


def _load_declared(repo: Repo, rev: str | None) -> _Declared | None:
    """pipeline.yaml's declarations (at ``rev``, or in the workspace); None when it is missing
    or cannot be read: a broken pipeline.yaml must not stop a checkout of data."""
    try:
        if rev is None:
            if not (repo.root / PIPELINE_FILE).is_file():
                return None
            return _declared(load_pipeline(repo.root))
        from ..repo.git import git_repo

        text = git_repo(repo.root).read_file_at(rev, PIPELINE_FILE)
        if text is None:
            return None
        with tempfile.TemporaryDirectory(prefix="mlops-pipeline-") as folder:
            path = Path(folder) / PIPELINE_FILE
            path.write_bytes(text)
            return _declared(load_pipeline(repo.root, path))
    except MlopsError:
        return None


def _placed_outputs(entries: dict[str, LockEntry], declared: _Declared, source: str) -> list[Pointer]:
    """The cached outputs to place, each declared in pipeline.yaml; anything else is refused."""
    out = []
    for name, entry in entries.items():
        where = f"{source} stage {stage_label(name)}"
        stage_outs = declared.outs.get(name)
        for locked in entry.outs:
            check_tracked_path(locked.path, where=where, protected=declared.protected)
            if stage_outs is None or locked.path not in stage_outs:
                what = (
                    f"stage {stage_label(name)} is not in {PIPELINE_FILE}"
                    if stage_outs is None
                    else "it is not declared"
                )
                raise UnsafeNameError(
                    f"refused output '{locked.path}' in {where}: {what}",
                    hint=f"if you changed {PIPELINE_FILE}, run 'mlops run' to bring {LOCK_FILE} up to date; "
                    f"otherwise check where {LOCK_FILE} came from",
                    entry=locked.path,
                    source=where,
                )
            if locked.hash is not None and stage_outs[locked.path]:
                out.append(Pointer(locked.path, locked.kind, locked.hash, locked.size, locked.files))
    return out


def lock_pointers(repo: Repo, rev: str | None = None) -> list[Pointer]:
    """The cached outputs pipeline.lock names, in the workspace or at a git revision, that
    pipeline.yaml (of the same revision) declares: what checkout and pull place."""
    if rev is None:
        entries = read_lock(repo.root)
        source = LOCK_FILE
    else:
        from ..repo.git import git_repo

        data = git_repo(repo.root).read_file_at(rev, LOCK_FILE)
        if data is None:
            return []
        source = f"{rev}:{LOCK_FILE}"
        entries = decode_lock(data, source)
    if not entries:
        return []
    declared = _load_declared(repo, rev)
    if declared is None:
        return []  # nothing is declared: nothing of the lock file's is placed
    return _placed_outputs(entries, declared, source)


def pipeline_roots(repo: Repo, *, all_commits: bool = False) -> list[Root]:
    """Every object the lock file and the run cache name (with ``all_commits``, also every
    commit's lock file): gc keeps them, push sends them.

    Outputs of the workspace's lock file count when pipeline.yaml declares them (git-tracked
    ones too: the run cache restores them); when pipeline.yaml cannot be read, all of them
    do, so that gc never deletes what a fixed pipeline.yaml would name again."""
    entries = read_lock(repo.root)
    declared = _load_declared(repo, None) if entries else None
    roots = []
    for name, entry in entries.items():
        stage_outs = declared.outs.get(name, {}) if declared is not None else None
        roots.extend(
            Root(o.hash, o.kind == "dir", f"{LOCK_FILE}:{o.path}")
            for o in entry.outs
            if o.hash and (stage_outs is None or o.path in stage_outs)
        )
    roots.extend(Root(o.hash, o.kind == "dir", f"runcache:{o.path}") for o in runcache.all_outputs(repo) if o.hash)
    if all_commits:
        roots += commit_lock_roots(repo, ["--all"])
    return roots


def commit_lock_roots(repo: Repo, revs: list[str]) -> list[Root]:
    """The outputs named by every pipeline.lock that `git rev-list --objects REVS` lists
    (``["--all"]``: any commit; ``["--no-walk", tip]``: the tip's own). Their hashes are
    checked by the lock file's parser; their paths are only labels here."""
    from ..repo.git import git_repo

    roots = []
    for path, data in git_repo(repo.root).blobs_in(revs, lambda p: p == LOCK_FILE):
        for entry in decode_lock(data, f"git:{path}").values():
            roots.extend(Root(o.hash, o.kind == "dir", f"git:{LOCK_FILE}:{o.path}") for o in entry.outs if o.hash)
    return roots
