"""`mlops run` records a run: its stages with dependency/output hashes, params, declared
metrics, and whatever the stages log through the Python API (joined by MLOPS_RUN_ID)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

STAGE = """
import json, sys
import mlops
with mlops.start_run():                       # joins the pipeline's run (MLOPS_RUN_ID)
    for step in range(3):
        mlops.log_metric("loss", 1.0 / (step + 1), step=step)
    mlops.log_params({"depth": 4})
json.dump({"accuracy": 0.875, "nested": {"f1": 0.5}}, open("metrics/train.json", "w"))
open("model.bin", "w").write("weights")
"""


def _pipeline(root: Path, *, fail: bool = False) -> None:
    (root / "train.py").write_text(STAGE + ("\nsys.exit(2)\n" if fail else ""))
    (root / "params.yaml").write_text("train:\n  lr: 0.1\n")
    (root / "metrics").mkdir(exist_ok=True)
    (root / "pipeline.yaml").write_text(
        f"stages:\n  train:\n    cmd: {sys.executable} train.py\n    deps: [train.py]\n"
        "    params: [train.lr]\n    outs: [model.bin]\n    metrics: [metrics/train.json]\n"
    )


def test_run_records_lineage_params_metrics_and_stage_logs(repo, mlops_bin) -> None:
    _pipeline(repo.root)
    run = json.loads(mlops_bin("run", "--json").stdout)
    shown = json.loads(mlops_bin("runs", "show", run["run_id"], "--json").stdout)
    text = json.dumps(shown)
    assert shown["status"] == "finished" and shown["source"] == "pipeline"
    assert "train" in shown["stages"]
    # lineage: the stage record carries dependency and output hashes
    lock = (repo.root / "pipeline.lock").read_text()
    for digest in [line.split()[-1] for line in lock.splitlines() if "hash:" in line]:
        assert digest in text
    # params from the stage declaration and from the API; metrics from the file and the API
    assert shown["params"]["train.lr"] == 0.1 and shown["params"]["depth"] == 4
    assert shown["metrics"]["accuracy"] == 0.875 and shown["metrics"]["nested.f1"] == 0.5
    assert shown["metrics"]["loss"] == 1.0 / 3
    listed = json.loads(mlops_bin("runs", "list", "--filter", "metrics.accuracy > 0.8", "--json").stdout)
    assert [r["id"] for r in listed["runs"]] == [run["run_id"]]


def test_failed_stage_marks_the_run_failed_and_keeps_logged_values(repo, mlops_bin) -> None:
    _pipeline(repo.root, fail=True)
    proc = mlops_bin("run", "--json", code=3)
    run_id = json.loads(proc.stdout)["run_id"]
    shown = json.loads(mlops_bin("runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "failed"
    assert shown["metrics"]["loss"] == 1.0 / 3  # what the stage logged before failing is kept
