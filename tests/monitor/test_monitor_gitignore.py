"""`mlops init` keeps serving's request logs and the monitoring profiles out of git; what is meant
to be committed (config, deployments) is not ignored."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlops.repo.repo import Repo


def test_init_ignores_request_logs_and_monitor_profiles(repo: Repo) -> None:
    root = Path(repo.root)
    local = [
        ".mlops/serve/churn/requests/20261206T100000Z-host-1-0001.parquet",
        ".mlops/serve/churn/failures/20261206T100000Z-host-1-0001.parquet",
        ".mlops/serve/churn/shadow/20261206T100000Z-host-1-0001.parquet",
        ".mlops/serve/churn/stats/host-1.json",
        ".mlops/monitor/churn/reference-v1.json",
        ".mlops/monitor/churn/logs/abc/20261206T100000Z-host-1-0001.json",
        ".mlops/monitor/churn/logs/abc/20261206T100000Z-host-1-0001.answers.parquet",
        ".mlops/monitor/churn/labels/0123.parquet",
        ".mlops/monitor/churn/checks.jsonl",
    ]
    committed = [".mlops/config.yaml", ".mlops/.gitignore", ".mlops/deployments/churn.yaml"]
    for rel in [*local, *committed]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (root / rel).exists():
            (root / rel).write_bytes(b"x")
    shown = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    listed = {line[3:] for line in shown if line}
    assert set(committed) <= listed
    assert not listed & set(local), listed & set(local)
