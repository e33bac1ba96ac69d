"""A version takes metrics, params and lineage from the run that made its artifact: not from a
later run that restored the stage from the run cache or skipped it as up to date (issue 13)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from regkit import js

from mlops.tracking.store import load_run

# the stage logs through the Python API (it joins the pipeline's run): only a run whose command
# really ran has these values, which is what tells the producing run from one that restored it
TRAIN = """
import json, mlops, yaml
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
with mlops.start_run():
    mlops.log_metric("loss", lr * 10)
    mlops.log_params({"seen_lr": lr})
open("model.pkl", "w").write(f"model trained with lr={lr}\\n")
"""


def _project(root: Path, cli) -> None:
    (root / "train.py").write_text(TRAIN)
    (root / "eval.txt").write_text("v1\n")
    (root / "params.yaml").write_text("train:\n  lr: 0.1\n")
    (root / "pipeline.yaml").write_text(
        f"stages:\n  train:\n    cmd: {sys.executable} train.py\n    deps: [train.py]\n"
        "    params: [train.lr]\n    outs: [model.pkl]\n"
        "  evaluate:\n    cmd: cp eval.txt report.txt\n    deps: [eval.txt]\n    outs: [report.txt]\n"
    )


def _run(cli) -> dict:
    return json.loads(cli("run", "--json").stdout)


def _lr(root: Path, lr: float) -> None:
    (root / "params.yaml").write_text(f"train:\n  lr: {lr}\n")


def test_register_run_that_restored_the_stage_takes_the_producing_runs_record(repo, cli) -> None:
    _project(repo.root, cli)
    made = _run(cli)["run_id"]
    _lr(repo.root, 0.2)
    _run(cli)
    _lr(repo.root, 0.1)
    restored = _run(cli)
    assert {s["name"]: s["status"] for s in restored["stages"]}["train"] == "restored"

    result = cli("register", "churn", "model.pkl", "--run", restored["run_id"], "--json")
    doc = js(result)
    assert doc["run_id"] == made
    assert doc["metrics"]["loss"] == 1.0 and doc["params"]["seen_lr"] == 0.1  # logged by the command of `made`
    assert doc["lineage"]["registered_from_run"] == restored["run_id"]
    assert doc["lineage"]["run"]["id"] == made
    assert any(made in w and restored["run_id"] in w for w in doc["warnings"])
    shown = js(cli("lineage", "churn:1", "--json"))
    assert shown["run"]["id"] == made and shown["run"]["registered_from"] == restored["run_id"]


def test_register_run_that_skipped_the_stage_takes_the_producing_runs_record(repo, cli) -> None:
    _project(repo.root, cli)
    made = _run(cli)["run_id"]
    (repo.root / "eval.txt").write_text("v2\n")
    later = _run(cli)
    assert {s["name"]: s["status"] for s in later["stages"]} == {"train": "skipped", "evaluate": "ran"}

    plain = cli("register", "churn", "model.pkl", "--run", later["run_id"])
    assert f"from run {made}" in plain.stderr.replace("\n", " ")
    doc = js(cli("models", "show", "churn:1", "--json"))
    assert doc["run_id"] == made and doc["metrics"]["loss"] == 1.0


def test_a_run_recorded_without_produced_by_is_found_by_the_outputs_hash(repo, cli) -> None:
    _project(repo.root, cli)
    made = _run(cli)["run_id"]
    _lr(repo.root, 0.2)
    _run(cli)
    _lr(repo.root, 0.1)
    restored = _run(cli)["run_id"]
    # as an older mlops wrote it: stage records without produced_by, run cache entries without run ids
    records = repo.dot / "runs" / restored / "stages.jsonl"
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    records.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "produced_by"}) + "\n" for r in lines))
    assert all("produced_by" not in r for r in load_run(repo, restored).stages)

    doc = js(cli("register", "churn", "model.pkl", "--run", restored, "--json"))
    assert doc["run_id"] == made and doc["metrics"]["loss"] == 1.0


def test_register_without_run_links_the_run_that_made_a_pipeline_output(repo, cli) -> None:
    _project(repo.root, cli)
    made = _run(cli)["run_id"]
    _lr(repo.root, 0.2)
    _run(cli)
    _lr(repo.root, 0.1)
    _run(cli)  # restores model.pkl: the newest run, but not the one that made it

    result = cli("register", "churn", "model.pkl", "--json")
    doc = js(result)
    assert doc["run_id"] == made and doc["metrics"]["loss"] == 1.0
    assert doc["lineage"]["stage"] == "train"
    assert any(f"linked run {made}" in w for w in doc["warnings"])


def test_register_without_run_of_a_file_no_stage_made_links_nothing(repo, cli) -> None:
    _project(repo.root, cli)
    _run(cli)
    (repo.root / "other.pkl").write_text("by hand\n")
    doc = js(cli("register", "churn", "other.pkl", "--json"))
    assert doc["run_id"] is None and doc["metrics"] == {} and doc["warnings"] == []
