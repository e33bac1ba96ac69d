"""Every endpoint and format of a real `mlops serve`, and every bad request.

The MLflow and Open Inference Protocol payloads are the shapes their documentation gives:
MLflow's `dataframe_split` / `dataframe_records` / `instances` / `inputs` and CSV on
/invocations; V2's tensors `{name, shape, datatype, data}` on /v2/models/{name}/infer.
"""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import httpx
import pytest
from servekit import ROW, Server, fit_pipeline, register, slow, training_frame, unanswerable, wait_for

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
        r = c.post(
            "/predict", json={"columns": {k: [row[k] for row in ROWS] for k in ROW}}, headers={"X-Request-ID": "abc"}
        )
        assert r.json()["predictions"] == want and r.json()["request_id"] == "abc"

        # MLflow scoring protocol, as its docs give the payloads
        split = {"dataframe_split": {"columns": list(ROW), "data": [[row[k] for k in ROW] for row in ROWS]}}
        assert c.post("/invocations", json=split).json() == {"predictions": want}
        split_with_index = {
            "dataframe_split": {"index": [0, 1], "columns": list(ROW), "data": [[row[k] for k in ROW] for row in ROWS]}
        }
        assert c.post("/invocations", json=split_with_index).json() == {"predictions": want}
        assert c.post("/invocations", json={"dataframe_records": ROWS}).json() == {"predictions": want}
        assert c.post("/invocations", json={"instances": ROWS}).json() == {"predictions": want}
        assert c.post("/invocations", json={"inputs": {k: [row[k] for row in ROWS] for k in ROW}}).json() == {
            "predictions": want
        }
        assert c.post("/invocations", json={"inputs": [[row[k] for k in ROW] for row in ROWS]}).json() == {
            "predictions": want
        }
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
        assert meta["inputs"] == [
            {"name": "tenure", "datatype": "INT64", "shape": [-1]},
            {"name": "plan", "datatype": "BYTES", "shape": [-1]},
            {"name": "monthly_charges", "datatype": "FP64", "shape": [-1]},
        ]
        assert c.get("/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
        infer = {
            "id": "42",
            "inputs": [
                {"name": "tenure", "shape": [2], "datatype": "INT64", "data": [3, 40]},
                {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
                {"name": "monthly_charges", "shape": [2, 1], "datatype": "FP32", "data": [[80.0], [20.5]]},
            ],
        }
        r = c.post("/v2/models/churn/infer", json=infer)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_name"] == "churn" and body["model_version"] == "1" and body["id"] == "42"
        assert body["outputs"] == [{"name": "prediction", "shape": [2], "datatype": "INT64", "data": want}]
        matrix = {
            "inputs": [
                {"name": "input-0", "shape": [2, 3], "datatype": "BYTES", "data": [3, "basic", 80.0, 40, "pro", 20.5]}
            ]
        }
        assert c.post("/v2/models/churn/infer", json=matrix).json()["outputs"][0]["data"] == want
        assert c.post("/v2/models/churn/versions/1/infer", json=infer).json()["outputs"][0]["data"] == want
        assert c.get("/v2/models/churn/versions/1").json()["versions"] == ["1"]

        # metadata and metrics
        meta = c.get("/metadata").json()
        assert (
            meta["model"] == "churn"
            and meta["version"] == 1
            and meta["signature"]["inputs"][0] == {"name": "tenure", "dtype": "int64"}
        )
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
        r = c.post(
            "/invocations", json={"dataframe_records": [{"tenure": "x", "plan": "basic", "monthly_charges": 1.0}]}
        )
        # as MLflow's server: input the signature refuses is INVALID_PARAMETER_VALUE, unreadable input BAD_REQUEST
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "tenure" in r.json()["message"]
        r = c.post("/invocations", json={"dataframe_split": {"columns": list(ROW), "data": [[1, 2]]}, "instances": []})
        assert r.status_code == 400 and "exactly one of the input fields" in r.json()["message"]
        r = c.post("/invocations", content=b"<xml/>", headers={"Content-Type": "application/xml"})
        assert r.status_code == 415
        r = c.post("/invocations", content=b"tenure,plan\n1,basic,3\n", headers={"Content-Type": "text/csv"})
        assert r.status_code == 400 and "CSV line 2" in r.json()["message"]

        # V2: its error shape
        r = c.post(
            "/v2/models/churn/infer",
            json={"inputs": [{"name": "tenure", "shape": [2], "datatype": "INT64", "data": [1]}]},
        )
        assert r.status_code == 400 and "shape [2] holds 2 value(s) but 'data' has 1" in r.json()["error"]
        r = c.post(
            "/v2/models/churn/infer",
            json={
                "inputs": [
                    {"name": "tenure", "shape": [1], "datatype": "BYTES", "data": ["3"]},
                    {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
                    {"name": "monthly_charges", "shape": [1], "datatype": "FP64", "data": [1.0]},
                ]
            },
        )
        assert r.status_code == 400 and "datatype BYTES does not fit column 'tenure'" in r.json()["error"]
        assert c.post("/v2/models/other/infer", json={"inputs": []}).status_code == 404
        r = c.post(
            "/v2/models/churn/versions/9/infer",
            json={"inputs": [{"name": "tenure", "shape": [1], "datatype": "INT64", "data": [3]}]},
        )
        assert r.status_code == 404 and "version 9 of churn is not deployed" in r.json()["error"], r.text

        # a body over the limit (0.05 MB here): 413, before the model sees it
        big = {"records": [ROW] * 2000}
        r = c.post("/predict", json=big)
        assert r.status_code == 413 and "over the limit" in r.json()["error"]
        # the same without Content-Length (Transfer-Encoding: chunked): counted while it is read
        encoded = json.dumps(big).encode()
        r = c.post(
            "/predict",
            content=(encoded[i : i + 8192] for i in range(0, len(encoded), 8192)),
            headers={"Content-Type": "application/json"},
        )
        assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
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
    batches = int([line for line in text.splitlines() if line.startswith("mlops_batches_total{")][0].rsplit(" ", 1)[1])
    rows = int(
        [line for line in text.splitlines() if line.startswith("mlops_batched_rows_total{")][0].rsplit(" ", 1)[1]
    )
    assert rows == 124  # every request's row went through a model call (a failed batch's re-runs are not counted)
    assert batches < 124, f"{batches} model calls for 124 concurrent requests: nothing was folded"


def test_no_endpoint_reads_a_file_named_by_the_request(server: Server, model_repo: Path) -> None:
    (model_repo / "secret.txt").write_text("do not serve me")
    with server.client() as c:
        for path in (
            "/../secret.txt",
            "/v2/models/..%2F..%2Fsecret.txt",
            "/v2/models/../../secret.txt/infer",
            "/secret.txt",
        ):
            r = c.get(path)
            assert "do not serve me" not in r.text
            assert r.status_code in (404, 405)


def test_odd_and_hostile_bodies_get_a_400_not_a_crash(server: Server) -> None:
    tensors = [
        {"name": "tenure", "shape": [1], "datatype": "INT64", "data": [3]},
        {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
        {"name": "monthly_charges", "shape": [1], "datatype": "FP64", "data": [80.0]},
    ]
    with server.client() as c:
        r = c.post("/v2/models/churn/infer", json={"inputs": tensors, "parameters": [1]})
        assert r.status_code == 400 and "'parameters' must be an object" in r.json()["error"], r.text
        r = c.post("/v2/models/churn/infer", json={"inputs": [{**tensors[0], "datatype": ["INT64"]}, *tensors[1:]]})
        assert r.status_code == 400 and "unknown datatype" in r.json()["error"], r.text
        deep = b"[" * 20_000 + b"]" * 20_000  # 40 KB, under the 0.05 MB limit
        for path in ("/predict", "/invocations", "/v2/models/churn/infer"):
            r = c.post(path, content=deep, headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and "nested too deeply" in r.text, (path, r.status_code, r.text)
        r = c.post(
            "/invocations",
            json={"dataframe_split": {"columns": ["tenure", "tenure", "plan"], "data": [[1, 2, "basic"]]}},
        )
        assert r.status_code == 400 and "given twice" in r.json()["message"], r.text
        assert c.post("/predict", json={"records": [ROW]}).status_code == 200


@pytest.mark.parametrize(
    "column,raw,why",
    [
        ("tenure", "1e23", "beyond int64's range"),
        ("tenure", "1" * 400, "beyond int64's range"),
        ("tenure", "1e300", "beyond int64's range"),
        ("tenure", "9223372036854775808", "beyond int64's range"),
        ("monthly_charges", "1e400", "not a finite float64 number"),
        ("monthly_charges", "1" * 400, "not a finite float64 number"),
    ],
)
def test_numbers_the_model_cannot_hold_are_a_400_naming_the_column_and_row(
    server: Server, column: str, raw: str, why: str
) -> None:
    second = '{"tenure": 3, "plan": "basic", "monthly_charges": 80.0}'
    bad = second.replace('"tenure": 3', f'"tenure": {raw}') if column == "tenure" else second.replace("80.0", raw)
    body = f'{{"records": [{second}, {bad}]}}'.encode()
    with server.client() as c:
        r = c.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert (
            f"column '{column}'" in r.json()["error"] and "row 1" in r.json()["error"] and why in r.json()["error"]
        ), r.text
        r = c.post(
            "/invocations",
            content=b'{"dataframe_records": ' + body[len(b'{"records": ') :],
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and why in r.json()["message"], r.text
    assert "Traceback" not in server.stderr()


def metric(server: Server, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    return float([line for line in text.splitlines() if line.startswith(name + "{")][0].rsplit(" ", 1)[1])


def in_background(send, count: int) -> list[threading.Thread]:
    """``count`` requests, each in a thread of its own (their answers are not looked at)."""
    threads = [threading.Thread(target=send, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def quietly_post(url: str, timeout: float = 30) -> None:
    try:
        httpx.post(url + "/predict", json={"records": [ROW]}, timeout=timeout)
    except httpx.HTTPError:
        pass


def test_a_full_queue_is_a_503_with_retry_after(serve, model_repo: Path, pipelines) -> None:
    register(model_repo, "churn", 4, slow(pickle.loads(pipelines["base"]), 3.0), signature=False)
    server = serve("churn:4", "--max-batch", "1", "--max-queue", "2")
    for count in (1, 2, 3):  # one in the model, then two queued: waited for, not slept for
        in_background(lambda: quietly_post(server.url), 1)
        wait_for(
            lambda count=count: metric(server, "mlops_requests_in_flight") == count,
            what=f"{count} request(s) in flight",
        )
    with server.client() as c:
        r = c.post("/predict", json={"records": [ROW]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "queue of churn v4 is full" in r.json()["error"]
        r = c.post("/invocations", json={"dataframe_records": [ROW]})
        assert (
            r.status_code == 503
            and r.headers["retry-after"] == "1"
            and r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        )
    assert metric(server, "mlops_overload_rejections_total") == 2


def test_a_request_that_times_out_is_a_504_and_costs_no_model_time(serve, model_repo: Path, pipelines) -> None:
    register(model_repo, "churn", 4, slow(pickle.loads(pipelines["base"]), 3.0), signature=False)
    server = serve("churn:4", "--max-batch", "1", "--timeout", "300ms")
    results: list[httpx.Response] = []
    threads = in_background(
        lambda: results.append(httpx.post(server.url + "/predict", json={"records": [ROW]}, timeout=30)), 5
    )
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in results] == [504] * 5, [r.text for r in results]
    assert "longer than 0.3 s" in results[0].json()["error"]
    # one request was in the model when its time ran out; the four queued behind it left the queue unpredicted
    assert metric(server, "mlops_queue_depth") == 0
    assert metric(server, "mlops_abandoned_requests_total") == 4
    wait_for(lambda: metric(server, "mlops_requests_in_flight") == 0, what="no request in flight")
    status = httpx.get(server.url + "/health").json()
    assert status["status"] == "ok"
    wait_for(
        lambda: metric(server, "mlops_batches_total") == 1 and metric(server, "mlops_batched_rows_total") == 1,
        timeout=30,
        what="the one model call to finish",
    )


def test_a_request_whose_client_went_away_costs_no_model_time(serve, model_repo: Path, pipelines) -> None:
    register(model_repo, "churn", 4, slow(pickle.loads(pipelines["base"]), 3.0), signature=False)
    server = serve("churn:4", "--max-batch", "1", "--timeout", "60s")
    in_background(lambda: quietly_post(server.url), 1)
    wait_for(lambda: metric(server, "mlops_requests_in_flight") == 1, what="the first request in the model")
    for _ in range(3):  # each gives up after 0.3 s and closes its connection
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/predict", json={"records": [ROW]}, timeout=httpx.Timeout(30, read=0.3))
    wait_for(
        lambda: metric(server, "mlops_abandoned_requests_total") == 3,
        what="the three abandoned requests to leave the queue",
    )
    assert metric(server, "mlops_queue_depth") == 0 and metric(server, "mlops_client_disconnects_total") == 3
    wait_for(lambda: metric(server, "mlops_requests_in_flight") == 0, timeout=30, what="the first request to finish")
    assert metric(server, "mlops_batches_total") == 1


def test_an_unexpected_failure_is_a_500_with_an_error_id_in_each_protocols_shape(serve, model_repo: Path) -> None:
    register(
        model_repo, "churn", 4, unanswerable(), signature=False
    )  # its predictions are complex numbers: no JSON for them
    server = serve("churn:4")
    tensors = [
        {"name": k, "shape": [1], "datatype": t, "data": [ROW[k]]}
        for k, t in (("tenure", "INT64"), ("plan", "BYTES"), ("monthly_charges", "FP64"))
    ]
    with server.client() as c:
        own = c.post("/predict", json={"records": [ROW]})
        mlflow = c.post("/invocations", json={"dataframe_records": [ROW]})
        v2 = c.post("/v2/models/churn/infer", json={"inputs": tensors})
        assert c.get("/ping").status_code == 200  # still serving
    for r in (own, mlflow, v2):
        assert r.status_code == 500 and r.headers["content-type"] == "application/json", r.text
        assert len(r.json()["error_id"]) == 12 and r.json()["error_id"] in server.stderr()
    assert set(own.json()) == {"error", "problems", "error_id"} and own.json()["error_id"] in own.json()["error"]
    assert mlflow.json()["error_code"] == "INTERNAL_ERROR" and mlflow.json()["error_id"] in mlflow.json()["message"]
    assert "TypeError" in v2.json()["error"] and v2.json()["error_id"] in v2.json()["error"]


def _tensor_bytes(datatype: str, values: list) -> bytes:
    import struct

    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    return struct.pack("<" + {"INT64": "q", "FP32": "f", "FP64": "d", "BOOL": "?"}[datatype] * len(values), *values)


def test_v2_binary_tensor_data_in_and_out(serve, model_repo: Path) -> None:
    """The binary tensor data extension, framed as its specification (and tritonclient, by default) does."""
    import numpy as np

    server = serve()
    rows = [ROW, {"tenure": 40, "plan": "pro", "monthly_charges": 20.5}]
    want = expected(model_repo, rows)
    inputs, blobs = [], []
    for name, datatype in (("tenure", "INT64"), ("plan", "BYTES"), ("monthly_charges", "FP32")):
        blob = _tensor_bytes(datatype, [row[name] for row in rows])
        inputs.append({"name": name, "shape": [2], "datatype": datatype, "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    for binary_out in (False, True):
        head = json.dumps({"id": "b1", "inputs": inputs, "parameters": {"binary_data_output": binary_out}}).encode()
        r = httpx.post(
            server.url + "/v2/models/churn/infer",
            content=head + b"".join(blobs),
            headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))},
        )
        assert r.status_code == 200, r.text
        if not binary_out:
            assert r.json()["outputs"][0]["data"] == want and r.json()["id"] == "b1"
            continue
        length = int(r.headers["inference-header-content-length"])
        answer = json.loads(r.content[:length])
        output = answer["outputs"][0]
        assert output["datatype"] == "INT64" and output["shape"] == [2] and "data" not in output
        assert output["parameters"]["binary_data_size"] == len(r.content) - length == 16
        assert np.frombuffer(r.content[length:], dtype="<i8").tolist() == want
    head = json.dumps({"inputs": inputs}).encode()
    r = httpx.post(
        server.url + "/v2/models/churn/infer",
        content=head + b"".join(blobs)[:-3],
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert r.status_code == 400 and "runs past the end of the body" in r.json()["error"], r.text


def test_a_canary_is_read_with_its_own_signature(serve, model_repo: Path) -> None:
    """Positional payloads and CSV cells are read as the variant that answers them declares its columns."""
    import pandas as pd

    from mlops import registry
    from mlops.repo.repo import Repo

    frame = training_frame()[["plan", "monthly_charges", "tenure"]].astype(
        {"tenure": "float64"}
    )  # another order, float tenure
    model = fit_pipeline()
    model.fit(frame, (frame["tenure"] < 12).astype(int))
    (model_repo / "models" / "v4.pkl").write_bytes(pickle.dumps(model))
    frame.head(50).to_parquet(model_repo / "models" / "train-v4.parquet")
    registry.register(
        Repo(model_repo),
        "churn",
        model_repo / "models" / "v4.pkl",
        signature_from=model_repo / "models" / "train-v4.parquet",
        actor="tests",
    )
    server = serve()
    from servekit import mlops

    r = mlops(model_repo, "deploy", "churn", "--canary", "4", "--weight", "100", "--max-error-rate", "1")
    assert "v4 takes columns plan, monthly_charges, tenure" in r.stderr and "name their columns" in r.stderr
    wait_for(lambda: httpx.get(server.url + "/health").json().get("canary"), what="the canary")
    want = model.predict(pd.DataFrame([{"plan": "basic", "monthly_charges": 80.0, "tenure": 3.5}])).tolist()
    with server.client() as c:
        r = c.post(
            "/invocations",
            content="plan,monthly_charges,tenure\nbasic,80.0,3.5\n",
            headers={"Content-Type": "text/csv"},
        )
        assert r.status_code == 200 and r.json() == {"predictions": want} and r.headers["x-variant"] == "canary", r.text
        r = c.post("/invocations", json={"dataframe_split": {"data": [["basic", 80.0, 3.5]]}})
        assert r.status_code == 200 and r.json() == {"predictions": want}, r.text
        matrix = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": ["basic", 80.0, 3.5]}]}
        r = c.post("/v2/models/churn/versions/4/infer", json=matrix)
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == want, r.text
        # and production, reached by its version, still reads its own order
        r = c.post(
            "/v2/models/churn/versions/1/infer",
            json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": [3, "basic", 80.0]}]},
        )
        assert r.status_code == 200 and r.headers["x-variant"] == "production", r.text


def test_a_large_body_is_read_off_the_event_loop_and_answered_in_full(serve, model_repo: Path) -> None:
    server = serve()
    frame = training_frame(rows=3000, seed=4)
    records = frame.to_dict(orient="records")
    body = json.dumps({"records": records}).encode()
    assert len(body) > 64 * 1024  # over the size parsed in a thread
    with server.client() as c:
        r = c.post("/predict", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected(model_repo, records)
        bad = json.dumps({"records": [*records[:-1], {**records[-1], "tenure": "x"}]}).encode()
        r = c.post("/predict", content=bad, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "row 2999" in r.json()["error"]
