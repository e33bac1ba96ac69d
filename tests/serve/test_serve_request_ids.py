"""Request logs that labels can be joined to later: a request id on every logged row, and a
classifier's class probabilities beside its prediction (a real `mlops serve`)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
from servekit import ROW


def _logged(root: Path) -> list[dict]:
    rows: list[dict] = []
    for path in sorted((root / ".mlops" / "serve" / "churn" / "requests").glob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def test_request_ids_and_probabilities_are_logged(serve, model_repo: Path) -> None:
    server = serve("churn@production")
    with server.client() as c:
        given = c.post("/predict", json={"records": [ROW]}, headers={"X-Request-ID": "order-17:a"})
        assert given.status_code == 200 and given.headers["x-request-id"] == "order-17:a"
        made = c.post("/predict", json={"records": [ROW, {**ROW, "tenure": 60}]})
        assert made.status_code == 200
        made_id = made.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made_id)
        # an id that is not visible ASCII (or too long) is not kept, nor echoed: the server makes one
        odd = c.post("/predict", json={"records": [ROW]}, headers={"X-Request-ID": "x" * 129})
        assert odd.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
        # MLflow's protocol logs the same way; a refused request still says which id it had
        mlflow = c.post("/invocations", json={"dataframe_records": [ROW]}, headers={"X-Request-ID": "m-1"})
        assert mlflow.status_code == 200 and mlflow.headers["x-request-id"] == "m-1"
        refused = c.post("/predict", json={"records": [{"tenure": 3}]}, headers={"X-Request-ID": "bad-1"})
        assert refused.status_code == 400 and refused.headers["x-request-id"] == "bad-1"
        predictions = given.json()["predictions"] + made.json()["predictions"]
    assert server.stop() == 0  # SIGTERM finishes the log file

    rows = _logged(model_repo)
    by_id = {}
    for row in rows:
        by_id.setdefault(row["request_id"], []).append(row)
    assert set(by_id) == {"order-17:a", made_id, odd.headers["x-request-id"], "m-1"}  # the refused one is not logged
    assert [r["request_row"] for r in by_id[made_id]] == [0, 1]
    assert [r["tenure"] for r in by_id[made_id]] == [3, 60]
    logged = [by_id["order-17:a"][0], *by_id[made_id]]
    for row, prediction in zip(logged, predictions, strict=True):
        probabilities = dict(row["probabilities"])
        assert set(probabilities) == {"0", "1"}
        assert abs(sum(probabilities.values()) - 1.0) < 1e-9
        # the logged prediction is predict()'s, and the class it names is the more probable one
        assert row["prediction"] == prediction
        assert max(probabilities, key=probabilities.get) == str(prediction)


def test_a_regressor_logs_no_probabilities(serve, model_repo: Path) -> None:
    from servekit import _regression_pipeline, register, training_frame

    frame = training_frame()
    register(model_repo, "churn", 4, _regression_pipeline().fit(frame, frame["monthly_charges"] * 0.5))
    server = serve("churn:4")
    with server.client() as c:
        assert c.post("/predict", json={"records": [ROW]}, headers={"X-Request-ID": "r-1"}).status_code == 200
    assert server.stop() == 0
    rows = _logged(model_repo)
    assert [r["request_id"] for r in rows] == ["r-1"]
    assert "probabilities" not in rows[0]
