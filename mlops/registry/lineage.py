"""Lineage: what a registered version came from, copied into the registry at registration.

Runs are local to a checkout (``.mlops/runs/`` is not committed), the registry is committed:
so ``register --run`` copies what lineage needs into the model file, and ``mlops lineage``
and the model card read only the registry.

The data snapshots behind a version (the rule, docs/registry.md):

1. The run's stage records (``mlops run``) name each stage's dependencies and outputs with
   their hashes. The stage whose output is the registered artifact (same path or same hash)
   is the producing stage; its *data* dependencies are the data behind the version. A
   dependency is data when a pointer file tracks it (``PATH.mlops``) or a stage produced it
   (in the run or in ``pipeline.lock``); code and params files are git's (the commit names them).
   The stages upstream of the producing stage, with their data, make the ``lineage`` chain.
2. When no stage produced the artifact, every stage's data dependencies count.
3. A run without stage records (a script using ``mlops.start_run``): the pointer files at
   the run's git commit (or in the workspace, without a commit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import MlopsError, UsageError
from ..repo.repo import Repo

PATH_KEYS = ("path", "hash", "kind")


@dataclass(frozen=True)
class RunLink:
    run_id: str
    metrics: dict[str, Any]
    params: dict[str, Any]
    git_commit: str | None
    data: list[dict[str, Any]]
    lineage: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _norm(path: str) -> str:
    return path.rstrip("/")


def _pointer_tracked(repo: Repo, path: str) -> bool:
    return (repo.root / (_norm(path) + ".mlops")).is_file()


def _lock_outputs(repo: Repo) -> set[str]:
    try:
        from ..pipeline.lock import read_lock

        return {_norm(o.path) for e in read_lock(repo.root).values() for o in e.outs}
    except MlopsError:
        return set()


def _snap(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"path": _norm(str(item["path"])), "hash": item["hash"], "kind": item.get("kind", "file"), **extra}


def link_run(repo: Repo, ref: str, *, artifact_rel: str | None, artifact_hash: str) -> RunLink:
    """Read a run (id, prefix or name) and gather metrics, params, commit, data and lineage."""
    from ..tracking.store import load_run, read_lines, resolve_run, run_dir

    run_id = resolve_run(repo, ref)
    run = load_run(repo, run_id)
    warnings: list[str] = []
    if run.status != "finished":
        warnings.append(f"run {run_id} is {run.status}, not finished")
    stage_params: dict[str, dict[str, Any]] = {}
    for record in read_lines(run_dir(repo, run_id) / "params.jsonl"):
        if record.get("stage") and isinstance(record.get("key"), str):
            stage_params.setdefault(record["stage"], {})[record["key"]] = record.get("value")
    records: dict[str, dict[str, Any]] = {}
    for record in run.stages:  # the last record of a stage wins (a stage re-recorded)
        if isinstance(record.get("stage"), str):
            records[record["stage"]] = record
    produced_by: dict[str, str] = {}
    for name, record in records.items():
        for out in record.get("outs") or []:
            if out.get("path"):
                produced_by[_norm(out["path"])] = name
    locked = _lock_outputs(repo)

    def is_data(dep: dict[str, Any]) -> bool:
        path = _norm(str(dep.get("path") or ""))
        return bool(dep.get("hash")) and (path in produced_by or path in locked or _pointer_tracked(repo, path))

    producer = None
    for name, record in records.items():
        for out in record.get("outs") or []:
            same_path = artifact_rel is not None and _norm(str(out.get("path"))) == _norm(artifact_rel)
            if same_path or out.get("hash") == artifact_hash:
                producer = name
                if same_path and out.get("hash") and out["hash"] != artifact_hash:
                    raise UsageError(
                        f"{artifact_rel} is not what run {run_id} produced (stage '{name}' wrote {out['hash'][:12]}, "
                        f"the file now holds {artifact_hash[:12]})",
                        hint=(
                            "register the run that made this file, "
                            "or restore its output ('mlops checkout', 'mlops run')"
                        ),
                    )
    stages: list[dict[str, Any]] = []
    data: list[dict[str, Any]] = []
    if records:
        wanted = [producer] if producer else list(records)
        seen: set[str] = set()
        while wanted:  # walk upstream: a stage, then the stages that made its data
            name = wanted.pop(0)
            if name in seen or name not in records:
                continue
            seen.add(name)
            record = records[name]
            deps = [d for d in record.get("deps") or [] if d.get("path")]
            stages.append(
                {
                    "stage": name,
                    "status": record.get("status"),
                    "deps": [_snap(d, data=is_data(d)) for d in deps if d.get("hash")],
                    "outs": [_snap(o) for o in record.get("outs") or [] if o.get("path") and o.get("hash")],
                    "params": stage_params.get(name, {}),
                }
            )
            for dep in deps:
                upstream = produced_by.get(_norm(str(dep["path"])))
                if upstream and upstream != name:
                    wanted.append(upstream)
        direct = [producer] if producer else list(records)
        for name in direct:
            for dep in records[name].get("deps") or []:
                if dep.get("path") and is_data(dep):
                    snap = _snap(dep, stage=name)
                    if all(d["path"] != snap["path"] or d["hash"] != snap["hash"] for d in data):
                        data.append(snap)
    else:
        data = _pointer_data(repo, run.info.get("git_commit"), warnings)
    lineage = {
        "run": {
            "id": run_id,
            "name": run.name,
            "status": run.status,
            "source": run.info.get("source"),
            "started": run.info.get("start_time"),
            "git_dirty": run.info.get("git_dirty"),
        },
        "stage": producer,
        "stages": stages,
    }
    if run.info.get("git_dirty"):
        warnings.append(f"run {run_id} ran with uncommitted changes: its git commit does not hold everything it used")
    return RunLink(run_id, dict(run.metrics), dict(run.params), run.info.get("git_commit"), data, lineage, warnings)


def _pointer_data(repo: Repo, commit: str | None, warnings: list[str]) -> list[dict[str, Any]]:
    """Every pointer file at the commit (or in the workspace): the data a script-made run saw."""
    from ..data.pointer import find_pointer_files, parse_pointer, read_pointer

    out = []
    if commit:
        try:
            from ..repo.git import git_repo

            for path, blob in sorted(git_repo(repo.root).pointer_files_at(commit).items()):
                pointer = parse_pointer(blob, path)
                target = path[: -len(".mlops")]
                out.append({"path": target, "hash": pointer.hash, "kind": pointer.kind, "source": f"git:{commit[:12]}"})
            return out
        except MlopsError as exc:
            warnings.append(f"could not read pointer files at {commit[:12]}: {exc.message}; using the workspace's")
    for rel in find_pointer_files(repo.root):
        pointer = read_pointer(repo.root, rel)
        out.append({"path": pointer.target, "hash": pointer.hash, "kind": pointer.kind, "source": "workspace"})
    return out


def data_from_paths(repo: Repo, paths: list[str]) -> list[dict[str, Any]]:
    """``register --data PATH``: tracked paths (pointer files or pipeline outputs) named by hand."""
    from ..data.pointer import read_pointer

    out = []
    lock_outs: dict[str, Any] = {}
    try:
        from ..pipeline.lock import read_lock

        lock_outs = {_norm(o.path): o for e in read_lock(repo.root).values() for o in e.outs if o.hash}
    except MlopsError:
        pass
    for given in paths:
        rel = _norm(repo.check_user_path(given, must_exist=False))
        if (repo.root / (rel + ".mlops")).is_file():
            pointer = read_pointer(repo.root, rel + ".mlops")
            out.append({"path": rel, "hash": pointer.hash, "kind": pointer.kind, "source": "pointer"})
        elif rel in lock_outs:
            locked = lock_outs[rel]
            out.append({"path": rel, "hash": locked.hash, "kind": locked.kind, "source": "pipeline.lock"})
        else:
            raise UsageError(
                f"{given}: not tracked data (no {rel}.mlops, not a pipeline output)",
                hint=f"track it first: mlops add {given}",
            )
    return out


def lineage_doc(mv: Any) -> dict[str, Any]:
    """The chain of a version for `mlops lineage` and the model card: model <- run <- params,
    data snapshots (through the stages that made them) <- git commit. Read from the registry only."""
    info = mv.lineage or {}
    run = dict(info.get("run") or {}) or ({"id": mv.run_id} if mv.run_id else None)
    stages = []
    for stage in info.get("stages") or []:
        stages.append({**stage, "made_artifact": stage.get("stage") == info.get("stage")})
    return {
        "model": {
            "ref": mv.ref(),
            "name": mv.name,
            "version": mv.version,
            "stage": mv.stage,
            "aliases": list(mv.aliases),
            "artifact": mv.artifact,
            "kind": mv.kind,
            "filename": mv.filename,
            "flavor": mv.flavor,
            "registered_by": mv.registered_by,
            "registered_at": mv.registered_at,
        },
        "run": run,
        "params": dict(mv.params),
        "metrics": dict(mv.metrics),
        "stages": stages,
        "data": [dict(d) for d in mv.data],
        "git_commit": mv.git_commit,
    }
