"""`mlops push --runs` / `pull --runs` carry the monitoring profiles: a clone checks without the request logs."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from monitorkit import write_day
from servekit import mlops

from mlops.data.transfer import get_remote
from mlops.repo.repo import Repo

DAY = 86400


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.mark.timeout(300)
def test_a_clone_pulls_the_profiles_and_gives_the_same_verdict(monitored: Path, tmp_path: Path) -> None:
    today = time.time() // DAY * DAY
    write_day(monitored, today - 2 * DAY, 150, drifted=False, seed=1)
    write_day(monitored, today - DAY, 150, drifted=True, seed=2)
    args = ("monitor", "check", "churn", "--window", "1d", "--since", "3d", "--json")
    here = json.loads(mlops(monitored, *args).stdout)
    assert here["breached"] == ["drift"]

    mlops(monitored, "remote", "add", "origin", str(tmp_path / "remote"), "--default")
    _git(monitored, "add", "-A")
    # the teammate's clone has the code, the registry and the pointers; not the request logs, not the
    # profiles: `mlops init` git-ignores both
    tracked = subprocess.run(["git", "ls-files", ".mlops"], cwd=monitored, capture_output=True, text=True).stdout
    assert ".mlops/monitor/" not in tracked and ".mlops/serve/" not in tracked
    _git(monitored, "commit", "-qm", "project")
    pushed = json.loads(mlops(monitored, "push", "--runs", "--json").stdout)["monitor"]
    files = pushed["files"]
    assert "monitor/churn/reference-v1.json" in files
    assert any(f.endswith(".answers.parquet") for f in files) and sum(f.endswith(".json") for f in files) >= 2
    assert json.loads(mlops(monitored, "push", "--runs", "--json").stdout)["monitor"]["files"] == []  # nothing new

    # received content is checked: a profile that is not one, and a ref of no profile shape, are skipped
    remote = get_remote(Repo(monitored), "origin")
    basis = next(f for f in files if f.endswith(".json") and "/logs/" in f).split("/")[3]
    remote.put_ref(f"monitor/churn/logs/{basis}/forged.json", b'{"format": 1, "hours": 3}')
    remote.put_ref("monitor/churn/run.sh", b"echo hi")

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(monitored), str(clone)], check=True)
    assert not (clone / ".mlops" / "serve").exists() and not (clone / ".mlops" / "monitor").exists()
    r = mlops(clone, "pull", "--runs", "--json")
    pulled = json.loads(r.stdout)["monitor"]
    assert sorted(pulled["files"]) == sorted(files)
    assert any("forged.json" in w and "not valid" in w for w in pulled["warnings"])
    assert any("run.sh" in w for w in pulled["warnings"])
    assert not (clone / ".mlops/monitor/churn/logs" / basis / "forged.json").exists()
    assert not (clone / ".mlops/monitor/churn/run.sh").exists()

    there = json.loads(mlops(clone, *args).stdout)
    assert there["breached"] == ["drift"]
    assert [w["rows"] for w in there["windows"]] == [w["rows"] for w in here["windows"]]
    # a second pull finds everything already here
    again = json.loads(mlops(clone, "pull", "--runs", "--json").stdout)["monitor"]
    assert again["files"] == [] and again["present"] == len(files)
