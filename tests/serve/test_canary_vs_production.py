"""The automatic rollback compares the canary with production over the same window: inputs that
make both fail do not roll back a healthy candidate; a canary failing alone is rolled back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from servekit import ROW, audit_entries, broken, deploy_canary, mlops, register, wait_for, wait_for_canary

from mlops.repo.repo import Repo
from mlops.serve.controller import control_once
from mlops.serve.deployment import load_deployment
from mlops.serve.health import Bucket, judge
from mlops.serve.source import open_source

UNKNOWN_PLAN = {**ROW, "plan": "platinum"}  # a well-formed row every churn pipeline here raises on


def _bucket(requests: int, failed: int) -> Bucket:
    bucket = Bucket()
    for i in range(requests):
        bucket.add(5.0, 500 if i < failed else 200, [0])
    return bucket


def test_judge_blames_the_candidate_only_for_what_production_does_not_also_do() -> None:
    limits = {"min_requests": 10, "max_error_rate": 0.2, "max_p99_ms": None, "window_seconds": 60}
    both = judge(_bucket(40, 20), baseline=_bucket(40, 20), **limits)
    assert both.healthy is True and "production 50.0%" in both.reason
    alone = judge(_bucket(40, 20), baseline=_bucket(40, 0), **limits)
    assert alone.healthy is False and "production 0.0% over the same window" in alone.reason
    worse = judge(_bucket(40, 36), baseline=_bucket(40, 20), **limits)  # 90% against 50%: 40 points of its own
    assert worse.healthy is False
    unseen = judge(_bucket(40, 20), baseline=_bucket(3, 0), **limits)  # production too quiet to compare
    assert unseen.healthy is False and "too few requests to compare" in unseen.reason


def _deploy(root: Path, version: str) -> None:
    deploy_canary(root, version, weight=50, min_requests=10, max_error_rate=0.2)


def _status(root: Path) -> dict:
    return json.loads(mlops(root, "canary", "status", "churn", "--json").stdout)


def test_a_canary_failing_with_production_is_not_rolled_back(serve, model_repo: Path) -> None:
    server = serve()
    _deploy(model_repo, "2")  # v2 is v1's pipeline: both raise on a plan they never saw
    wait_for_canary(server)
    with server.client() as c:
        for i in range(80):
            r = c.post("/predict", json={"records": [UNKNOWN_PLAN if i % 2 else ROW]}, headers={"x-request-id": str(i)})
            assert r.status_code == (500 if i % 2 else 200), r.text

    def counted() -> dict:
        status = _status(model_repo)
        if status.get("candidate") is None:
            return status  # rolled back: the assertions below say so
        variants = {v["variant"]: v for v in status["variants"]}
        enough = all(variants[v]["requests"] >= 10 and variants[v]["errors"] > 0 for v in ("production", "canary"))
        return status if enough else {}

    status = wait_for(counted, what="both variants' failures in the statistics")
    assert status.get("candidate") is not None, f"rolled back: {status['last_event']}"
    variants = {v["variant"]: v for v in status["variants"]}
    assert variants["canary"]["error_rate"] > 0.2 and variants["production"]["error_rate"] > 0.2
    assert status["candidate"]["verdict"] == "healthy", status["candidate"]
    repo = Repo(model_repo)
    assert control_once(repo, open_source(repo), "churn") == (None, None)  # the controller's own decision
    assert load_deployment(repo, "churn").candidate is not None
    assert audit_entries(model_repo, "canary_rollback") == []


@pytest.mark.timeout(300)
def test_a_canary_failing_alone_is_rolled_back(serve, model_repo: Path) -> None:
    register(model_repo, "churn", 4, broken())
    server = serve()
    _deploy(model_repo, "4")
    wait_for_canary(server)
    # Production must have its own min_requests in the window the controller judges, or the canary is
    # judged alone ("production: too few requests to compare"): beside each split request, one goes to
    # production's version directly (bypassing the split), so production always leads the canary's count.
    direct = {
        "inputs": [
            {"name": "tenure", "shape": [1], "datatype": "INT64", "data": [ROW["tenure"]]},
            {"name": "plan", "shape": [1], "datatype": "BYTES", "data": [ROW["plan"]]},
            {"name": "monthly_charges", "shape": [1], "datatype": "FP64", "data": [ROW["monthly_charges"]]},
        ]
    }
    deadline = time.monotonic() + 180
    with server.client() as c:
        i = 0
        while "canary" in c.get("/health").json() and i < 2000 and time.monotonic() < deadline:
            answer = c.post("/v2/models/churn/versions/1/infer", json=direct, headers={"x-request-id": f"p{i}"})
            assert answer.status_code == 200 and answer.headers["x-variant"] == "production", answer.text
            c.post("/predict", json={"records": [ROW]}, headers={"x-request-id": str(i)})
            i += 1
    wait_for(lambda: audit_entries(model_repo, "canary_rollback"), what="the rollback")
    reason = audit_entries(model_repo, "canary_rollback")[-1]["reason"]
    assert "production 0.0% over the same window" in reason, reason
    assert load_deployment(Repo(model_repo), "churn").candidate is None
