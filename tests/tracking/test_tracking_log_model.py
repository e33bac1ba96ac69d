"""mlops.log_model on a real scikit-learn fit, then `mlops register NAME --run RUN` without a path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import pandas as pd
from sklearn.tree import DecisionTreeClassifier
import mlops
X = pd.DataFrame({"tenure": [1, 5, 9, 12, 30, 2], "spend": [9.5, 3.0, 7.25, 1.0, 4.5, 8.0]})
y = [1, 0, 1, 0, 0, 1]
with mlops.start_run(name="fit") as run:
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)
    record = mlops.log_model(model, "churn", signature_from=X)
print(run.id)
import json; print(json.dumps(record))
"""


@pytest.mark.timeout(180)
def test_log_model_then_register_from_the_run(repo, mlops_bin) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=repo.root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_id, record_text = done.stdout.strip().splitlines()
    record = json.loads(record_text)
    assert record["path"] == "models/churn.pkl" and record["model"] == "churn" and record["flavor"] == "sklearn"
    assert record["signature"]["inputs"] == [
        {"name": "tenure", "dtype": "int64"},
        {"name": "spend", "dtype": "float64"},
    ]
    assert record["signature"]["outputs"] == [{"name": "prediction", "dtype": "int64"}]
    shown = json.loads(mlops_bin("runs", "show", run_id, "--json").stdout)
    assert [a["model"] for a in shown["artifacts"]] == ["churn"]  # one record, the model's

    registered = json.loads(mlops_bin("register", "churn", "--run", run_id, "--json").stdout)
    text = json.dumps(registered)
    assert run_id in text and record["hash"] in text, registered
    assert "sklearn" in text and "tenure" in text
