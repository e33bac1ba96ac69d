"""Experiments shared and filtered: `mlops push --runs` / `pull --runs` carry the experiment records
(a teammate's clone shows and applies them), `exp show --filter` in the query language of `runs list`.

Two real git clones, a local-folder remote or a bucket on moto's S3 server, the real `mlops` console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from expkit import git, make_project

from mlops.experiments.share import REF_PREFIX
from mlops.remotes.local import LocalRemote
from mlops.repo.repo import Repo
from mlops.tracking.store import set_tags

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def project(repo, mlops_bin, tmp_path, monkeypatch):
    counter = tmp_path / "counter.txt"
    make_project(repo.root, mlops_bin, counter, monkeypatch)
    mlops_bin("exp", "run", "-S", "train.lr=0.1,0.3", "-S", "train.max_depth=6", "--name", "g")
    return repo.root


def names(mlops_bin, *args: str, cwd: Path | None = None) -> list[str]:
    doc = json.loads(mlops_bin("exp", "show", "--json", *args, cwd=cwd).stdout)
    return sorted(e["name"] for s in doc["sweeps"] for e in s["experiments"])


def test_show_filters_by_tags_params_and_metrics(project, mlops_bin) -> None:
    doc = json.loads(mlops_bin("exp", "show", "--json").stdout)
    runs = {e["name"]: e["run_id"] for s in doc["sweeps"] for e in s["experiments"]}
    assert sorted(runs) == ["g-1", "g-2"] and all(runs.values())
    set_tags(Repo(project), runs["g-2"], {"team": "growth"})  # as mlops.set_tag in the run does

    assert names(mlops_bin, "--filter", "tags.team = 'growth'") == ["g-2"]
    assert names(mlops_bin, "--filter", 'tags.team == "growth"') == ["g-2"]
    assert names(mlops_bin, "--filter", "tags.team != 'growth'") == []  # a missing tag never matches
    assert names(mlops_bin, "--filter", "tags.sweep = 'g' and params.train.lr < 0.2") == ["g-1"]
    assert names(mlops_bin, "--filter", "metrics.test_accuracy > 0.9") == ["g-1"]
    assert names(mlops_bin, "--filter", "name = 'g-2' or status = 'failed'") == ["g-2"]
    plain = mlops_bin("exp", "show", "--filter", "tags.team = 'growth'").stdout
    assert "g-2" in plain and "g-1" not in plain
    bad = mlops_bin("exp", "show", "--filter", "tags.team = = x", code=2)
    assert "--filter" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_push_and_pull_runs_carry_experiments_to_a_clone(project, mlops_bin, tmp_path, kind, request) -> None:
    if kind == "local":
        mlops_bin("remote", "add", "origin", str(tmp_path / "remote"), "--default")
    else:  # a real S3 API: moto's server on 127.0.0.1 (tests/conftest.py)
        bucket = request.getfixturevalue("s3_bucket")
        mlops_bin("remote", "add", "origin", f"s3://{bucket.name}/store", "--default")
        mlops_bin("remote", "modify", "origin", "endpoint_url", bucket.endpoint_url)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "project")
    pushed = json.loads(mlops_bin("push", "--runs", "--json").stdout)
    assert sorted(pushed["experiments"]["names"]) == ["g-1", "g-2"]
    assert json.loads(mlops_bin("push", "--runs", "--json").stdout)["experiments"]["names"] == []  # nothing new

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    assert names(mlops_bin, cwd=clone) == []
    pulled = json.loads(mlops_bin("pull", "--runs", "--json", cwd=clone).stdout)
    assert sorted(pulled["experiments"]["names"]) == ["g-1", "g-2"] and not pulled["experiments"]["warnings"]
    assert names(mlops_bin, cwd=clone) == ["g-1", "g-2"]
    # the records match the originals, and their runs came along (tags filter in the clone too)
    assert json.loads((clone / ".mlops/experiments/g-1.json").read_text()) == json.loads(
        (project / ".mlops/experiments/g-1.json").read_text()
    )
    assert names(mlops_bin, "--filter", "tags.experiment = 'g-2'", cwd=clone) == ["g-2"]

    mlops_bin("exp", "apply", "g-2", cwd=clone)  # its objects were fetched with the records
    assert "lr: 0.3" in (clone / "params.yaml").read_text()
    assert (clone / "models/model.txt").read_text() == "lr=0.3 depth=6 rows=3\n"
    again = json.loads(mlops_bin("pull", "--runs", "--json", cwd=clone).stdout)
    assert again["experiments"]["names"] == [] and again["experiments"]["present"] == 2


def test_pulled_records_are_received_content(project, mlops_bin, tmp_path) -> None:
    """A record on the remote that lies (unsafe paths, a name not its own, a bad ref name, too big)
    is skipped with a warning; a local record of the same name is never overwritten."""
    remote_path = tmp_path / "remote"
    mlops_bin("remote", "add", "origin", str(remote_path), "--default")
    mlops_bin("push", "--runs")
    remote = LocalRemote("origin", str(remote_path), remote_path)
    good = json.loads(remote.get_ref(f"{REF_PREFIX}g-1.json"))
    evil = dict(good, name="evil", files={"../../etc/passwd": next(iter(good["files"].values()))})
    remote.put_ref(f"{REF_PREFIX}evil.json", json.dumps(evil).encode())
    remote.put_ref(f"{REF_PREFIX}other.json", json.dumps(dict(good)).encode())  # says it is g-1
    remote.put_ref(f"{REF_PREFIX}big.json", b"{" + b" " * (17 << 20) + b"}")
    remote.put_ref(f"{REF_PREFIX}deep.json", b"[" * 100_000)
    local = project / ".mlops/experiments/g-2.json"
    mine = local.read_bytes()
    remote.put_ref(f"{REF_PREFIX}g-2.json", json.dumps(dict(good, name="g-2", error="theirs")).encode())

    pulled = mlops_bin("pull", "--runs", "--json")
    report = json.loads(pulled.stdout)["experiments"]
    assert report["names"] == []
    assert len(report["warnings"]) == 4, report["warnings"]
    assert local.read_bytes() == mine
    assert sorted(p.name for p in (project / ".mlops/experiments").glob("*.json")) == ["g-1.json", "g-2.json"]
