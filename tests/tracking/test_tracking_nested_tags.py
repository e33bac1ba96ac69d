"""Nested runs, tags, and run deletion: MLflow's habits in the tracking API and `mlops runs`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import mlops
with mlops.start_run(name="sweep", tags={"kind": "grid"}) as parent:
    for lr in (0.01, 0.1):
        with mlops.start_run(name=f"lr={lr}", nested=True) as child:
            mlops.set_tags({"team": "growth"})
            mlops.set_tag("lr_text", lr)
            mlops.log_param("lr", lr)
            mlops.log_metric("acc", 1 - abs(lr - 0.1))
            assert mlops.active_run() is child and child.parent_id == parent.id
    assert mlops.active_run() is parent
    mlops.log_metric("best", 1.0)
    try:
        mlops.start_run(name="not nested")
    except mlops.errors.UsageError:
        print("refused")
print(parent.id)
"""


def runs(mlops_bin, *args: str) -> list[dict]:
    return json.loads(mlops_bin("runs", "list", "--json", *args).stdout)["runs"]


@pytest.mark.timeout(120)
def test_nested_runs_tags_and_deletion(repo, mlops_bin) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import mlops.errors\n" + SCRIPT], cwd=repo.root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    refused, parent_id = done.stdout.split()
    assert refused == "refused"
    listed = {r["name"]: r for r in runs(mlops_bin)}
    assert set(listed) == {"sweep", "lr=0.01", "lr=0.1"}
    assert listed["sweep"]["id"] == parent_id and listed["sweep"]["tags"] == {"kind": "grid"}
    assert listed["sweep"].get("parent_id") is None
    for name in ("lr=0.01", "lr=0.1"):
        assert listed[name]["parent_id"] == parent_id
        assert listed[name]["tags"]["team"] == "growth" and listed[name]["status"] == "finished"
    assert listed["lr=0.1"]["tags"]["lr_text"] == "0.1"
    # tags and the parent are filterable
    tagged = runs(mlops_bin, "--filter", "tags.team == 'growth' and metrics.acc > 0.95")
    assert [r["name"] for r in tagged] == ["lr=0.1"]
    children = runs(mlops_bin, "--filter", f"parent_id == '{parent_id}'")
    assert {r["name"] for r in children} == {"lr=0.01", "lr=0.1"}
    shown = json.loads(mlops_bin("runs", "show", parent_id, "--json").stdout)
    assert sorted(shown["children"]) == sorted(r["id"] for r in children)
    # delete hides a run, restore brings it back
    child = listed["lr=0.01"]["id"]
    mlops_bin("runs", "delete", child)
    assert {r["name"] for r in runs(mlops_bin)} == {"sweep", "lr=0.1"}
    assert [r["id"] for r in runs(mlops_bin, "--deleted")] == [child]
    mlops_bin("runs", "restore", child)
    assert {r["name"] for r in runs(mlops_bin)} == {"sweep", "lr=0.01", "lr=0.1"}


@pytest.mark.timeout(120)
def test_gc_frees_the_artifacts_of_deleted_runs(repo, mlops_bin) -> None:
    (repo.root / "model.bin").write_bytes(b"weights of a deleted run")
    code = "import mlops\nwith mlops.start_run(name='a'):\n    print(mlops.log_artifact('model.bin')['hash'])\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=repo.root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    digest = done.stdout.strip()
    from mlops.repo.repo import Repo

    store = Repo(repo.root).objects
    mlops_bin("gc", "--force")
    assert store.exists(digest)
    mlops_bin("runs", "delete", "a")
    mlops_bin("gc", "--force")
    assert not store.exists(digest)
