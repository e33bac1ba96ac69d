"""`mlops export argo`: a Workflow that Argo's published JSON schema accepts, one task per stage."""

from __future__ import annotations

import copy
import json
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mlops.exporters.argo import STAGE_ANNOTATION, workflow_document
from mlops.exporters.stage_tasks import (
    DNS1123_LABEL,
    ExportPlan,
    ResourceRequest,
    StageTask,
    check_repo_url,
    dns1123_names,
)
from tests.conftest import git
from tests.exporters.conftest import MEMBERS

SCHEMA = Path(__file__).parent / "data" / "argo-workflows-schema.json"
WORKFLOW = "io.argoproj.workflow.v1alpha1.Workflow"


@cache
def _strict_schema() -> dict[str, Any]:
    """Argo's schema, with every object definition closed (additionalProperties: false): the
    published one leaves them open, so a misspelt key (retrystrategy) would pass unnoticed."""
    schema = json.loads(SCHEMA.read_text())
    strict = copy.deepcopy(schema)
    for definition in strict["definitions"].values():
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    return strict


def validate(document: dict[str, Any]) -> None:
    """Against the published schema as it is (its oneOf of every kind), and closed."""
    published = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator(published).validate(document)
    strict = {**_strict_schema(), "oneOf": None}
    strict.pop("oneOf")
    strict["$ref"] = f"#/definitions/{WORKFLOW}"
    jsonschema.Draft202012Validator(strict).validate(document)


def test_argo_workflow_validates_and_follows_the_pipeline(project: Path, cli) -> None:
    out = project / "deploy" / "churn-workflow.yaml"
    result = cli("export", "argo", "-o", str(out), "--image", "ghcr.io/team/mlops:1.0", "--secret", "mlops-remote")
    assert "wrote" in result.stdout
    assert "push it before the workflow runs" in result.stderr  # origin was never pushed to
    document = yaml.safe_load(out.read_text())
    validate(document)
    head = git(project, "rev-parse", "HEAD").strip()
    spec = document["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    dag = {t["name"]: t for t in templates[spec["entrypoint"]]["dag"]["tasks"]}
    # every task and template name is one Kubernetes accepts, and none is shared
    for name in [*dag, *templates]:
        assert DNS1123_LABEL.match(name) and len(name) <= 63, name
    assert len(templates) == len(spec["templates"])
    # each stage task names its stage back (annotation and command): the mapping reverses
    stage_of = {n: t["metadata"]["annotations"][STAGE_ANNOTATION] for n, t in templates.items() if "metadata" in t}
    members = MEMBERS
    assert sorted(stage_of.values()) == sorted(members)
    task_of = {stage: name for name, stage in stage_of.items()}
    for name, stage in stage_of.items():
        container = templates[name]["container"]
        script = container["args"][0]
        assert f"mlops stage exec {shlex.quote(stage)} --rev {head} --json" in script
        assert container["image"] == "ghcr.io/team/mlops:1.0"
        assert container["envFrom"] == [{"secretRef": {"name": "mlops-remote"}}]
        assert {"name": "MLOPS_REV", "value": head} in container["env"]
        assert templates[name]["retryStrategy"]["limit"] == "2"
        assert templates[name]["outputs"]["parameters"][0]["valueFrom"]["path"]
    # pipeline.yaml's resources: Kubernetes requests and limits
    assert templates[task_of["prepare_Data"]]["container"]["resources"] == {
        "requests": {"cpu": "500m", "memory": str(512 << 20)},
        "limits": {"memory": str(512 << 20)},
    }
    assert templates[task_of["train@small"]]["container"]["resources"] == {
        "requests": {"cpu": "2", "memory": "4000000000", "nvidia.com/gpu": "1"},
        "limits": {"memory": "4000000000", "nvidia.com/gpu": "1"},
    }
    assert "resources" not in templates[task_of["evaluate@small-a"]]["container"]
    # the graph: train members need prepare, each evaluate member its model's train member
    prepare = task_of["prepare_Data"]
    assert "dependencies" not in dag[prepare]
    for model in ("small", "Large_v2"):
        assert dag[task_of[f"train@{model}"]]["dependencies"] == [prepare]
        for split in ("a", "b"):
            task = dag[task_of[f"evaluate@{model}-{split}"]]
            assert task["dependencies"] == [task_of[f"train@{model}"]]
            (parameter,) = task["arguments"]["parameters"]
            assert parameter["value"] == f"{{{{tasks.{task_of[f'train@{model}']}.outputs.parameters.manifest}}}}"
            # the manifest reaches the shell through the environment, not spliced into the script
            env = templates[task["template"]]["container"]["env"]
            assert {"name": "MLOPS_UPSTREAM_0", "value": "{{inputs.parameters.upstream-0}}"} in env
            assert '--upstream "$MLOPS_UPSTREAM_0"' in templates[task["template"]]["container"]["args"][0]
    # the foreach members do not wait for each other: parallel tasks
    assert task_of["train@Large_v2"] not in dag[task_of["train@small"]]["dependencies"]
    collect = dag["collect"]
    assert sorted(collect["dependencies"]) == sorted(task_of.values())
    assert len(collect["arguments"]["parameters"]) == len(members)
    collect_script = templates["collect"]["container"]["args"][0]
    assert f"mlops stage collect --rev {head}" in collect_script
    assert collect_script.count("--manifest") == len(members)
    # no credentials in the file, the clone URL is origin's
    assert "https://git.example.com/team/churn.git" in out.read_text()


def test_argo_resources_become_kubernetes_requests_and_limits() -> None:
    tasks = (
        StageTask("prep", "prep", (), ResourceRequest()),
        StageTask(
            "train@gpu_1",
            "train-gpu-1-abcdef",
            ("prep",),
            ResourceRequest(cpus=2.5, gpus=1, memory=4 << 30),
            image="ghcr.io/team/train@sha256:" + "0" * 64,
        ),
    )
    plan = ExportPlan("churn", "a" * 40, "https://git.example.com/churn.git", "storage", tasks, "collect")
    document = workflow_document(plan, image="img:1", retries=0)
    validate(document)
    templates = {t["name"]: t for t in document["spec"]["templates"]}
    assert templates["train-gpu-1-abcdef"]["container"]["resources"] == {
        "requests": {"cpu": "2500m", "memory": str(4 << 30), "nvidia.com/gpu": "1"},
        "limits": {"memory": str(4 << 30), "nvidia.com/gpu": "1"},
    }
    assert "resources" not in templates["prep"]["container"]
    # a stage's own image wins over --image
    assert templates["train-gpu-1-abcdef"]["container"]["image"] == "ghcr.io/team/train@sha256:" + "0" * 64
    assert templates["prep"]["container"]["image"] == "img:1"
    assert "--remote storage" in templates["prep"]["container"]["args"][0]
    # the validator can fail: a misspelt key or a wrong type is refused
    broken = copy.deepcopy(document)
    broken["spec"]["templates"][1]["retrystrategy"] = {"limit": "1"}
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = copy.deepcopy(document)
    broken["spec"]["templates"][1]["retryStrategy"]["limit"] = ["1"]
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_dns1123_names_are_legal_and_unique() -> None:
    names = ["train@a_b", "train@a-b", "Train@A-B", "x" * 80, "ok-name", "collect", "pipeline", "a" * 63]
    mapped = dns1123_names(names, reserved=("collect", "pipeline"))
    assert len(set(mapped.values())) == len(names)
    for safe in mapped.values():
        assert DNS1123_LABEL.match(safe) and len(safe) <= 63, safe
    assert mapped["ok-name"] == "ok-name" and mapped["a" * 63] == "a" * 63
    assert mapped["collect"] != "collect" and mapped["pipeline"] != "pipeline"
    # the same names map the same way on every export (stable across runs)
    assert dns1123_names(names, reserved=("collect", "pipeline")) == mapped


@pytest.mark.parametrize(
    "url",
    ["https://user:token@git.example.com/churn.git", "https://token@github.com/x/y.git", "http://u:p@h/r"],
)
def test_repo_url_with_credentials_is_refused(url: str, project: Path, cli) -> None:
    result = cli("export", "argo", "-o", "wf.yaml", "--image", "img:1", "--repo-url", url, code=2)
    assert "credentials" in result.stderr
    assert "token" not in result.stderr
    assert not (project / "wf.yaml").exists()


def test_repo_urls_without_credentials_pass() -> None:
    for url in ("https://github.com/team/churn.git", "git@github.com:team/churn.git", "ssh://git@host/churn.git"):
        assert check_repo_url(url) == url


def test_argo_export_refuses_what_workers_could_not_run(project: Path, cli) -> None:
    (project / "params.yaml").write_text("train:\n  lr: 0.2\n")
    result = cli("export", "argo", "-o", "wf.yaml", "--image", "img:1", code=2)
    assert "params.yaml" in result.stderr and "commit" in result.stderr
    # an explicit commit is fine even with a dirty tree
    cli("export", "argo", "-o", "wf.yaml", "--image", "img:1", "--rev", "HEAD", "--json")
    git(project, "remote", "remove", "origin")
    result = cli("export", "argo", "-o", "wf2.yaml", "--image", "img:1", "--rev", "HEAD", code=2)
    assert "--repo-url" in result.stderr
    result = cli("export", "argo", "-o", "wf2.yaml", "--image", "img:1", "--rev", "nope", code=2)
    assert "nope" in result.stderr


def test_argo_export_json_summary(project: Path, cli) -> None:
    result = cli("export", "argo", "-o", "wf.yaml", "--image", "img:1", "--json")
    summary = json.loads(result.stdout)
    assert summary["engine"] == "argo" and summary["collect"] == "collect"
    stages = {t["stage"]: t for t in summary["tasks"]}
    assert stages["train@small"]["upstream"] == [stages["prepare_Data"]["task"]]


def test_fractional_gpus_are_refused_for_kubernetes(repo, tree, cli) -> None:
    tree({"pipeline.yaml": "stages:\n  train:\n    cmd: echo hi\n    resources: {gpus: 0.5}\n"})
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "half a gpu")
    result = cli("export", "argo", "-o", "wf.yaml", "--image", "img:1", "--repo-url", "https://h/r.git", code=2)
    assert "0.5 GPUs" in result.stderr and "pipeline.yaml" in result.stderr


def test_frozen_stages_are_not_tasks(repo, tree, cli) -> None:
    tree(
        {
            "pipeline.yaml": "stages:\n  a:\n    cmd: echo a > a.txt\n    outs: [a.txt]\n    frozen: true\n"
            "  b:\n    cmd: cat a.txt > b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n"
        }
    )
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "a frozen stage")
    result = cli("export", "argo", "-o", "wf.yaml", "--image", "img:1", "--repo-url", "https://h/r.git", "--json")
    assert [(t["stage"], t["upstream"]) for t in json.loads(result.stdout)["tasks"]] == [("b", [])]
    validate(yaml.safe_load((repo.root / "wf.yaml").read_text()))


def test_template_marks_in_spliced_values_are_refused(project: Path, cli) -> None:
    """A remote name (or image, or URL) holding '{{' went into the task's script as it was: Argo
    substitutes it, Airflow's Jinja runs it. Refused (exit 2), nothing written."""
    cli("remote", "add", "{{ var.value.secret }}", str(project.parent / "store"), "--local")
    for engine, extra in (("argo", ["--image", "img:1"]), ("airflow", [])):
        result = cli("export", engine, "-o", "out.txt", *extra, "--remote", "{{ var.value.secret }}", code=2)
        assert "template" in result.stderr and "Traceback" not in result.stderr
    result = cli("export", "argo", "-o", "out.txt", "--image", "img:1", "--repo-url", "https://h/{{x}}.git", code=2)
    assert "template" in result.stderr
    assert not (project / "out.txt").exists()


def test_outputs_follow_the_rules_for_a_file_the_user_named(project: Path, cli, tmp_path: Path) -> None:
    """-o replaced whatever was there with atomic_write: a symlink became a file, /dev/stdout an
    error, a folder an exit 3. Now as every -o: a link is followed, a folder is exit 2."""
    target = tmp_path / "shared" / "wf.yaml"
    target.parent.mkdir()
    target.write_text("old\n")
    link = project / "wf.yaml"
    link.symlink_to(target)
    cli("export", "argo", "-o", str(link), "--image", "img:1")
    assert link.is_symlink() and target.read_text().startswith("# Argo Workflow")
    done = cli("export", "argo", "-o", str(tmp_path), "--image", "img:1", code=2)
    assert "folder" in done.stderr
    cli("export", "airflow", "-o", str(tmp_path / "new" / "dags" / "dag.py"))  # a new folder is made
    assert (tmp_path / "new" / "dags" / "dag.py").is_file()
