"""A model registered without dtypes (no recorded run, no sample): a value that is not a number for a
column the fitted model takes as numbers is the caller's mistake (400 naming the column), not a 500;
a model that raises otherwise is a 500 logged on one line with the request id."""

from __future__ import annotations

from pathlib import Path

import pytest
from servekit import ROW, fit_pipeline, start_server

from mlops.serve.fitted import fitted_numeric_columns


def test_the_fitted_numeric_columns_of_a_pipeline_and_a_plain_estimator() -> None:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    assert fitted_numeric_columns(fit_pipeline()) == {"tenure", "monthly_charges"}  # plan goes to OneHotEncoder
    plain = LinearRegression().fit(pd.DataFrame({"x1": [1.0, 2.0, 3.0], "x2": [0, 1, 0]}), [1.0, 2.0, 3.5])
    assert fitted_numeric_columns(plain) == {"x1", "x2"}
    assert fitted_numeric_columns(object()) == frozenset()
    on_an_array = LinearRegression().fit(np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]]), [1.0, 2.0, 3.5])
    assert fitted_numeric_columns(on_an_array, ("x0", "x1")) == {"x0", "x1"}
    assert fitted_numeric_columns(on_an_array, ("x0",)) == frozenset()  # not its width: no guess


@pytest.fixture
def untyped_repo(repo) -> Path:
    """churn v1, the usual pipeline, registered with no data at all: its signature's dtypes are unknown."""
    import pickle

    from mlops import registry

    root = Path(repo.root)
    (root / "models").mkdir()
    (root / "models" / "churn.pkl").write_bytes(pickle.dumps(fit_pipeline(strict=True)))
    result = registry.register(repo, "churn", root / "models" / "churn.pkl", actor="tests")
    assert {c["dtype"] for c in result.version.signature["inputs"]} == {"unknown"}, result.version.signature
    registry.promote(repo, "churn", 1, "production", reason="test set-up", actor="tests")
    return root


def test_a_string_for_a_column_fitted_on_numbers_is_a_400_naming_it(untyped_repo: Path) -> None:
    server = start_server(untyped_repo, "churn@production")
    try:
        with server.client() as c:
            bad = c.post("/predict", json={"records": [ROW, {**ROW, "tenure": "a"}]})
            assert bad.status_code == 400, bad.text
            (problem,) = bad.json()["problems"]
            assert "column 'tenure'" in problem and "row 1 is string 'a'" in problem, problem
            v2 = c.post("/invocations", json={"dataframe_records": [{**ROW, "monthly_charges": "lots"}]})
            assert v2.status_code == 400 and "monthly_charges" in v2.text, v2.text
            assert c.post("/predict", json={"records": [ROW]}).status_code == 200
            # the model's own exception (a plan it never saw): still a 500, logged on one line
            unseen = {"records": [{**ROW, "plan": "platinum"}]}
            raised = c.post("/predict", json=unseen, headers={"x-request-id": "r-7"})
            assert raised.status_code == 500, raised.text
    finally:
        server.stop()
    log = server.stderr()
    assert "Traceback" not in log, log
    (line,) = [line for line in log.splitlines() if "raised" in line]
    assert "request r-7" in line and "ValueError" in line, line


def test_with_debug_a_model_that_raised_is_logged_with_its_traceback(untyped_repo: Path) -> None:
    server = start_server(untyped_repo, "churn@production", env={"MLOPS_DEBUG": "1"})
    try:
        with server.client() as c:
            assert c.post("/predict", json={"records": [{**ROW, "plan": "platinum"}]}).status_code == 500
    finally:
        server.stop()
    assert "Traceback" in server.stderr() and "unknown categories" in server.stderr()
