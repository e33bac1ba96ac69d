"""`mlops add` where data meets the pipeline: a stage's output is tracked by `mlops run`, not by hand.

A path a stage of pipeline.yaml declares as an output (``outs``, ``metrics``, ``plots``), a
folder holding one, or a path inside one is refused before anything is stored (``UsageError``,
exit 2), naming the stage: a pointer file beside it would compete with pipeline.lock for what
the path holds, and the next run would delete the output the pointer names.

An unreadable pipeline.yaml does not stop `add` of other data: the check is skipped with a
warning (the pipeline's own commands report the problem with its line and column).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..data.add import AddResult
from ..data.add import add as add_paths
from ..errors import MlopsError, UsageError
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo

PIPELINE_FILE = "pipeline.yaml"  # pipeline.spec's name for it; read only when the file is there


@dataclass(frozen=True)
class AddFlow:
    result: AddResult
    warnings: tuple[str, ...] = ()


def add(repo: Repo, paths: Sequence[str], *, jobs: int | None = None, progress: Progress = NO_PROGRESS) -> AddFlow:
    """Refuse stage outputs (``check_not_stage_outputs``), then ``data.add``."""
    warnings = check_not_stage_outputs(repo, paths)
    return AddFlow(add_paths(repo, paths, jobs=jobs, progress=progress), tuple(warnings))


def check_not_stage_outputs(repo: Repo, paths: Sequence[str]) -> list[str]:
    """Raise ``UsageError`` for the first path that is, holds or lies inside a stage output;
    returns warnings (pipeline.yaml could not be read, so nothing was checked)."""
    if not (repo.root / PIPELINE_FILE).is_file():
        return []
    from ..pipeline.spec import load_pipeline

    try:
        pipeline = load_pipeline(repo.root)
    except MlopsError as exc:
        return [f"{PIPELINE_FILE} could not be read ({exc.message}): not checked whether the paths are stage outputs"]
    outputs = [(out.path, name) for name, stage in pipeline.stages.items() for out in stage.outs]
    for given in paths:
        try:
            rel = repo.check_user_path(given, must_exist=False).rstrip("/")
        except MlopsError:
            continue  # data.add says what is wrong with the path itself
        for out, stage in outputs:
            if rel == out or rel.startswith(out + "/"):
                where = rel if rel == out else f"{rel} is inside {out}, which"
                raise UsageError(
                    f"{where} is an output of stage '{stage}' in {PIPELINE_FILE}: "
                    "mlops run tracks it (pipeline.lock); remove it from the stage's outs to track it by hand",
                    hint=f"run 'mlops run {stage}' to record it",
                )
            if rel in ("", ".") or out.startswith(rel + "/"):
                raise UsageError(
                    f"{rel or '.'} holds {out}, an output of stage '{stage}' in {PIPELINE_FILE}: "
                    "mlops run tracks it (pipeline.lock); add the other paths one by one, "
                    "or remove it from the stage's outs to track it by hand",
                    hint=f"run 'mlops run {stage}' to record {out}",
                )
    return []
