"""Request logs of a real server fed to `mlops drift serving:NAME`: live traffic against training data."""

from __future__ import annotations

import json
import random
from pathlib import Path

from servekit import mlops


def test_request_logs_are_current_data_for_drift(serve, model_repo: Path) -> None:
    server = serve("churn@production")
    rng = random.Random(3)
    with server.client() as c:
        for _ in range(40):  # live traffic has moved: long-tenure customers on expensive plans
            records = [
                {"tenure": rng.randint(60, 71), "plan": "basic", "monthly_charges": round(rng.uniform(100, 120), 2)}
                for _ in range(10)
            ]
            assert c.post("/predict", json={"records": records}).status_code == 200
    assert server.stop() == 0  # SIGTERM finishes the request-log file

    reference = model_repo / "models" / "train.parquet"  # the rows the models were fitted on
    r = mlops(
        model_repo, "drift", str(reference), "serving:churn", "--since", "1h", "--json", "--fail-on-drift", code=1
    )
    doc = json.loads(r.stdout)
    tested = {c["column"]: c for c in doc["columns"]}
    assert {"tenure", "plan", "monthly_charges"} <= set(tested)
    assert tested["tenure"]["drifted"] and tested["monthly_charges"]["drifted"]
    # the log's bookkeeping columns are not data to test
    assert not {"latency_ms", "time", "variant", "version", "prediction"} & set(tested)
    assert doc["verdict"]["drifted"] is True

    r = mlops(model_repo, "drift", str(reference), "serving:churn", code=0)  # without --fail-on-drift: reported, exit 0
    assert "tenure" in r.stdout


def test_serving_source_errors_are_usage_errors(model_repo: Path) -> None:
    reference = model_repo / "models" / "train.parquet"
    r = mlops(model_repo, "drift", str(reference), "serving:churn", code=2)  # nothing served yet
    assert "no request logs" in r.stderr and "mlops serve" in r.stderr
    r = mlops(model_repo, "drift", str(reference), str(reference), "--since", "1h", code=2)
    assert "--since applies to request logs" in r.stderr
    r = mlops(model_repo, "drift", str(reference), "serving:churn", "--since", "soon", code=2)
    assert "not a duration" in r.stderr


def test_a_serving_source_names_a_model_not_a_path(model_repo: Path) -> None:
    (model_repo / "x.csv").write_text("a,b\n1,2\n")
    r = mlops(model_repo, "drift", "x.csv", "serving:../../models", code=2)
    assert "not a valid model name: '../../models'" in r.stderr
