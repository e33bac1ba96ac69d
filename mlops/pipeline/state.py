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
        if stage.image_digest:  # only when set: every key of a stage without one stays what it was
            doc["image"] = stage.image_digest
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
            raise FormatError(
                f"{stage.where}: stage '{stage.name}' reads parameters from {ref.file}, which does not exist"
            )
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
    env = {name: _env_hash(stage, name) for name in stage.env}
    return StageInputs(deps, values, env)


def _env_hash(stage: Stage, name: str) -> str | None:
    """A declared value's hash, else the value in this process's environment (None: unset)."""
    if name in stage.env_values:
        return hash_bytes(stage.env_values[name].encode())
    value = os.environ.get(name)
    return None if value is None else hash_bytes(value.encode())


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
    reasons += _path_reasons("dep", inputs.deps, entry.deps)
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
    reasons += _path_reasons("out", outs, entry.outs)
    return reasons


def _path_reasons(kind: str, current: tuple[LockedPath, ...], locked: tuple[LockedPath, ...]) -> list[str]:
    """Dependencies or outputs against their lock-file record: missing, added, changed, removed."""
    before = {p.path: p for p in locked}
    now = {p.path for p in current}
    reasons = [f"{kind} {path} removed" for path in before if path not in now]
    for item in current:
        old = before.get(item.path)
        if item.hash is None:
            reasons.append(f"{kind} {item.path} missing")
        elif old is None:
            reasons.append(f"{kind} {item.path} added")
        elif old.hash != item.hash:
            reasons.append(f"{kind} {item.path} changed")
    return reasons
