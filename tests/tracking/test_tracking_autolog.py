"""mlops.autolog() on real scikit-learn fits: params, training score and the model, outermost fit only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import sys
import mlops
mlops.autolog()
assert "sklearn.ensemble" not in sys.modules  # nothing more than sklearn.base before a fit is imported
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X = pd.DataFrame({"tenure": [1, 5, 9, 12, 30, 2, 7, 20], "spend": [9.5, 3.0, 7.25, 1.0, 4.5, 8.0, 6.0, 2.0]})
y = [1, 0, 1, 0, 0, 1, 1, 0]
with mlops.start_run(name="forest") as forest:
    RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
with mlops.start_run(name="pipe") as pipe:
    make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
print(forest.id, pipe.id)
"""


@pytest.mark.timeout(180)
def test_autolog_logs_each_outermost_fit(repo, mlops_bin) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=repo.root, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr
    forest_id, pipe_id = done.stdout.split()
    forest = json.loads(mlops_bin("runs", "show", forest_id, "--json").stdout)
    assert forest["params"]["n_estimators"] == 5 and forest["params"]["max_depth"] == 3
    assert 0.5 <= forest["metrics"]["training_score"] <= 1.0
    [model] = forest["artifacts"]
    assert model["model"] == "randomforestclassifier" and model["flavor"] == "sklearn"
    assert [i["name"] for i in model["signature"]["inputs"]] == ["tenure", "spend"]
    pipe = json.loads(mlops_bin("runs", "show", pipe_id, "--json").stdout)
    assert [a["model"] for a in pipe["artifacts"]] == ["pipeline"]  # the inner fits are not logged again
    assert "steps" in pipe["params"]


def test_without_autolog_nothing_is_patched() -> None:
    code = "import mlops, sys; mlops.start_run; print(any(m.startswith('sklearn') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False"
