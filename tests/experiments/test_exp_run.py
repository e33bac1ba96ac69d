"""`mlops exp run`: experiments in workspaces of their own, the user's workspace byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from expkit import counts, git, make_project, workspace_digest

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def project(repo, mlops_bin, tmp_path, monkeypatch):
    counter = tmp_path / "counter.txt"
    make_project(repo.root, mlops_bin, counter, monkeypatch)
    counter.write_text("")
    return repo.root, counter


def show(mlops_bin, root: Path, *args: str) -> dict:
    return json.loads(mlops_bin("exp", "show", "--json", *args, cwd=root).stdout)


def test_one_experiment_leaves_the_workspace_untouched_and_restores_shared_stages(project, mlops_bin) -> None:
    root, counter = project
    (root / "notes.txt").write_text("uncommitted, untracked\n")
    (root / "src/evaluate.py").write_text((root / "src/evaluate.py").read_text() + "# an uncommitted edit\n")
    before = workspace_digest(root)
    done = mlops_bin("exp", "run", "-S", "train.lr=0.2", "-S", "train.max_depth=6", "--name", "lr-0.2", "--json")
    report = json.loads(done.stdout)
    [exp] = report["experiments"]
    assert exp["status"] == "succeeded"
    assert exp["restored"] == ["prepare"]  # no param of prepare changed: from the run cache
    assert sorted(exp["ran"]) == ["evaluate", "train"]
    assert counts(counter) == {"train": 1, "evaluate": 1}
    assert workspace_digest(root) == before  # params, outputs, the uncommitted edit: byte for byte
    assert exp["metrics"] == {"test_accuracy": 0.9}

    shown = show(mlops_bin, root)
    [record] = shown["sweeps"][0]["experiments"]
    assert record["name"] == "lr-0.2" and record["changes"] == {"train.lr": 0.2, "train.max_depth": 6}
    assert record["params"]["train.lr"] == 0.2 and record["params"]["train.max_depth"] == 6
    assert record["base"] == git(root, "rev-parse", "HEAD").strip()
    assert record["commit"] != record["base"]  # the uncommitted edit ran, as a snapshot commit over HEAD
    assert {o["path"] for o in record["outs"]} == {"data/prepared", "models/model.txt", "metrics.json"}
    assert set(record["files"]) == {"params.yaml", "pipeline.lock", "metrics.json"}
    # its run is in the workspace's runs, with the metrics
    runs = json.loads(mlops_bin("runs", "show", record["run_id"], "--json", cwd=root).stdout)
    assert runs["metrics"]["test_accuracy"] == 0.9
    assert runs["tags"] == {"experiment": "lr-0.2", "sweep": "lr-0.2"}
    # no worktree is left behind
    assert not list((root / ".mlops/tmp/exec").glob("wt-*"))

    # the same experiment again restores every stage
    mlops_bin("exp", "run", "-S", "train.lr=0.2", "-S", "train.max_depth=6", "--json")
    assert counts(counter) == {"train": 1, "evaluate": 1}
    assert workspace_digest(root) == before


def test_unknown_key_is_refused_before_anything_runs(project, mlops_bin) -> None:
    root, counter = project
    done = mlops_bin("exp", "run", "-S", "train.learning_rate=0.2", code=2)
    assert "params.yaml has no key train.learning_rate" in done.stderr
    assert counts(counter) == {}
    assert show(mlops_bin, root)["sweeps"] == []


def test_an_experiment_that_fails_before_any_stage_records_why(project, mlops_bin) -> None:
    """`mlops run` stopped by a pipeline.yaml error (uncommitted, so the experiment's worktree has
    it): the experiment records run's one-line error, and `exp show` shows it."""
    root, counter = project
    pipeline = (root / "pipeline.yaml").read_text()
    (root / "pipeline.yaml").write_text(pipeline.replace("    metrics: [metrics.json]", "    metricz: [metrics.json]"))
    done = mlops_bin("exp", "run", "-S", "train.lr=0.2", "--name", "early", "--json", code=3)
    [failed] = json.loads(done.stdout)["experiments"]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("mlops run exited with code 2: pipeline.yaml:")
    assert "unknown key 'metricz'" in failed["error"], failed["error"]
    assert counts(counter) == {}  # no stage ran
    [recorded] = show(mlops_bin, root)["sweeps"][0]["experiments"]
    assert recorded["error"] == failed["error"]
    plain = mlops_bin("exp", "show", cwd=root).stdout
    assert f"early failed: {failed['error']}" in plain


def test_the_run_error_kept_is_the_last_error_line_bounded() -> None:
    from mlops.experiments.run import ERROR_LINE_CHARS, _run_error

    tail = ["warning: something", "error: first", "hint: do this", "error: " + "x" * 2000, "hint: then that"]
    why = _run_error(2, tail)
    assert why.startswith("mlops run exited with code 2: xxx") and why.endswith("...")
    assert len(why) == len("mlops run exited with code 2: ") + ERROR_LINE_CHARS
    assert _run_error(3, ["a stage's own output"]) == "mlops run exited with code 3"
