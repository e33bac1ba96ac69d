"""What a stage sees now (dependencies, parameters, environment, outputs) and why it is out of date.

A stage runs when its cmd, the hash of any dependency, the value of any declared
parameter or environment variable, or an output (missing or changed) differs from what
pipeline.lock recorded. Each difference becomes one readable reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import FormatError
from ..repo.repo import Repo
from ..store.hashing import hash_bytes
from .lock import LockedPath, LockEntry
from .params import MISSING, ParamFiles, flatten
from .spec import Stage


@dataclass(frozen=True)
class StageInputs:
    deps: tuple[LockedPath, ...]
    params: dict[str, dict[str, Any]]
    env: dict[str, str | None]

    def run_key(self, stage: Stage) -> str:
        """The run-cache key: the same command on the same inputs makes the same outputs."""
        import json

        doc = {
            "cmd": stage.cmd_text,
            "wdir": stage.wdir,
            "deps": sorted((d.path, d.hash) for d in self.deps),
            "params": self.params,
            "env": self.env,
            "outs": sorted(o.path for o in stage.outs),
        }
        return hash_bytes(json.dumps(doc, sort_keys=True, default=str).encode())


def read_path(repo: Repo, rel: str) -> LockedPath:
    """A dependency or output as it is in the workspace (None hash when missing)."""
    from ..data.snapshot import read_workspace

    snap = read_workspace(repo, rel, need_records=False)
    if snap.kind is None:
        return LockedPath(rel, None)
    files = len(snap.files) if snap.kind == "dir" else 1
    return LockedPath(rel, snap.hash, snap.kind, snap.size, files)


def check_params(stage: Stage, params: ParamFiles) -> dict[str, dict[str, Any]]:
    """The stage's parameter values, flattened per file; a missing file or key is an input error."""
    values: dict[str, dict[str, Any]] = {}
    for ref in stage.params:
        data = params.load(ref.file)
        if data is MISSING:
            raise FormatError(f"{stage.where}: stage '{stage.name}' reads parameters from {ref.file}, which does not exist")
        value = params.value(ref.file, ref.key) if ref.key else data
        if value is MISSING:
            raise FormatError(
                f"{stage.where}: stage '{stage.name}': parameter '{ref.key}' not found in {ref.file}",
                hint=f"add it to {ref.file}, or remove it from the stage's params",
            )
        values.setdefault(ref.file, {}).update(flatten(ref.key, value))
    return values


def read_inputs(repo: Repo, stage: Stage, params: ParamFiles) -> StageInputs:
    deps = tuple(read_path(repo, dep) for dep in stage.deps)
    values = check_params(stage, params)
    env = {name: (hash_bytes(os.environ[name].encode()) if name in os.environ else None) for name in stage.env}
    return StageInputs(deps, values, env)


def read_outputs(repo: Repo, stage: Stage) -> tuple[LockedPath, ...]:
    return tuple(read_path(repo, out.path) for out in stage.outs)


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def out_of_date_reasons(
    stage: Stage, entry: LockEntry | None, inputs: StageInputs, outs: tuple[LockedPath, ...]
) -> list[str]:
    """Why the stage must run; empty when it is up to date."""
    if entry is None:
        return ["never run"]
    reasons: list[str] = []
    if stage.always_changed:
        reasons.append("always changed")
    if entry.cmd != stage.cmd_text:
        reasons.append("cmd changed")
    locked_deps = {d.path: d for d in entry.deps}
    for dep in inputs.deps:
        before = locked_deps.get(dep.path)
        if dep.hash is None:
            reasons.append(f"dep {dep.path} missing")
        elif before is None:
            reasons.append(f"dep {dep.path} added")
        elif before.hash != dep.hash:
            reasons.append(f"dep {dep.path} changed")
    for path in locked_deps:
        if path not in {d.path for d in inputs.deps}:
            reasons.append(f"dep {path} removed")
    for file, values in inputs.params.items():
        before = entry.params.get(file, {})
        for key, value in values.items():
            if key not in before:
                reasons.append(f"param {key} added")
            elif before[key] != value:
                reasons.append(f"param {key} {_short(before[key])} -> {_short(value)}")
        for key in before:
            if key not in values:
                reasons.append(f"param {key} removed")
    for file in entry.params:
        if file not in inputs.params:
            reasons.extend(f"param {key} removed" for key in entry.params[file])
    for name, value in inputs.env.items():
        if name not in entry.env:
            reasons.append(f"env {name} added")
        elif entry.env[name] != value:
            reasons.append(f"env {name} changed")
    locked_outs = {o.path: o for o in entry.outs}
    current_outs = {o.path for o in outs}
    reasons.extend(f"out {path} removed" for path in locked_outs if path not in current_outs)
    for out in outs:
        before = locked_outs.get(out.path)
        if out.hash is None:
            reasons.append(f"out {out.path} missing")
        elif before is None:
            reasons.append(f"out {out.path} added")
        elif before.hash != out.hash:
            reasons.append(f"out {out.path} changed")
    return reasons
