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

Which run a version is linked to (the run that made the artifact, docs/registry.md):

4. ``--run RUN`` whose producing stage was ``restored`` from the run cache or ``skipped`` as up
   to date (or a run that only restored or skipped stages, none of which wrote the artifact):
   the run that *ran* a stage writing those bytes gives metrics, params, commit, data and
   lineage. Its id is found through the stage record's ``produced_by`` (the run cache names the
   run that filled it), else by searching the runs newest first for a ``ran`` record with an
   output of the artifact's hash. The version's ``run_id`` is that run; ``lineage`` keeps
   ``registered_from_run`` (the run named), and a warning says so. When no such run is found,
   the named run is linked, with a warning.
5. Without ``--run``, an artifact that ``pipeline.lock`` records as a stage's output (same hash)
   is linked to the run that ran that stage, found by the same search, with a line saying so;
   when none is found, the version has no run (as when the artifact is not a pipeline output).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import MlopsError, UsageError
from ..repo.repo import Repo

PATH_KEYS = ("path", "hash", "kind")
RAN = "ran"
NOT_RUN_HERE = ("restored", "skipped")  # the stage's outputs were made by an earlier run


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


def link_artifact(repo: Repo, run: str | None, *, artifact_rel: str | None, artifact_hash: str) -> RunLink | None:
    """What ``register`` links a version to: the run named (``link_run``), or without one, the run
    that produced the artifact when pipeline.lock records it as a stage output (rule 5); else None."""
    if run is not None:
        return link_run(repo, run, artifact_rel=artifact_rel, artifact_hash=artifact_hash)
    stage = _locked_producer(repo, artifact_rel, artifact_hash)
    if stage is None:
        return None
    origin = find_producing_run(repo, artifact_hash)
    if origin is None:
        return None
    link = _link(repo, origin, artifact_rel=artifact_rel, artifact_hash=artifact_hash)
    what = artifact_rel or "the artifact"
    note = f"linked run {origin}: it ran stage '{stage}', which made {what} (found by its hash in pipeline.lock)"
    return replace(link, warnings=[note, *link.warnings])


def link_run(repo: Repo, ref: str, *, artifact_rel: str | None, artifact_hash: str) -> RunLink:
    """Read a run (id, prefix or name) and gather metrics, params, commit, data and lineage;
    from the run that made the artifact when the named one only restored or skipped it (rule 4)."""
    from ..tracking.store import load_run, resolve_run

    named = resolve_run(repo, ref)
    records = _stage_records(load_run(repo, named))
    producer = _producer(records, named, artifact_rel, artifact_hash)
    statuses = {r.get("status") for r in records.values()}
    if producer is not None:
        status = records[producer].get("status")
        if status not in NOT_RUN_HERE:
            return _link(repo, named, artifact_rel=artifact_rel, artifact_hash=artifact_hash)
        hint = records[producer].get("produced_by")
        doing = f"{status} stage '{producer}'"
    elif records and statuses <= {*NOT_RUN_HERE, "frozen"}:
        hint, doing = None, "ran no stage"
    else:
        return _link(repo, named, artifact_rel=artifact_rel, artifact_hash=artifact_hash)
    origin = find_producing_run(repo, artifact_hash, hint=hint if isinstance(hint, str) else None, exclude=named)
    what = artifact_rel or "the artifact"
    if origin is None:
        link = _link(repo, named, artifact_rel=artifact_rel, artifact_hash=artifact_hash)
        note = f"run {named} {doing} and no recorded run that made {what} was found: linking run {named}"
        return replace(link, warnings=[note, *link.warnings])
    link = _link(repo, origin, artifact_rel=artifact_rel, artifact_hash=artifact_hash)
    note = (
        f"run {named} {doing}: metrics, params and lineage come from run {origin}, which made {what} "
        f"(the version names run {origin}, registered from run {named})"
    )
    return replace(link, lineage={**link.lineage, "registered_from_run": named}, warnings=[note, *link.warnings])


def _stage_records(run: Any) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for record in run.stages:  # the last record of a stage wins (a stage re-recorded)
        if isinstance(record.get("stage"), str):
            records[record["stage"]] = record
    return records


def _producer(
    records: dict[str, dict[str, Any]], run_id: str, artifact_rel: str | None, artifact_hash: str
) -> str | None:
    """The stage of the run whose output is the artifact (same path or same hash); a stage that
    wrote the same path with other bytes is refused: the link would be a lie."""
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
    return producer


def _locked_producer(repo: Repo, artifact_rel: str | None, artifact_hash: str) -> str | None:
    """The stage pipeline.lock names as having written the artifact's bytes (the same path first)."""
    try:
        from ..pipeline.lock import read_lock

        entries = read_lock(repo.root)
    except MlopsError:
        return None
    found = [
        (artifact_rel is not None and _norm(out.path) == _norm(artifact_rel), name)
        for name, entry in entries.items()
        for out in entry.outs
        if out.hash == artifact_hash
    ]
    return max(found)[1] if found else None


def find_producing_run(repo: Repo, out_hash: str, *, hint: str | None = None, exclude: str | None = None) -> str | None:
    """The run that ran a stage which wrote ``out_hash``: ``hint`` (a stage record's ``produced_by``)
    when its records say so, else the newest run that does (a search through the runs)."""
    from ..tracking.store import read_index, read_lines, run_dir, run_ids

    def ran_it(run_id: str) -> bool:
        try:
            lines = read_lines(run_dir(repo, run_id) / "stages.jsonl")
        except MlopsError:  # a bad id (hint from a record) or an unreadable file: not this one
            return False
        return any(
            record.get("status") == RAN
            and isinstance(record.get("outs"), list)
            and any(isinstance(out, dict) and out.get("hash") == out_hash for out in record["outs"])
            for record in lines
        )

    if hint and hint != exclude and ran_it(hint):
        return hint
    try:
        index = read_index(repo)
    except MlopsError:
        index = {}

    def started(run_id: str) -> float:
        value = (index.get(run_id) or {}).get("start_time")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0

    for run_id in sorted(run_ids(repo), key=lambda i: (started(i), i), reverse=True):
        if run_id != exclude and run_id != hint and ran_it(run_id):
            return run_id
    return None


def _link(repo: Repo, run_id: str, *, artifact_rel: str | None, artifact_hash: str) -> RunLink:
    """Gather metrics, params, commit, data and lineage from one run (rules 1-3)."""
    from ..tracking.store import load_run, read_lines, run_dir

    run = load_run(repo, run_id)
    warnings: list[str] = []
    if run.status != "finished":
        warnings.append(f"run {run_id} is {run.status}, not finished")
    stage_params: dict[str, dict[str, Any]] = {}
    for record in read_lines(run_dir(repo, run_id) / "params.jsonl"):
        if record.get("stage") and isinstance(record.get("key"), str):
            stage_params.setdefault(record["stage"], {})[record["key"]] = record.get("value")
    records = _stage_records(run)
    produced_by: dict[str, str] = {}
    for name, record in records.items():
        for out in record.get("outs") or []:
            if out.get("path"):
                produced_by[_norm(out["path"])] = name
    locked = _lock_outputs(repo)

    def is_data(dep: dict[str, Any]) -> bool:
        path = _norm(str(dep.get("path") or ""))
        return bool(dep.get("hash")) and (path in produced_by or path in locked or _pointer_tracked(repo, path))

    producer = _producer(records, run_id, artifact_rel, artifact_hash)
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
    if run is not None and info.get("registered_from_run"):
        run["registered_from"] = info["registered_from_run"]  # the run named at registration (rule 4)
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
        # a feature-store training set (mlops features get-training-set): service, definitions, sources
        "training_set": info.get("training_set"),
    }
