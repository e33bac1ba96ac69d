"""The pipeline as an Argo Workflow (argoproj.io/v1alpha1): one DAG task per stage.

Each stage gets a container template that clones the repository at the commit and runs
``mlops stage exec``; its manifest (a small JSON document of hashes) is the template's output
parameter, handed to the stages that need it as ``--upstream`` and to the final collect task.
Data never passes through Argo: the tasks meet in the mlops remote. Manifests reach the shell
through environment variables, never spliced into the script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..repo.repo import Repo
from .stage_tasks import (
    ExportPlan,
    StageTask,
    check_image,
    check_task_options,
    collect_command,
    export_plan,
    manifest_var,
    upstream_var,
)

API_VERSION = "argoproj.io/v1alpha1"
MANIFEST_PATH = "/tmp/mlops/manifest.json"
CLONE_PATH = "/tmp/mlops/repo"
ENTRYPOINT = "pipeline"
STAGE_ANNOTATION = "mlops.io/stage"


@dataclass(frozen=True)
class ArgoExport:
    """What `mlops export argo` writes: the Workflow document and its YAML text."""

    plan: ExportPlan
    workflow: dict[str, Any]
    text: str


def _clone_script(command: str) -> str:
    # clone without credentials in the URL (a Secret's env or a credential helper gives them),
    # then the commit itself: a clone of the default branch may lack it, so fetch it by name
    return "\n".join(
        [
            "set -eu",
            f'rm -rf {CLONE_PATH} && mkdir -p "$(dirname {MANIFEST_PATH})"',
            f'git clone --quiet --no-checkout "$MLOPS_REPO_URL" {CLONE_PATH}',
            f"cd {CLONE_PATH}",
            'git checkout --quiet --detach "$MLOPS_REV" 2>/dev/null || '
            '{ git fetch --quiet origin "$MLOPS_REV" && git checkout --quiet --detach "$MLOPS_REV"; }',
            command,
        ]
    )


def _container(
    plan: ExportPlan, image: str, script: str, env: list[dict[str, str]], secret: str | None, resources: dict[str, Any]
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "image": image,
        "command": ["sh", "-c"],
        "args": [script],
        "env": [{"name": "MLOPS_REPO_URL", "value": plan.repo_url}, {"name": "MLOPS_REV", "value": plan.rev}, *env],
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    if resources:
        container["resources"] = resources
    return container


def _retry(retries: int) -> dict[str, Any]:
    # Always: a pod lost with its node (preemption, eviction) is retried too; a stage killed
    # mid-run leaves no run-cache entry, so the retry runs it again from the start
    return {"limit": str(retries), "retryPolicy": "Always"}  # IntOrString: the schema types it a string


def _stage_template(plan: ExportPlan, task: StageTask, image: str, secret: str | None, retries: int) -> dict[str, Any]:
    from .stage_tasks import exec_command

    variables = [upstream_var(i) for i in range(len(task.upstream))]
    command = exec_command(plan, task, variables) + f" > {MANIFEST_PATH}"
    template: dict[str, Any] = {
        "name": task.task,
        "metadata": {"annotations": {STAGE_ANNOTATION: task.stage}},
    }
    if task.upstream:
        template["inputs"] = {"parameters": [{"name": f"upstream-{i}"} for i in range(len(task.upstream))]}
    template["outputs"] = {"parameters": [{"name": "manifest", "valueFrom": {"path": MANIFEST_PATH}}]}
    template["retryStrategy"] = _retry(retries)
    env = [{"name": var, "value": f"{{{{inputs.parameters.upstream-{i}}}}}"} for i, var in enumerate(variables)]
    template["container"] = _container(
        plan, task.image or image, _clone_script(command), env, secret, task.resources.kubernetes()
    )
    return template


def _collect_template(plan: ExportPlan, image: str, secret: str | None, retries: int) -> dict[str, Any]:
    variables = [manifest_var(i) for i in range(len(plan.tasks))]
    env = [{"name": var, "value": f"{{{{inputs.parameters.manifest-{i}}}}}"} for i, var in enumerate(variables)]
    return {
        "name": plan.collect_task,
        "inputs": {"parameters": [{"name": f"manifest-{i}"} for i in range(len(plan.tasks))]},
        "retryStrategy": _retry(retries),
        "container": _container(plan, image, _clone_script(collect_command(plan, variables)), env, secret, {}),
    }


def workflow_document(plan: ExportPlan, *, image: str, secret: str | None = None, retries: int = 2) -> dict[str, Any]:
    """The Workflow as a plain document (what the YAML file holds)."""
    by_stage = {t.stage: t for t in plan.tasks}
    dag_tasks: list[dict[str, Any]] = []
    for task in plan.tasks:
        entry: dict[str, Any] = {"name": task.task, "template": task.task}
        if task.upstream:
            entry["dependencies"] = [by_stage[u].task for u in task.upstream]
            entry["arguments"] = {
                "parameters": [
                    {"name": f"upstream-{i}", "value": f"{{{{tasks.{by_stage[u].task}.outputs.parameters.manifest}}}}"}
                    for i, u in enumerate(task.upstream)
                ]
            }
        dag_tasks.append(entry)
    collect: dict[str, Any] = {
        "name": plan.collect_task,
        "template": plan.collect_task,
        "dependencies": [t.task for t in plan.tasks],
        "arguments": {
            "parameters": [
                {"name": f"manifest-{i}", "value": f"{{{{tasks.{t.task}.outputs.parameters.manifest}}}}"}
                for i, t in enumerate(plan.tasks)
            ]
        },
    }
    dag_tasks.append(collect)
    templates = [{"name": ENTRYPOINT, "dag": {"tasks": dag_tasks}}]
    templates += [_stage_template(plan, t, image, secret, retries) for t in plan.tasks]
    templates.append(_collect_template(plan, image, secret, retries))
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{plan.name[:52].rstrip('-')}-",
            "labels": {"app.kubernetes.io/managed-by": "mlops"},
            "annotations": {"mlops.io/rev": plan.rev, "mlops.io/repo-url": plan.repo_url},
        },
        "spec": {"entrypoint": ENTRYPOINT, "templates": templates},
    }


def export_argo(
    repo: Repo,
    *,
    image: str,
    rev: str | None = None,
    repo_url: str | None = None,
    remote: str | None = None,
    secret: str | None = None,
    retries: int = 2,
) -> ArgoExport:
    """The pipeline at ``rev`` as an Argo Workflow (nothing is written: the CLI writes ``text``)."""
    image = check_image(image)
    check_task_options(secret=secret, retries=retries)
    plan = export_plan(repo, rev=rev, repo_url=repo_url, remote=remote, naming="dns1123")
    document = workflow_document(plan, image=image, secret=secret, retries=retries)
    header = (
        f"# Argo Workflow written by `mlops export argo` for commit {plan.rev}.\n"
        "# Each task runs `mlops stage exec`; data meets in the mlops remote, not in Argo.\n"
    )
    return ArgoExport(plan, document, header + _dump(document))


def _dump(document: dict[str, Any]) -> str:
    """YAML with each script as a literal block, so the file reads as the shell it runs."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(document, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
