"""`mlops export` commands of the pipeline side (see export.py): Airflow and Argo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..repo.repo import find_repo
from .boundary import JSON_OPTION, command
from .output import Output

OUTPUT_OPTION = typer.Option(..., "--output", "-o", help="The file to write.")
REV_OPTION = typer.Option(None, "--rev", help="The commit the tasks run (default: HEAD, which must be committed).")
REPO_URL_OPTION = typer.Option(
    None, "--repo-url", help="Where workers clone the repository (default: git remote get-url origin); no credentials."
)
RETRIES_OPTION = typer.Option(2, "--retries", min=0, max=100, help="Retries of each task before it fails.")
SECRET_OPTION = typer.Option(
    None, "--secret", help="A Kubernetes Secret whose keys become the pods' environment (the remote's credentials)."
)


def register(group: typer.Typer) -> None:
    """Add this side's commands to the `export` group."""
    command(group, "airflow")(airflow)
    command(group, "argo")(argo)


def _write(out: Output, path: Path, text: str, summary: dict[str, Any], what: str) -> None:
    from ..fsio import write_output

    # the folder is made (dags/ of a fresh checkout); then the house's rules for an output the
    # user named: a symlink followed, /dev/stdout written through, a folder refused (exit 2)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_output(path, text)
    for warning in summary["warnings"]:
        out.warn(warning)
    if out.json:
        out.emit_json(summary)
    else:
        out.line(f"wrote {path}: {what}")


def _summary(path: Path, plan: Any, engine: str) -> dict[str, Any]:
    return {
        "engine": engine,
        "path": str(path),
        "rev": plan.rev,
        "repo_url": plan.repo_url,
        "tasks": [
            {"stage": t.stage, "task": t.task, "upstream": [plan.task_of(u).task for u in t.upstream]}
            for t in plan.tasks
        ],
        "collect": plan.collect_task,
        "warnings": list(plan.warnings),
    }


def argo(
    output: Path = OUTPUT_OPTION,
    image: str = typer.Option(..., "--image", help="The container image with mlops and git (a stage's image: wins)."),
    rev: str | None = REV_OPTION,
    repo_url: str | None = REPO_URL_OPTION,
    remote: str | None = typer.Option(None, "--remote", "-r", help="The mlops remote the tasks use (default: core)."),
    secret: str | None = SECRET_OPTION,
    retries: int = RETRIES_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Write the pipeline as an Argo Workflow: one task per stage running `mlops stage exec`, then a collect task."""
    from ..exporters.argo import export_argo

    out = Output(json_output=json_output)
    repo = find_repo()
    result = export_argo(repo, image=image, rev=rev, repo_url=repo_url, remote=remote, secret=secret, retries=retries)
    what = f"{len(result.plan.tasks)} stage task(s) and a collect task at {result.plan.rev[:12]}"
    _write(out, output, result.text, _summary(output, result.plan, "argo"), what)


def airflow(
    output: Path = OUTPUT_OPTION,
    schedule: str | None = typer.Option(
        None, "--schedule", help="When Airflow runs it: a preset (@daily, @hourly...) or a cron expression."
    ),
    kubernetes: bool = typer.Option(
        False, "--kubernetes", help="KubernetesPodOperator tasks (with --image) instead of BashOperator."
    ),
    image: str | None = typer.Option(None, "--image", help="With --kubernetes: the image with mlops and git."),
    rev: str | None = REV_OPTION,
    repo_url: str | None = REPO_URL_OPTION,
    remote: str | None = typer.Option(None, "--remote", "-r", help="The mlops remote the tasks use (default: core)."),
    secret: str | None = SECRET_OPTION,
    retries: int = RETRIES_OPTION,
    dag_id: str | None = typer.Option(None, "--dag-id", help="The DAG's id (default: the repository folder's name)."),
    clone: str | None = typer.Option(
        None,
        "--clone",
        help="BashOperator: the clone workers run in (default: this repository; MLOPS_CLONE or an Airflow Variable "
        "overrides it at run time).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write the pipeline as an Airflow DAG file: one task per stage running `mlops stage exec`, then a collect task."""
    from ..exporters.airflow import export_airflow

    out = Output(json_output=json_output)
    repo = find_repo()
    result = export_airflow(
        repo,
        schedule=schedule,
        kubernetes=kubernetes,
        image=image,
        rev=rev,
        repo_url=repo_url,
        remote=remote,
        secret=secret,
        retries=retries,
        dag_id=dag_id,
        clone=clone,
    )
    summary = {**_summary(output, result.plan, "airflow"), "dag_id": result.dag_id}
    what = f"DAG {result.dag_id}: {len(result.plan.tasks)} stage task(s) and a collect task at {result.plan.rev[:12]}"
    _write(out, output, result.text, summary, what)
