"""Every endpoint and format of a real `mlops serve`, and every bad request.

The MLflow and Open Inference Protocol payloads are the shapes their documentation gives:
MLflow's `dataframe_split` / `dataframe_records` / `instances` / `inputs` and CSV on
/invocations; V2's tensors `{name, shape, datatype, data}` on /v2/models/{name}/infer.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import httpx
import pytest
from servekit import ROW, Server

ROWS = [ROW, {"tenure": 40, "plan": "pro", "monthly_charges": 20.5}]


@pytest.fixture
def server(serve) -> Server:
    return serve("churn@production", "--max-body-mb", "0.05")


def expected(model_repo: Path, rows: list[dict]) -> list[int]:
    import pandas as pd

    model = pickle.loads((model_repo / "models" / "churn-v1.pkl").read_bytes())
    return model.predict(pd.DataFrame(rows)).tolist()


def test_every_endpoint_and_format(server: Server, model_repo: Path) -> None:
    want = expected(model_repo, ROWS)
    assert len(set(want)) == 2, "the two rows should get different classes, so order mistakes show"
    with server.client() as c:
        # own protocol: records and columns
        r = c.post("/predict", json={"records": ROWS})
        assert r.status_code == 200, r.text
        assert r.json() == {"model": "churn", "version": 1, "variant": "production", "predictions": want}
        assert r.headers["x-variant"] == "production" and r.headers["x-model-version"] == "1"
        r = c.post("/predict", json={"columns": {k: [row[k] for row in ROWS] for k in ROW}}, headers={"X-Request-ID": "abc"})
        assert r.json()["predictions"] == want and r.json()["request_id"] == "abc"

        # MLflow scoring protocol, as its docs give the payloads
        split = {"dataframe_split": {"columns": list(ROW), "data": [[row[k] for k in ROW] for row in ROWS]}}
        assert c.post("/invocations", json=split).json() == {"predictions": want}
        split_with_index = {"dataframe_split": {"index": [0, 1], "columns": list(ROW), "data": [[row[k] for k in ROW] for row in ROWS]}}
        assert c.post("/invocations", json=split_with_index).json() == {"predictions": want}
        assert c.post("/invocations", json={"dataframe_records": ROWS}).json() == {"predictions": want}
        assert c.post("/invocations", json={"instances": ROWS}).json() == {"predictions": want}
        assert c.post("/invocations", json={"inputs": {k: [row[k] for row in ROWS] for k in ROW}}).json() == {"predictions": want}
        assert c.post("/invocations", json={"inputs": [[row[k] for k in ROW] for row in ROWS]}).json() == {"predictions": want}
        assert c.post("/invocations", json={"dataframe_records": ROWS, "params": {}}).json() == {"predictions": want}
        csv = "tenure,plan,monthly_charges\n3,basic,80.0\n40,pro,20.5\n"
        r = c.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
        assert r.json() == {"predictions": want}, r.text
        assert c.get("/ping").status_code == 200
        assert c.get("/health").json()["status"] == "ok"
        from mlops import __version__

        r = c.get("/version")  # plain text, as MLflow's scoring server answers
        assert r.text == __version__ and r.headers["content-type"].startswith("text/plain")

        # Open Inference Protocol V2
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get("/v2").json()["name"] == "mlops"
        meta = c.get("/v2/models/churn").json()
        assert meta["name"] == "churn" and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "tenure", "datatype": "INT64", "shape": [-1]},
                                  {"name": "plan", "datatype": "BYTES", "shape": [-1]},
                                  {"name": "monthly_charges", "datatype": "FP64", "shape": [-1]}]
        assert c.get("/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
        infer = {"id": "42", "inputs": [
            {"name": "tenure", "shape": [2], "datatype": "INT64", "data": [3, 40]},
            {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
            {"name": "monthly_charges", "shape": [2, 1], "datatype": "FP32", "data": [[80.0], [20.5]]},
        ]}
        r = c.post("/v2/models/churn/infer", json=infer)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_name"] == "churn" and body["model_version"] == "1" and body["id"] == "42"
        assert body["outputs"] == [{"name": "prediction", "shape": [2], "datatype": "INT64", "data": want}]
        matrix = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "BYTES", "data": [3, "basic", 80.0, 40, "pro", 20.5]}]}
        assert c.post("/v2/models/churn/infer", json=matrix).json()["outputs"][0]["data"] == want
        assert c.post("/v2/models/churn/versions/1/infer", json=infer).json()["outputs"][0]["data"] == want
        assert c.get("/v2/models/churn/versions/1").json()["versions"] == ["1"]

        # metadata and metrics
        meta = c.get("/metadata").json()
        assert meta["model"] == "churn" and meta["version"] == 1 and meta["signature"]["inputs"][0] == {"name": "tenure", "dtype": "int64"}
        text = c.get("/metrics").text
    assert 'mlops_requests_total{model="churn",variant="production",version="1"}' in text
    assert "# TYPE mlops_request_latency_seconds histogram" in text
    assert 'mlops_request_latency_seconds_bucket{model="churn",variant="production",version="1",le="+Inf"}' in text
    count = [line for line in text.splitlines() if line.startswith("mlops_requests_total{")][0]
    assert int(count.rsplit(" ", 1)[1]) == 13  # 2 own + 8 MLflow + 3 V2 predictions


def test_every_bad_request_is_answered_with_every_problem(server: Server) -> None:
    with server.client() as c:
        r = c.post("/predict", json={"records": [{"tenure": "three", "plan": 7, "extra": 1}]})
        assert r.status_code == 400
        problems = r.json()["problems"]
        assert "missing column 'monthly_charges' (float64)" in problems
        assert any("unexpected column 'extra'" in p for p in problems)
        assert any("'tenure'" in p and "expected a whole number" in p for p in problems)
        assert any("'plan'" in p and "expected a string" in p for p in problems)
        assert len(problems) == 4

        r = c.post("/predict", json={"records": [ROW, {**ROW, "tenure": None}, {**ROW, "tenure": 2.5}]})
        assert r.status_code == 400
        assert any("null at row 1" in p for p in r.json()["problems"])
        assert any("row 2 is number 2.5" in p for p in r.json()["problems"])

        r = c.post("/predict", content=b'{"records": [{"tenure": 3,', headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
        r = c.post("/predict", json={"rows": [ROW]})
        assert r.status_code == 400 and "exactly one of 'records'" in r.json()["error"]
        r = c.post("/predict", json={"columns": {"tenure": [1, 2], "plan": ["a"], "monthly_charges": [1.0, 2.0]}})
        assert r.status_code == 400 and "differ in length" in r.json()["error"]

        # MLflow: its error shape
        r = c.post("/invocations", json={"dataframe_records": [{"tenure": "x", "plan": "basic", "monthly_charges": 1.0}]})
        assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST" and "tenure" in r.json()["message"]
        r = c.post("/invocations", json={"dataframe_split": {"columns": list(ROW), "data": [[1, 2]]}, "instances": []})
        assert r.status_code == 400 and "exactly one of the input fields" in r.json()["message"]
        r = c.post("/invocations", content=b"<xml/>", headers={"Content-Type": "application/xml"})
        assert r.status_code == 415
        r = c.post("/invocations", content=b"tenure,plan\n1,basic,3\n", headers={"Content-Type": "text/csv"})
        assert r.status_code == 400 and "CSV line 2" in r.json()["message"]

        # V2: its error shape
        r = c.post("/v2/models/churn/infer", json={"inputs": [{"name": "tenure", "shape": [2], "datatype": "INT64", "data": [1]}]})
        assert r.status_code == 400 and "shape [2] holds 2 value(s) but 'data' has 1" in r.json()["error"]
        r = c.post("/v2/models/churn/infer", json={"inputs": [
            {"name": "tenure", "shape": [1], "datatype": "BYTES", "data": ["3"]},
            {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
            {"name": "monthly_charges", "shape": [1], "datatype": "FP64", "data": [1.0]}]})
        assert r.status_code == 400 and "datatype BYTES does not fit column 'tenure'" in r.json()["error"]
        assert c.post("/v2/models/other/infer", json={"inputs": []}).status_code == 404
        assert c.post("/v2/models/churn/versions/9/infer", json={"inputs": [
            {"name": "tenure", "shape": [1], "datatype": "INT64", "data": [3]}]}).status_code in (400, 404)

        # a body over the limit (0.05 MB here): 413, before the model sees it
        big = {"records": [ROW] * 2000}
        r = c.post("/predict", json=big)
        assert r.status_code == 413 and "over the limit" in r.json()["error"]

        # an exception in the model (a plan it never saw): 500 with an error id, and the server keeps serving
        r = c.post("/predict", json={"records": [{**ROW, "plan": "platinum"}]})
        assert r.status_code == 500
        error_id = r.json()["error_id"]
        assert len(error_id) == 12 and error_id in r.json()["error"]
        r = c.post("/invocations", json={"dataframe_records": [{**ROW, "plan": "platinum"}]})
        assert r.status_code == 500 and r.json()["error_code"] == "INTERNAL_ERROR"
        assert c.post("/predict", json={"records": [ROW]}).status_code == 200
    assert error_id in server.stderr() and "unknown categories" in server.stderr()


def test_a_failing_request_in_a_batch_fails_alone(server: Server) -> None:
    """Concurrent requests are folded into one model call; one bad row must not fail the others."""
    import concurrent.futures

    def send(plan: str) -> int:
        return httpx.post(server.url + "/predict", json={"records": [{**ROW, "plan": plan}]}, timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(send, ["basic"] * 60 + ["platinum"] * 4 + ["pro"] * 60))
    assert codes.count(500) == 4 and codes.count(200) == 120
    with server.client() as c:
        text = c.get("/metrics").text
    batches = int([l for l in text.splitlines() if l.startswith("mlops_batches_total{")][0].rsplit(" ", 1)[1])
    assert batches >= 1


def test_no_endpoint_reads_a_file_named_by_the_request(server: Server, model_repo: Path) -> None:
    (model_repo / "secret.txt").write_text("do not serve me")
    with server.client() as c:
        for path in ("/../secret.txt", "/v2/models/..%2F..%2Fsecret.txt", "/v2/models/../../secret.txt/infer", "/secret.txt"):
            r = c.get(path)
            assert "do not serve me" not in r.text
            assert r.status_code in (404, 405)


def test_odd_and_hostile_bodies_get_a_400_not_a_crash(server: Server) -> None:
    tensors = [{"name": "tenure", "shape": [1], "datatype": "INT64", "data": [3]},
               {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
               {"name": "monthly_charges", "shape": [1], "datatype": "FP64", "data": [80.0]}]
    with server.client() as c:
        r = c.post("/v2/models/churn/infer", json={"inputs": tensors, "parameters": [1]})
        assert r.status_code == 400 and "'parameters' must be an object" in r.json()["error"], r.text
        r = c.post("/v2/models/churn/infer", json={"inputs": [{**tensors[0], "datatype": ["INT64"]}, *tensors[1:]]})
        assert r.status_code == 400 and "unknown datatype" in r.json()["error"], r.text
        deep = b"[" * 20_000 + b"]" * 20_000  # 40 KB, under the 0.05 MB limit
        for path in ("/predict", "/invocations", "/v2/models/churn/infer"):
            r = c.post(path, content=deep, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and "nested too deeply" in r.text, (path, r.status_code, r.text)
        r = c.post("/invocations", json={"dataframe_split": {"columns": ["tenure", "tenure", "plan"], "data": [[1, 2, "basic"]]}})
        assert r.status_code == 400 and "given twice" in r.json()["message"], r.text
        assert c.post("/predict", json={"records": [ROW]}).status_code == 200


@pytest.mark.parametrize("column,raw,why", [
    ("tenure", "1e23", "beyond int64's range"),
    ("tenure", "1" * 400, "beyond int64's range"),
    ("tenure", "1e300", "beyond int64's range"),
    ("tenure", "9223372036854775808", "beyond int64's range"),
    ("monthly_charges", "1e400", "not a finite float64 number"),
    ("monthly_charges", "1" * 400, "not a finite float64 number"),
])
def test_numbers_the_model_cannot_hold_are_a_400_naming_the_column_and_row(server: Server, column: str, raw: str, why: str) -> None:
    second = '{"tenure": 3, "plan": "basic", "monthly_charges": 80.0}'
    bad = second.replace('"tenure": 3', f'"tenure": {raw}') if column == "tenure" else second.replace("80.0", raw)
    body = f'{{"records": [{second}, {bad}]}}'.encode()
    with server.client() as c:
        r = c.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert f"column '{column}'" in r.json()["error"] and "row 1" in r.json()["error"] and why in r.json()["error"], r.text
        r = c.post("/invocations", content=b'{"dataframe_records": ' + body[len(b'{"records": '):], headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and why in r.json()["message"], r.text
    assert "Traceback" not in server.stderr()
