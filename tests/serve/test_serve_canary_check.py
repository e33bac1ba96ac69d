"""`mlops canary status --check`: the CI gate on a canary (exit 1 unless a healthy candidate is deployed)."""

from __future__ import annotations

import json
from pathlib import Path

from servekit import ROW, mlops, wait_for


def test_check_passes_only_for_a_healthy_candidate(serve, model_repo: Path) -> None:
    server = serve("churn@production")
    r = mlops(model_repo, "canary", "status", "churn", "--check", code=2)  # nothing deployed at all: a usage error
    assert "no deployment of churn" in r.stderr

    mlops(model_repo, "deploy", "churn", "--canary", "2", "--weight", "50", "--min-requests", "5")
    r = mlops(model_repo, "canary", "status", "churn", "--check", "--json", code=1)  # nothing seen yet: waiting
    assert json.loads(r.stdout)["candidate"]["verdict"] == "waiting"  # one JSON document, then the error line
    assert "waiting" in r.stderr

    with server.client() as c:
        for i in range(60):
            assert c.post("/predict", json={"records": [ROW]}, headers={"X-Request-ID": f"c{i}"}).status_code == 200
    wait_for(
        lambda: mlops(model_repo, "canary", "status", "churn", "--check", code=None).returncode == 0,
        timeout=120,  # each check is a whole `mlops` process: a few seconds apiece on a loaded machine
        what="the canary judged healthy",
    )

    mlops(model_repo, "canary", "rollback", "churn", "--reason", "test")
    r = mlops(model_repo, "canary", "status", "churn", "--check", code=1)
    assert "rolled back" in r.stderr
