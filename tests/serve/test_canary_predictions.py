"""Canary health includes the answers: a canary whose predictions depart from production's on
the same traffic (one class for everything) is rolled back and is unhealthy for `canary status`."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import httpx
from servekit import audit_entries, mlops, register, training_frame, wait_for


def one_class() -> object:
    """A real scikit-learn classifier that answers 1 for every input."""
    from sklearn.dummy import DummyClassifier

    frame = training_frame()
    return DummyClassifier(strategy="constant", constant=1).fit(frame, [0, 1] * (len(frame) // 2))


def _records(rng: random.Random, n: int) -> list[dict]:
    return [
        {"tenure": rng.randint(0, 71), "plan": rng.choice(["basic", "pro"]), "monthly_charges": rng.uniform(10, 120)}
        for _ in range(n)
    ]


def test_a_canary_answering_one_class_is_rolled_back(serve, model_repo: Path) -> None:
    register(model_repo, "churn", 4, one_class())
    server = serve()
    args = ("deploy", "churn", "--canary", "4", "--weight", "50", "--min-requests", "10")
    r = mlops(model_repo, *args, "--max-prediction-shift", "0.3", "--max-error-rate", "0.5")
    assert "prediction shift > 0.3" in r.stdout + r.stderr
    dep = (model_repo / ".mlops" / "deployments" / "churn.yaml").read_text()
    assert "max_prediction_shift: 0.3" in dep
    wait_for(lambda: httpx.get(server.url + "/health").json().get("canary"), what="the canary")
    rng = random.Random(5)
    with server.client() as c:
        deadline = time.monotonic() + 60  # a bound, not an expectation
        while time.monotonic() < deadline:
            assert c.post("/predict", json={"records": _records(rng, 4)}).status_code == 200  # nothing fails
            if "canary" not in c.get("/health").json():
                break
        assert "canary" not in c.get("/health").json(), "no rollback within 60 s"
    entry = audit_entries(model_repo, "canary_rollback")[-1]
    assert entry["automatic"] is True and entry["version"] == 4
    assert "predictions departed from production's" in entry["reason"] and "1 100%" in entry["reason"]


def test_without_the_threshold_the_answers_are_shown_not_judged(serve, model_repo: Path) -> None:
    register(model_repo, "churn", 4, one_class())
    server = serve()
    mlops(model_repo, "deploy", "churn", "--canary", "4", "--weight", "50", "--min-requests", "5")
    wait_for(lambda: httpx.get(server.url + "/health").json().get("canary"), what="the canary")
    rng = random.Random(6)
    with server.client() as c:
        for _ in range(40):
            assert c.post("/predict", json={"records": _records(rng, 4)}).status_code == 200
    doc = wait_for(
        lambda: (
            (d := json.loads(mlops(model_repo, "canary", "status", "churn", "--json").stdout))["variants"][1].get(
                "requests", 0
            )
            >= 5
            and d
        ),
        what="canary statistics",
    )
    assert doc["variants"][1]["distribution_distance"] > 0.3  # shown
    assert "canary" in httpx.get(server.url + "/health").json()  # not rolled back: no threshold set
