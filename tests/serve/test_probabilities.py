"""A scikit-learn classifier answers probabilities when the request names the output "probabilities"
(issue 15), in all three protocols; without it the answers are as before, and predict_proba is not called."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from servekit import ROW, Server, register

ROWS = [ROW, {"tenure": 40, "plan": "pro", "monthly_charges": 20.5}]
V2_INPUTS = [
    {"name": "tenure", "shape": [2], "datatype": "INT64", "data": [3, 40]},
    {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
    {"name": "monthly_charges", "shape": [2], "datatype": "FP64", "data": [80.0, 20.5]},
]


@pytest.fixture
def server(serve) -> Server:
    return serve()


def expected(model_repo: Path) -> tuple[list[int], list[list[float]], list[int]]:
    model = pickle.loads((model_repo / "models" / "churn-v1.pkl").read_bytes())
    frame = pd.DataFrame(ROWS)
    return model.predict(frame).tolist(), model.predict_proba(frame).tolist(), model.classes_.tolist()


def test_probabilities_on_request_in_the_own_and_mlflow_protocols(server: Server, model_repo: Path) -> None:
    predictions, probabilities, classes = expected(model_repo)
    with server.client() as c:
        body = c.post("/predict", json={"records": ROWS, "outputs": ["probabilities"]}).json()
        assert body["predictions"] == predictions and body["classes"] == classes
        assert np.allclose(body["probabilities"], probabilities)
        assert "probabilities" not in c.post("/predict", json={"records": ROWS}).json()
        body = c.post("/invocations", json={"dataframe_records": ROWS, "params": {"outputs": ["probabilities"]}}).json()
        assert body["predictions"] == predictions and np.allclose(body["probabilities"], probabilities)
        assert c.post("/invocations", json={"dataframe_records": ROWS}).json() == {"predictions": predictions}
        r = c.post("/predict", json={"records": ROWS, "outputs": ["logits"]})
        assert r.status_code == 400 and "unknown output 'logits'" in r.json()["error"]


def test_probabilities_as_a_v2_output_tensor(server: Server, model_repo: Path) -> None:
    predictions, probabilities, classes = expected(model_repo)
    with server.client() as c:
        asked = {"inputs": V2_INPUTS, "outputs": [{"name": "probabilities"}, {"name": "prediction"}]}
        outputs = c.post("/v2/models/churn/infer", json=asked).json()["outputs"]
        assert [o["name"] for o in outputs] == ["probabilities", "prediction"]
        tensor = outputs[0]
        assert tensor["shape"] == [2, len(classes)] and tensor["datatype"] == "FP64"
        assert tensor["parameters"]["classes"] == classes
        assert np.allclose(np.array(tensor["data"]).reshape(2, -1), probabilities)
        assert outputs[1]["data"] == predictions
        only = {"inputs": V2_INPUTS, "outputs": [{"name": "probabilities"}]}
        assert [o["name"] for o in c.post("/v2/models/churn/infer", json=only).json()["outputs"]] == ["probabilities"]


def test_tritonclient_reads_probabilities_as_binary_tensor_data(server: Server, model_repo: Path) -> None:
    http = pytest.importorskip("tritonclient.http")
    predictions, probabilities, _ = expected(model_repo)
    client = http.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=30)
    try:
        tenure = http.InferInput("tenure", [2], "INT64")
        tenure.set_data_from_numpy(np.array([3, 40], dtype=np.int64))
        plan = http.InferInput("plan", [2], "BYTES")
        plan.set_data_from_numpy(np.array(["basic", "pro"], dtype=object))
        charges = http.InferInput("monthly_charges", [2], "FP64")
        charges.set_data_from_numpy(np.array([80.0, 20.5]))
        for binary in (True, False):
            wanted = [
                http.InferRequestedOutput("prediction", binary_data=binary),
                http.InferRequestedOutput("probabilities", binary_data=binary),
            ]
            result = client.infer("churn", [tenure, plan, charges], outputs=wanted)
            assert result.as_numpy("prediction").tolist() == predictions, binary
            assert np.allclose(result.as_numpy("probabilities"), probabilities), binary
    finally:
        client.close()


def test_a_model_without_predict_proba_says_so(serve, model_repo: Path) -> None:
    from sklearn.dummy import DummyRegressor

    register(
        model_repo, "price", 1, DummyRegressor().fit(pd.DataFrame(ROWS)[["tenure"]], [1.0, 2.0]), stage="production"
    )
    server = serve("price@production")
    with server.client() as c:
        r = c.post("/predict", json={"records": [{"tenure": 3}], "outputs": ["probabilities"]})
        assert r.status_code == 400 and "no predict_proba" in r.json()["error"]
        assert c.post("/predict", json={"records": [{"tenure": 3}]}).json()["predictions"] == [1.5]
