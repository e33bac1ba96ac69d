"""Registering what the pipeline declares: ``mlops register NAME`` without a path takes the
artifact pipeline.yaml's ``artifacts:`` section names (its path, desc, type, labels, meta), as
DVC's artifacts section declares models for its registry. Crosses pipeline and registry."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import UsageError
from ..progress import NO_PROGRESS, Progress
from ..registry import RegisterResult
from ..repo.repo import Repo


@dataclass(frozen=True)
class DeclaredArtifact:
    path: Path
    desc: str
    declared: dict[str, Any] = field(default_factory=dict)  # type, labels, meta: what is set


def declared_artifact(repo: Repo, name: str) -> DeclaredArtifact:
    """The artifact NAME pipeline.yaml declares; UsageError naming the declared ones when none is."""
    from ..pipeline.spec import PIPELINE_FILE, load_pipeline

    artifacts = load_pipeline(repo.root).sections.artifacts if (repo.root / PIPELINE_FILE).is_file() else {}
    if name not in artifacts:
        known = ", ".join(artifacts) or "none"
        raise UsageError(
            f"no path given, and pipeline.yaml declares no artifact '{name}'",
            hint=f"mlops register {name} PATH, or declare it under 'artifacts:' (declared: {known})",
        )
    artifact = artifacts[name]
    declared = {"type": artifact.type, "labels": list(artifact.labels), "meta": artifact.meta}
    return DeclaredArtifact(
        repo.root / artifact.path, artifact.desc, {k: v for k, v in declared.items() if v not in ("", [], None)}
    )


def logged_model(repo: Repo, run: str, name: str) -> str | None:
    """The path ``mlops.log_model(model, NAME)`` saved in ``run``, if it logged one by that name."""
    from ..paths import relpath_problem
    from ..tracking.store import load_run, resolve_run

    found = None
    for record in load_run(repo, resolve_run(repo, run)).artifacts:
        if record.get("model") == name and not relpath_problem(record.get("path")):
            found = record["path"]
    return found


def register(
    repo: Repo,
    name: str,
    path: str | os.PathLike[str] | None,
    *,
    run: str | None = None,
    description: str = "",
    actor: str | None = None,
    data: Sequence[str] = (),
    signature_from: str | os.PathLike[str] | None = None,
    infer_signature: bool = True,
    artifacts: str | os.PathLike[str] | None = None,
    progress: Progress = NO_PROGRESS,
) -> RegisterResult:
    """``registry.register``; without ``path``, the declared artifact NAME, its desc as the
    description (unless one is given) and its type/labels/meta kept on the version, in the
    same locked step as the registration."""
    declared: dict[str, Any] = {}
    logged = logged_model(repo, run, name) if path is None and run is not None else None
    if logged is not None:
        path = repo.root / logged
    elif path is None:
        artifact = declared_artifact(repo, name)
        path, description, declared = artifact.path, description or artifact.desc, artifact.declared
    return registry.register(
        repo,
        name,
        path,
        run=run,
        description=description,
        actor=actor,
        data=data,
        signature_from=signature_from,
        infer_signature=infer_signature,
        declared=declared,
        artifacts=artifacts,
        progress=progress,
    )
