"""`mlops push/pull/fetch --run-cache`, `mlops run --dry-run --remote` and `mlops remote add`'s probe (issue 14).

The origin and each teammate are separate `git clone` folders with their own caches; the shared
remote is the moto S3 server on 127.0.0.1. Every command is the real `mlops` console script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlops.repo.repo import Repo

# Each stage appends its name to ../counts.txt, beside the clones (all in one folder): an
# execution on any machine is seen, and the command text is the same everywhere.
SCRIPTS = {
    "stages/prep.py": "open('clean.txt', 'w').write(open('data.csv').read().upper())\n",
    "stages/train.py": (
        "import os\n"
        "os.makedirs('model', exist_ok=True)\n"
        "open('model/w.bin', 'wb').write(os.urandom(256))\n"  # other bytes on every run
        "open('model/src.txt', 'w').write(open('clean.txt').read() + os.environ['SEED'])\n"
    ),
    "stages/report.py": "open('report.json', 'w').write(str(len(open('model/w.bin', 'rb').read())))\n",
}
COUNT = "import os; open('../counts.txt', 'a').write(os.environ['MLOPS_STAGE'] + '\\n')\n"
PIPELINE = """stages:
  prep:
    cmd: {py} stages/prep.py
    deps: [data.csv, stages/prep.py]
    outs: [clean.txt]
  train:
    cmd: {py} stages/train.py
    deps: [clean.txt, stages/train.py]
    env: {{SEED: '7'}}
    outs: [model]
  report:
    cmd: {py} stages/report.py
    deps: [model, stages/report.py]
    metrics: [report.json]
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def as_json(proc: Any) -> dict[str, Any]:
    return json.loads(proc.stdout)


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in doc["stages"]}


@pytest.fixture
def team(repo: Repo, tmp_path: Path, s3_bucket: Any, mlops_bin: Any) -> Path:
    """The origin: data tracked by mlops, a 3-stage pipeline run once, pushed with --run-cache."""
    root = repo.root
    added = as_json(
        mlops_bin(
            "remote",
            "add",
            "team",
            f"s3://{s3_bucket.name}/store",
            "--default",
            "--endpoint-url",
            s3_bucket.endpoint_url,
            "--json",
            cwd=root,
        )
    )
    assert added["conditional_writes"] is True and added["warnings"] == []
    (root / "data.csv").write_text("a,b\n1,2\n")
    mlops_bin("add", "data.csv", cwd=root)
    for rel, code in SCRIPTS.items():
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_text(COUNT + code)
    (root / "pipeline.yaml").write_text(PIPELINE.format(py=sys.executable))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "project")
    assert statuses(as_json(mlops_bin("run", "--json", cwd=root))) == {"prep": "ran", "train": "ran", "report": "ran"}
    pushed = as_json(mlops_bin("push", "--run-cache", "--json", cwd=root))
    assert pushed["run_cache"]["created"] == 3 and pushed["run_cache"]["skipped"] == 0
    return root


OUTPUTS = ("clean.txt", "model/w.bin", "model/src.txt", "report.json")


@pytest.mark.timeout(240)
def test_a_teammate_restores_every_stage_and_runs_none(team: Path, tmp_path: Path, mlops_bin: Any) -> None:
    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(team), str(mate))
    assert not (mate / "pipeline.lock").exists()
    before = (tmp_path / "counts.txt").read_text()
    assert before.split() == ["prep", "train", "report"]

    pulled = as_json(mlops_bin("pull", "--run-cache", "--json", cwd=mate))
    assert pulled["run_cache"]["created"] == 3 and pulled["run_cache"]["warnings"] == []
    dry = as_json(mlops_bin("run", "--dry-run", "--json", cwd=mate))
    assert statuses(dry) == {"prep": "would restore", "train": "would restore", "report": "would restore"}

    assert as_json(mlops_bin("pull", "--run-cache", "--json", cwd=mate))["run_cache"]["created"] == 0
    # everything is here now: the run must not reach the remote, nor even load its client
    mlops_bin("remote", "modify", "team", "endpoint_url", "http://127.0.0.1:9", "--local", cwd=mate)
    ran_proc = mlops_bin("run", "--json", cwd=mate, env={"PYTHONPROFILEIMPORTTIME": "1"})
    loaded = {line.rpartition("|")[2].strip() for line in ran_proc.stderr.splitlines() if "|" in line}
    assert "mlops.pipeline.executor" in loaded  # the import log is there
    assert not loaded & {"s3fs", "aiobotocore", "botocore", "mlops.remotes.s3"}
    ran = as_json(ran_proc)
    assert statuses(ran) == {"prep": "restored", "train": "restored", "report": "restored"}
    assert (tmp_path / "counts.txt").read_text() == before  # no stage command ran anywhere
    for rel in OUTPUTS:
        assert (mate / rel).read_bytes() == (team / rel).read_bytes(), rel
    assert (mate / "pipeline.lock").read_text() == (team / "pipeline.lock").read_text()


@pytest.mark.timeout(240)
def test_dry_run_with_a_remote_says_what_the_shared_cache_restores(team: Path, tmp_path: Path, mlops_bin: Any) -> None:
    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(team), str(mate))
    mlops_bin("pull", cwd=mate)  # the data, not the run cache
    plain = as_json(mlops_bin("run", "--dry-run", "--json", cwd=mate))
    assert statuses(plain) == {"prep": "would run", "train": "would run", "report": "would run"}
    shared = as_json(mlops_bin("run", "--dry-run", "--remote", "team", "--json", cwd=mate))
    assert statuses(shared) == {"prep": "would restore", "train": "would restore", "report": "would restore"}
    assert {s["restore_from"] for s in shared["stages"]} == {"remote team"}
    text = mlops_bin("run", "--dry-run", "--remote", "team", cwd=mate).stdout
    assert "from the shared run cache (remote team)" in text
    # --remote means the shared run cache for a dry run only
    refused = mlops_bin("run", "--remote", "team", cwd=mate, code=2)
    assert "--remote goes with --dry-run" in refused.stderr

    # a changed input: that stage and the ones after it would run
    (mate / "pipeline.yaml").write_text((mate / "pipeline.yaml").read_text().replace("SEED: '7'", "SEED: '8'"))
    changed = as_json(mlops_bin("run", "--dry-run", "--remote", "team", "--json", cwd=mate))
    assert statuses(changed) == {"prep": "would restore", "train": "would run", "report": "would run"}


def test_fetch_run_cache_takes_entries_and_objects(team: Path, tmp_path: Path, mlops_bin: Any) -> None:
    mate = tmp_path / "mate"
    git(tmp_path, "clone", "-q", str(team), str(mate))
    mlops_bin("pull", cwd=mate)
    fetched = as_json(mlops_bin("fetch", "--run-cache", "--json", cwd=mate))
    assert fetched["run_cache"]["created"] == 3
    assert not (mate / "model").exists()  # fetch places nothing
    assert statuses(as_json(mlops_bin("run", "--json", cwd=mate)))["train"] == "restored"


def test_remote_add_probes_conditional_writes(repo: Repo, tmp_path: Path, mlops_bin: Any) -> None:
    added = as_json(mlops_bin("remote", "add", "box", str(tmp_path / "box"), "--json", cwd=repo.root))
    assert added["conditional_writes"] is True
    assert not (tmp_path / "box").exists()  # the probe leaves nothing it created
    unreachable = mlops_bin("remote", "add", "gone", str(tmp_path / "no" / "such" / "box"), cwd=repo.root)
    assert "warning: could not probe remote 'gone'" in unreachable.stderr  # a warning, exit 0
    assert "conditional_writes" in mlops_bin("remote", "probe", "box", "--json", cwd=repo.root).stdout
