"""Keeping results: exp apply, exp branch, exp remove and gc."""

from __future__ import annotations

import json

import pytest
from expkit import counts, git, make_project

from mlops.repo.repo import Repo

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def project(repo, mlops_bin, tmp_path, monkeypatch):
    counter = tmp_path / "counter.txt"
    make_project(repo.root, mlops_bin, counter, monkeypatch)
    counter.write_text("")
    mlops_bin("exp", "run", "-S", "train.lr=0.1", "-S", "train.max_depth=6", "--name", "best")
    return repo.root, counter


def record(mlops_bin, name: str) -> dict:
    doc = json.loads(mlops_bin("exp", "show", "--json").stdout)
    return next(e for s in doc["sweeps"] for e in s["experiments"] if e["name"] == name)


def test_apply_brings_the_exact_params_and_outputs(project, mlops_bin) -> None:
    root, counter = project
    exp = record(mlops_bin, "best")
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "# mine\n")
    refused = mlops_bin("exp", "apply", "best", code=2)
    assert "uncommitted changes in params.yaml" in refused.stderr
    git(root, "checkout", "--", "params.yaml")
    mlops_bin("exp", "apply", "best")
    store = Repo(root).objects
    assert (root / "params.yaml").read_bytes() == store.read_bytes(exp["files"]["params.yaml"])
    assert "lr: 0.1" in (root / "params.yaml").read_text() and "max_depth: 6" in (root / "params.yaml").read_text()
    assert (root / "models/model.txt").read_text() == "lr=0.1 depth=6 rows=3\n"
    assert json.loads((root / "metrics.json").read_text()) == {"test_accuracy": 1.0}
    # the workspace is now exactly the experiment: nothing to run
    again = json.loads(mlops_bin("run", "--json").stdout)
    assert all(s["status"] == "skipped" for s in again["stages"]), again
    assert counts(counter) == {"train": 1, "evaluate": 1}  # only the experiment's own run


def test_branch_commits_the_experiment_without_touching_the_checkout(project, mlops_bin) -> None:
    root, _ = project
    head, status = git(root, "rev-parse", "HEAD"), git(root, "status", "--porcelain")
    params_before = (root / "params.yaml").read_bytes()
    mlops_bin("exp", "branch", "best", "try-lr")
    assert git(root, "rev-parse", "HEAD") == head and git(root, "status", "--porcelain") == status
    assert (root / "params.yaml").read_bytes() == params_before
    assert git(root, "rev-parse", "try-lr^") == head
    shown = git(root, "show", "try-lr:params.yaml")
    assert "lr: 0.1" in shown and "max_depth: 6" in shown
    assert json.loads(git(root, "show", "try-lr:metrics.json")) == {"test_accuracy": 1.0}
    assert "best" in git(root, "log", "-1", "--format=%s", "try-lr")
    mlops_bin("exp", "branch", "best", "try-lr", code=2)  # exists already


def test_gc_keeps_what_experiments_name_until_they_are_removed(project, mlops_bin) -> None:
    root, _ = project
    params_object = record(mlops_bin, "best")["files"]["params.yaml"]
    store = Repo(root).objects
    mlops_bin("gc", "--force")
    assert store.exists(params_object)
    mlops_bin("exp", "remove", "best")
    mlops_bin("exp", "apply", "best", code=2)
    removed = json.loads(mlops_bin("exp", "gc", "--json").stdout)
    assert removed == {"removed": [], "workspaces": 0}
    mlops_bin("gc", "--force")
    assert not store.exists(params_object)
