"""Sweeps: grids, random samples, -j, failures, Ctrl-C, and the queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from expkit import MLOPS_BIN, counts, make_project, workspace_digest

from mlops.repo.repo import Repo

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def project(repo, mlops_bin, tmp_path, monkeypatch):
    counter = tmp_path / "counter.txt"
    make_project(repo.root, mlops_bin, counter, monkeypatch)
    counter.write_text("")
    return repo.root, counter


def experiments(mlops_bin, root: Path) -> list[dict]:
    doc = json.loads(mlops_bin("exp", "show", "--json", cwd=root).stdout)
    return [e for sweep in doc["sweeps"] for e in sweep["experiments"]]


def model_text(root: Path, record: dict) -> str:
    [out] = [o for o in record["outs"] if o["path"] == "models/model.txt"]
    return Repo(root).objects.read_bytes(out["hash"]).decode()


def test_grid_in_parallel_each_experiment_its_own_outputs(project, mlops_bin) -> None:
    root, counter = project
    before = workspace_digest(root)
    done = mlops_bin(
        "exp",
        "run",
        "-S",
        "train.lr=0.01,0.1",
        "-S",
        "train.max_depth=range(4,9,2)",
        "-j",
        "2",
        "--name",
        "g",
        "--json",
    )
    report = json.loads(done.stdout)
    assert [e["status"] for e in report["experiments"]] == ["succeeded"] * 6
    assert [e["name"] for e in report["experiments"]] == [f"g-{i}" for i in range(1, 7)]
    assert counts(counter) == {"train": 6, "evaluate": 6}  # prepare: from the run cache, every time
    assert all(e["restored"] == ["prepare"] for e in report["experiments"])
    assert workspace_digest(root) == before
    records = experiments(mlops_bin, root)
    assert {(r["changes"]["train.lr"], r["changes"]["train.max_depth"]) for r in records} == {
        (lr, d) for lr in (0.01, 0.1) for d in (4, 6, 8)
    }
    for record in records:  # each saw its own params only, never another's outputs
        lr, depth = record["changes"]["train.lr"], record["changes"]["train.max_depth"]
        assert model_text(root, record) == f"lr={lr} depth={depth} rows=3\n"
        assert record["sweep"] == "g"
    best = json.loads(mlops_bin("exp", "show", "--json", "--sort", "-metrics.test_accuracy").stdout)
    first = best["sweeps"][0]["experiments"][0]
    assert first["changes"] == {"train.lr": 0.1, "train.max_depth": 6}
    changed = json.loads(mlops_bin("exp", "show", "--json", "--only-changed").stdout)
    assert changed["param_keys"] == ["train.lr", "train.max_depth"]


def test_random_sample_is_seeded(project, mlops_bin) -> None:
    root, _ = project
    args = ("exp", "queue", "-S", "train.lr=0.01,0.1,1", "-S", "train.max_depth=range(4,11,2)", "--random", "3")
    first = json.loads(mlops_bin(*args, "--seed", "7", "--name", "a", "--json").stdout)["queued"]
    second = json.loads(mlops_bin(*args, "--seed", "7", "--name", "b", "--json").stdout)["queued"]
    assert len(first) == 3 and [q["changes"] for q in first] == [q["changes"] for q in second]
    assert len({json.dumps(q["changes"], sort_keys=True) for q in first}) == 3


def test_a_failing_experiment_is_reported_and_the_others_finish(project, mlops_bin) -> None:
    root, counter = project
    done = mlops_bin("exp", "run", "-S", "train.lr=-1,0.1,0.2", "--name", "f", "--json", code=3)
    report = json.loads(done.stdout)
    assert [e["status"] for e in report["experiments"]] == ["failed", "succeeded", "succeeded"]
    assert "lr must not be negative" in report["experiments"][0]["error"]
    assert "1 of 3 experiments failed: f-1" in done.stderr
    assert counts(counter)["evaluate"] == 2
    statuses = {e["name"]: e["status"] for e in experiments(mlops_bin, root)}
    assert statuses == {"f-1": "failed", "f-2": "succeeded", "f-3": "succeeded"}
    mlops_bin("exp", "remove", "--failed")
    assert {e["name"] for e in experiments(mlops_bin, root)} == {"f-2", "f-3"}
    # --fail-fast: after the failure no other starts (one at a time)
    done = mlops_bin("exp", "run", "-S", "train.lr=-1,0.3", "--name", "ff", "--fail-fast", "--json", code=3)
    assert [e["status"] for e in json.loads(done.stdout)["experiments"]] == ["failed", "not run"]


@pytest.mark.timeout(420)
def test_ctrl_c_stops_every_experiment_and_records_none(project, tmp_path) -> None:
    root, counter = project
    before = workspace_digest(root)
    proc = subprocess.Popen(
        [MLOPS_BIN, "exp", "run", "-S", "train.lr=0.01,0.02", "-j", "2"],
        cwd=root,
        env={**os.environ, "EXP_SLOW": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240  # generous: a loaded 2-core machine starts two worktrees slowly
    while counts(counter).get("train-start", 0) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=150)
    assert proc.returncode == 130, err
    assert "0 recorded before the interrupt" in err, err
    assert not list((root / ".mlops/experiments").glob("*.json")), err
    assert not list((root / ".mlops/tmp/exec").glob("wt-*")), err
    assert workspace_digest(root) == before
    assert "train" not in counts(counter), counts(counter)  # no train finished


def test_queue_survives_and_runs_later(project, mlops_bin) -> None:
    root, counter = project
    mlops_bin("exp", "queue", "-S", "train.lr=0.3", "--name", "q1")
    mlops_bin("exp", "queue", "-S", "train.lr=0.4,0.5", "--name", "q")
    queued = sorted(p.name for p in (root / ".mlops/experiments/queue").glob("*.json"))
    assert len(queued) == 3 and queued[0].endswith("-q1.json")
    assert counts(counter) == {}
    done = json.loads(mlops_bin("exp", "run", "--queued", "-j", "2", "--json").stdout)
    assert [e["name"] for e in done["experiments"]] == ["q1", "q-1", "q-2"]
    assert all(e["status"] == "succeeded" for e in done["experiments"])
    assert not list((root / ".mlops/experiments/queue").glob("*.json"))
    empty = json.loads(mlops_bin("exp", "run", "--queued", "--json").stdout)
    assert empty["experiments"] == []
