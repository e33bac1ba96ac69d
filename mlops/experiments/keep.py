"""Keeping results: `exp show`, `exp apply`, `exp branch`, `exp remove`, `exp gc`, and gc's roots.

``apply`` writes the files the experiment recorded (its params files, pipeline.lock, outputs
kept in git) into the workspace and checks out its cached outputs from the object store;
files with uncommitted changes are not overwritten without ``force``. ``branch`` commits the
same files on a new branch made from the commit the experiment ran, in a private worktree: the
user's checkout, index and HEAD are untouched.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

from ..errors import GitError, UsageError
from ..fsio import atomic_write
from ..repo.repo import Repo
from . import store

SORT_SECTIONS = ("metrics", "params", "changes")


@dataclass(frozen=True)
class ShowResult:
    experiments: tuple[store.Experiment, ...]
    param_keys: tuple[str, ...]
    metric_keys: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        sweeps: dict[str, list[dict[str, Any]]] = {}
        for experiment in self.experiments:
            doc = experiment.to_doc()
            doc["params"] = {k: experiment.params.get(k) for k in self.param_keys}
            sweeps.setdefault(experiment.sweep, []).append(doc)
        return {
            "sweeps": [{"sweep": name, "experiments": items} for name, items in sweeps.items()],
            "param_keys": list(self.param_keys),
            "metric_keys": list(self.metric_keys),
            "warnings": list(self.warnings),
        }


def show(
    repo: Repo,
    *,
    sort: str | None = None,
    only_changed: bool = False,
    sweep: str | None = None,
    filter: str | None = None,
) -> ShowResult:
    """Every experiment, grouped by sweep (sweeps in order of their first experiment), sorted within
    its sweep by ``sort`` (``metrics.acc``, ``-metrics.acc`` for descending, ``params.train.lr``);
    with ``filter``, only those it matches (the query language of ``runs list``: ``tracking.query``)."""
    predicate = None
    if filter:
        from ..tracking.query import parse_filter

        predicate = parse_filter(filter)  # a filter that does not parse fails before anything is read
    warnings: list[str] = []
    found = store.read_all(repo, warnings)
    if sweep:
        found = [e for e in found if e.sweep == sweep]
    if predicate is not None:
        tags = _run_tags(repo) if "tag" in filter.lower() else {}
        found = [e for e in found if predicate(_filter_doc(e, tags))]
    param_keys = sorted({k for e in found for k in e.params} | {k for e in found for k in e.changes})
    if only_changed:
        param_keys = [k for k in param_keys if len({repr(_param(e, k)) for e in found}) > 1]
    metric_keys = sorted({k for e in found for k in e.metrics})
    order = {name: i for i, name in enumerate(dict.fromkeys(e.sweep for e in found))}
    found.sort(key=lambda e: order[e.sweep])  # stable: creation order within a sweep
    if sort:
        descending = sort.startswith("-")
        section, _, key = sort.lstrip("-+").partition(".")
        if section not in SORT_SECTIONS or not key:
            raise UsageError(f"--sort {sort}: expected metrics.KEY or params.KEY (- first for descending)")

        def value(e: store.Experiment) -> Any:
            return e.metrics.get(key) if section == "metrics" else _param(e, key)

        present = [e for e in found if isinstance(value(e), (int, float))]
        missing = [e for e in found if not isinstance(value(e), (int, float))]
        present.sort(key=lambda e: value(e), reverse=descending)
        present.sort(key=lambda e: order[e.sweep])
        found = [*present, *missing]
        found.sort(key=lambda e: order[e.sweep])
    return ShowResult(tuple(found), tuple(param_keys), tuple(metric_keys), tuple(warnings))


def _run_tags(repo: Repo) -> dict[str, dict[str, Any]]:
    """run id -> its tags, from the runs index (one file; read only when a filter names tags)."""
    from ..tracking.store import read_index

    return {run_id: s.get("tags") or {} for run_id, s in read_index(repo).items() if isinstance(s.get("tags"), dict)}


def _filter_doc(experiment: store.Experiment, run_tags: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The experiment as a run summary for ``tracking.query``: its params (changed values first),
    metrics, attributes (name, sweep, status, base, commit, created, seconds, run_id), and tags:
    its run's (``mlops runs tag`` sets them) over ``experiment`` and ``sweep``."""
    tags = {"experiment": experiment.name, "sweep": experiment.sweep}
    tags.update(run_tags.get(experiment.run_id or "", {}))
    return {
        "id": experiment.run_id,
        "name": experiment.name,
        "sweep": experiment.sweep,
        "status": experiment.status,
        "base": experiment.base,
        "commit": experiment.commit,
        "created": experiment.created,
        "seconds": experiment.seconds,
        "run_id": experiment.run_id,
        "params": {**experiment.params, **experiment.changes},
        "metrics": experiment.metrics,
        "tags": tags,
    }


def _param(experiment: store.Experiment, key: str) -> Any:
    return experiment.changes.get(key, experiment.params.get(key))


@dataclass(frozen=True)
class Applied:
    name: str
    files: tuple[str, ...]
    outputs: tuple[str, ...]


def apply(repo: Repo, name: str, *, force: bool = False) -> Applied:
    """The experiment's params files, pipeline.lock and outputs into the workspace."""
    from ..data.checkout import checkout
    from ..pipeline.roots import lock_pointers

    experiment = _usable(repo, name)
    changed = _uncommitted(repo, list(experiment.files))
    if changed and not force:
        raise UsageError(
            f"uncommitted changes in {', '.join(changed[:5])}: 'exp apply' would overwrite them",
            hint="commit or stash them, or pass --force",
            files=changed,
        )
    for rel, digest in experiment.files.items():
        atomic_write(repo.abs(rel), experiment_bytes(repo, digest, rel))
    checkout(repo, None, force=force, extra_pointers=lock_pointers(repo))
    return Applied(name, tuple(experiment.files), tuple(o.path for o in experiment.outs))


def experiment_bytes(repo: Repo, digest: str, rel: str) -> bytes:
    from ..errors import MissingObjectError

    if not repo.objects.exists(digest):
        raise MissingObjectError(f"{rel} of the experiment ({digest}) is not in the object store", hint="mlops pull")
    return repo.objects.read_bytes(digest)


def _usable(repo: Repo, name: str) -> store.Experiment:
    experiment = store.read(repo, name)
    if experiment.status != store.SUCCEEDED:
        raise UsageError(f"experiment '{name}' {experiment.status}: nothing to apply", hint=experiment.error or None)
    return experiment


def _uncommitted(repo: Repo, paths: list[str]) -> list[str]:
    if not paths:
        return []
    done = _git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *paths)
    return [entry[3:] for entry in done.split("\0") if len(entry) > 3]


def _git(repo: Repo, *args: str, cwd: Any = None) -> str:
    try:
        done = subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", *args],
            cwd=cwd or repo.root,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"git {args[0]} failed: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise GitError(f"git {args[0]} failed: {detail[-1] if detail else done.returncode}")
    return done.stdout


@dataclass(frozen=True)
class Branched:
    name: str
    branch: str
    commit: str


def branch(repo: Repo, name: str, branch_name: str) -> Branched:
    """A new branch at the experiment's commit plus one commit of its params files, lock and kept outputs."""
    from ..pipeline.stage_exec import private_worktree

    experiment = _usable(repo, name)
    if not branch_name or branch_name.startswith("-") or len(branch_name) > 200:
        raise UsageError(f"not a branch name: {branch_name[:60]!r}")
    if subprocess.run(["git", "check-ref-format", "--branch", branch_name], capture_output=True).returncode != 0:
        raise UsageError(f"not a branch name: {branch_name[:60]!r}")
    exists = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch_name}"], cwd=repo.root, capture_output=True
    )
    if exists.returncode == 0:
        raise UsageError(f"branch '{branch_name}' exists already", hint="choose another name")
    with private_worktree(repo, experiment.commit) as work:
        _git(repo, "switch", "--quiet", "-c", branch_name, cwd=work.root)
        for rel, digest in experiment.files.items():
            target = work.abs(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(experiment_bytes(repo, digest, rel))
        _git(repo, "add", "-f", "--", *experiment.files, cwd=work.root)
        changes = ", ".join(f"{k}={v}" for k, v in experiment.changes.items())
        _git(repo, "commit", "--quiet", "--allow-empty", "-m", f"experiment {name}: {changes}", cwd=work.root)
        sha = _git(repo, "rev-parse", "HEAD", cwd=work.root).strip()
    return Branched(name, branch_name, sha)


@dataclass(frozen=True)
class Removed:
    names: tuple[str, ...]
    workspaces: int = 0
    queued: tuple[str, ...] = field(default=())


def remove(repo: Repo, names: list[str], *, failed: bool = False, queued: bool = False) -> Removed:
    """Experiment records by name, every failed one, or (``queued``) the queue's entries."""
    gone: list[str] = []
    with store.lock(repo):
        for name in names:
            store.remove(repo, name)
            gone.append(name)
        if failed:
            for experiment in store.read_all(repo):
                if experiment.status == store.FAILED:
                    store.remove(repo, experiment.name)
                    gone.append(experiment.name)
    dropped: list[str] = []
    if queued:
        with store.queue_lock(repo):
            for entry in store.read_queue(repo):
                entry.path.unlink()
                dropped.append(entry.name)
    return Removed(tuple(gone), 0, tuple(dropped))


def gc(repo: Repo, *, keep: list[str] | None = None, everything: bool = False) -> Removed:
    """Failed experiments (``everything``: all but ``keep``) and workspaces left by killed runs;
    `mlops gc` then frees the objects only they referenced."""
    from ..pipeline.stage_exec import clean_stale_worktrees

    keep_set = set(keep or [])
    gone: list[str] = []
    with store.lock(repo):
        for experiment in store.read_all(repo):
            if experiment.name in keep_set:
                continue
            if everything or experiment.status != store.SUCCEEDED:
                store.remove(repo, experiment.name)
                gone.append(experiment.name)
    return Removed(tuple(gone), clean_stale_worktrees(repo))


def experiment_roots(repo: Repo) -> list[Any]:
    """Objects the recorded experiments name (outputs, files to apply): gc keeps them, push sends them."""
    from ..data.references import Root

    roots = []
    for experiment in store.read_all(repo):
        for out in experiment.outs:
            roots.append(Root(out.hash, out.kind == "dir", f"experiment {experiment.name}: {out.path}", None))
        for rel, digest in experiment.files.items():
            roots.append(Root(digest, False, f"experiment {experiment.name}: {rel}", None))
    return roots
