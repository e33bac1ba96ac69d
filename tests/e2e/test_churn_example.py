"""The examples/churn pipeline end to end, as `make demo` runs it, through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "churn"


@pytest.mark.slow
def test_churn_pipeline_runs_caches_and_restores(tmp_path: Path, mlops_bin) -> None:
    project = tmp_path / "project"
    subprocess.run(["git", "init", "-q", "-b", "main", str(project)], check=True)
    for name in ("src", "params.yaml", "pipeline.yaml"):
        source = EXAMPLE / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_data.py"), "data"], cwd=project, check=True, capture_output=True
    )
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # stages call `python`
    run = lambda *args, code=0: mlops_bin(*args, cwd=project, env=env, code=code)  # noqa: E731

    run("init")
    run("add", "data/customers.csv")
    first = json.loads(run("run", "--json").stdout)
    assert [s["status"] for s in first["stages"]] == ["ran"] * 6  # prepare, featurize, train, evaluate x3
    assert (project / "models" / "model.pkl").is_file()
    metrics = json.loads((project / "metrics" / "train.json").read_text())
    assert 0.5 < metrics["train_accuracy"] <= 1.0
    assert "/model.pkl" in (project / "models" / ".gitignore").read_text()
    assert not (project / "metrics" / ".gitignore").exists(), "metrics stay in git"

    # the run is tracked: stage metrics files and what train.py logged through the API
    shown = json.loads(run("runs", "show", first["run_id"], "--json").stdout)
    assert shown["status"] == "finished"
    assert shown["metrics"]["train_accuracy"] == pytest.approx(metrics["train_accuracy"], abs=1e-4)
    assert 0.0 <= shown["metrics"]["eval_basic.test_accuracy"] <= 1.0
    assert shown["params"]["max_depth"] == 6 and shown["params"]["train.max_depth"] == 6

    again = json.loads(run("run", "--json").stdout)
    assert {s["status"] for s in again["stages"]} == {"skipped"}

    params = project / "params.yaml"
    params.write_text(params.read_text().replace("max_depth: 6", "max_depth: 4"))
    plan = json.loads(run("run", "--dry-run", "--json").stdout)
    reasons = {s["name"]: s["reasons"] for s in plan["stages"]}
    assert [s["status"] for s in plan["stages"][:2]] == ["skipped", "skipped"]  # prepare, featurize
    assert "param train.max_depth 6 -> 4" in reasons["train"]
    changed = json.loads(run("run", "--json").stdout)
    assert [s["status"] for s in changed["stages"]] == ["skipped", "skipped", "ran", "ran", "ran", "ran"]
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "depth 4"], cwd=project, check=True)

    params.write_text(params.read_text().replace("max_depth: 4", "max_depth: 6"))
    restored = json.loads(run("run", "--json").stdout)
    assert [s["status"] for s in restored["stages"]] == [
        "skipped",
        "skipped",
        "restored",
        "restored",
        "restored",
        "restored",
    ]
    assert json.loads((project / "metrics" / "train.json").read_text()) == metrics
    diff = json.loads(run("params", "diff", "--json").stdout)  # HEAD (depth 4) vs workspace (depth 6)
    assert "train.max_depth" in json.dumps(diff)
    run("status", "--check")
    run("verify")
