"""`mlops stage collect`: the last task of an exported DAG, the one writer of its state.

Run in a clone whose HEAD is the DAG's commit. Stage by stage in DAG order it makes the
workspace what `mlops run` would have left: tracked data the stages read checked out, each
stage's outputs (from the manifests given, else found by the stage's key in the local then the
remote run cache) restored; then pipeline.lock gets one block per stage, exactly as `mlops run`
writes it, and one run record (source "pipeline", every stage "restored", naming the run that
produced it) is written and pushed to the remote as `mlops push --runs` does. No command runs:
a stage without a result is an error (exit 3), and nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..errors import CouldNotComplete, MlopsError, UsageError
from ..repo.repo import Repo
from ..tracking import store as tracking
from . import runcache
from .executor import RESTORED, RunTracker, StageResult, finished_stage
from .graph import build_graph
from .lock import LockEntry, read_lock, write_lock
from .spec import load_pipeline
from .stage_exec import (
    InputResolver,
    StageManifest,
    check_manifest_outputs,
    commit_of,
    lookup,
    open_remote_or_none,
    resolve_commit,
)
from .state import read_inputs


@dataclass(frozen=True)
class CollectResult:
    rev: str
    run_id: str
    stages: tuple[StageResult, ...]
    pushed: tuple[str, ...]  # runs sent to the remote (none without one)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "rev": self.rev,
            "run_id": self.run_id,
            "stages": [s.to_dict() for s in self.stages],
            "pushed_runs": list(self.pushed),
            "warnings": list(self.warnings),
        }


def collect(
    repo: Repo, *, rev: str, remote: str | None = None, manifests: Sequence[StageManifest] = ()
) -> CollectResult:
    """Restore every stage's outputs at ``rev`` (HEAD), write pipeline.lock and one run, push the run."""
    target = open_remote_or_none(repo, remote)
    sha = resolve_commit(repo, rev, target)
    head = commit_of(repo.root, "HEAD")
    if head != sha:
        raise UsageError(
            f"HEAD is {str(head)[:12]}, not {sha[:12]}: collect writes the state of the commit checked out",
            hint=f"git checkout {sha[:12]} first",
        )
    graph = build_graph(load_pipeline(repo.root), repo.root)
    given: dict[str, StageManifest] = {}
    for manifest in manifests:
        if manifest.rev != sha:
            raise UsageError(
                f"the manifest of stage '{manifest.stage}' is for revision {manifest.rev[:12]}, not {sha[:12]}"
            )
        check_manifest_outputs(graph, manifest, f"--manifest of stage '{manifest.stage}'")
        given[manifest.stage] = manifest
    inputs_of = InputResolver(repo, repo, graph, target, given)
    names = [n for n in graph.order if not graph.stage(n).frozen]
    warnings: list[str] = []
    results: list[StageResult] = []
    entries: dict[str, LockEntry] = {}
    for name in names:
        started = time.time()
        stage = graph.stage(name)
        for path in stage.deps:
            inputs_of.place(path)
        inputs = read_inputs(repo, stage, inputs_of.params)
        key = inputs.run_key(stage)
        manifest = given.get(name)
        # the outputs belong to the key they were made under: recorded under another, a later
        # `mlops run` here would take them as made from inputs that never produced them
        cacheable_here = True
        if manifest is not None:
            if manifest.key != key:
                cacheable_here = False
                # pipeline.lock records the environment the outputs were made in: `mlops run`
                # here, in another, sees "env changed" and runs the stage
                made_in = {n: manifest.env.get(n, value) for n, value in inputs.env.items()}
                inputs = replace(inputs, env=made_in)
                warnings.append(
                    f"stage '{name}': its manifest's key {manifest.key} is not {key}, computed here "
                    "(a declared env value differs between the machines?); its outputs are taken as given, "
                    "not entered in this clone's run cache"
                )
            outs, produced_by = manifest.outs, manifest.run_id
        else:
            hit = lookup(repo, target, stage, key, warnings)
            if hit is None:
                raise CouldNotComplete(
                    f"stage '{name}' has no result in the run cache (key {key}); nothing was written",
                    hint=f"run 'mlops stage exec {name} --rev {sha}' first, or pass its manifest with --manifest",
                    stage=name,
                )
            outs, produced_by = hit.outs, hit.run_id
        inputs_of.results[name] = (outs, produced_by)
        inputs_of.restore(stage, outs)
        if cacheable_here:
            runcache.record(repo, key, outs, run_id=produced_by)
        entries[name] = LockEntry(stage.cmd_text, inputs.deps, inputs.params, inputs.env, outs, stage.image_digest)
        results.append(finished_stage(name, RESTORED, ("collected",), started, inputs, outs, produced_by=produced_by))
    with repo.lock("pipeline-lock", what="pipeline.lock"):
        current = read_lock(repo.root)
        current.update(entries)
        write_lock(repo.root, current, list(graph.pipeline.stages))
    run_id = tracking.new_run_id()
    tracker = RunTracker(repo, run_id, graph, names)
    warnings += tracker.finish(tuple(results), interrupted=False)
    pushed: tuple[str, ...] = ()
    if target is not None:
        from ..tracking.sync import push_runs

        try:
            sent = push_runs(repo, target)
            pushed = sent.sent
            warnings += sent.warnings
        except MlopsError as exc:
            warnings.append(f"run {run_id} not pushed to remote '{target.name}': {exc.message}")
    return CollectResult(sha, run_id, tuple(results), pushed, tuple([*inputs_of.warnings, *warnings]))
