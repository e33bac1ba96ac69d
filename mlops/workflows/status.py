"""The status of a repository: tracked data against its pointer files, the pipeline's stages
against pipeline.lock, and DVC data an import recorded that is not here yet.

`mlops status` shows it; the pre-commit hook refuses a commit on the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from ..data.status import StatusResult
    from ..repo.repo import Repo


@dataclass(frozen=True)
class StageStatus:
    """One stage as `mlops run` sees it: whether it would run, why, and whether it ever ran."""

    name: str
    status: str  # the executor's plan: "would run" or "up to date"
    reasons: tuple[str, ...]
    has_run: bool  # pipeline.lock has an entry for it

    @property
    def stale(self) -> bool:
        """Recorded in pipeline.lock but out of date: a stage never run is no stale record."""
        return self.status == "would run" and self.has_run

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reasons": list(self.reasons), "has_run": self.has_run}


def stage_status(repo: Repo) -> tuple[StageStatus, ...]:
    """Stages that `mlops run` would run, with why; none when the repo has no pipeline."""
    if not (repo.root / "pipeline.yaml").is_file():  # the pipeline modules load only when there is one
        return ()
    from ..pipeline.executor import plan
    from ..pipeline.graph import build_graph
    from ..pipeline.lock import read_lock
    from ..pipeline.spec import load_pipeline

    graph = build_graph(load_pipeline(repo.root), repo.root)
    locked = read_lock(repo.root)
    return tuple(
        StageStatus(s.name, s.status, tuple(s.reasons), s.name in locked) for s in plan(repo, graph, list(graph.order))
    )


@dataclass(frozen=True)
class RepoStatus:
    data: StatusResult
    stages: tuple[StageStatus, ...]  # none when targets were named
    dvc_missing: tuple[Any, ...]  # pipeline.dvc.record.MissingData

    @property
    def changed(self) -> tuple[Any, ...]:
        """Tracked paths whose data differs from the pointer file (data not pulled yet is no change)."""
        from ..data.status import NOT_PULLED

        return tuple(t for t in self.data.targets if t.state not in ("unchanged", NOT_PULLED))

    @property
    def stale(self) -> tuple[StageStatus, ...]:
        return tuple(s for s in self.stages if s.stale)

    @property
    def problems(self) -> int:
        """What `status --check` counts: changed paths, stale stages, missing DVC data."""
        return len(self.changed) + len(self.stale) + len(self.dvc_missing)

    @property
    def clean(self) -> bool:
        return self.data.clean and not self.stale and not self.dvc_missing


def status(
    repo: Repo, targets: list[str] | None = None, *, jobs: int | None = None, progress: Progress = NO_PROGRESS
) -> RepoStatus:
    """Tracked data (``targets``, or every pointer file), and without targets the stages too."""
    from ..data.status import status as data_status

    data = data_status(repo, targets, jobs=jobs, progress=progress)
    stages = () if targets else stage_status(repo)
    missing: tuple[Any, ...] = ()
    if (repo.dot / "dvc-import.json").is_file():  # DVC-tracked data an import recorded that is not here yet
        from ..pipeline.dvc.record import missing_data

        missing = tuple(missing_data(repo))
    return RepoStatus(data, stages, missing)
