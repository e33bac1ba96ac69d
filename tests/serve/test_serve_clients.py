"""Clients as they are (issue 13): the payloads real clients produce, sent to a real `mlops serve`.

MLflow callers build bodies with pandas (`df.to_csv()` with its index column, `df.to_parquet()`,
`df.to_json(orient="split")`) and read MLflow's error codes; Open Inference Protocol callers use
tritonclient, whose defaults are the binary tensor data extension and numpy object arrays as
BYTES. Signature violations are a 400 naming the column and the row in every protocol.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from servekit import ROW, Server

tritonclient_http = pytest.importorskip("tritonclient.http")

ROWS = [ROW, {"tenure": 40, "plan": "pro", "monthly_charges": 20.5}]
PARQUET = "application/vnd.apache.parquet"


@pytest.fixture
def server(serve) -> Server:
    return serve()


def expected(model_repo: Path, rows: list[dict]) -> list[int]:
    model = pickle.loads((model_repo / "models" / "churn-v1.pkl").read_bytes())
    return model.predict(pd.DataFrame(rows)).tolist()


def frame(rows: list[dict] = ROWS) -> pd.DataFrame:
    return pd.DataFrame(rows)


# --- MLflow scoring clients ----------------------------------------------------------------------


def test_mlflow_bodies_as_pandas_writes_them(server: Server, model_repo: Path) -> None:
    want = expected(model_repo, ROWS)
    assert len(set(want)) == 2
    df = frame()
    with server.client() as c:
        # df.to_csv(): the index first, under an empty name
        assert df.to_csv().startswith(",tenure,")
        r = c.post("/invocations", content=df.to_csv(), headers={"Content-Type": "text/csv"})
        assert r.status_code == 200 and r.json() == {"predictions": want}, r.text
        r = c.post("/invocations", content=df.to_csv(index=False), headers={"Content-Type": "text/csv; charset=utf-8"})
        assert r.json() == {"predictions": want}, r.text
        # an index that is not 0..n-1 makes no difference
        shifted = df.set_index(pd.Index([17, 4]))
        assert c.post("/invocations", content=shifted.to_csv(), headers={"Content-Type": "text/csv"}).json() == {
            "predictions": want
        }
        # df.to_parquet(), with its default (range) index and with a real index column
        for body in (df.to_parquet(), shifted.to_parquet(), df.to_parquet(index=True), df.to_parquet(index=False)):
            r = c.post("/invocations", content=body, headers={"Content-Type": PARQUET})
            assert r.status_code == 200 and r.json() == {"predictions": want}, r.text
        # df.to_json(orient="split"), wrapped as MLflow's clients wrap it
        split = {"dataframe_split": json.loads(df.to_json(orient="split"))}
        assert "index" in split["dataframe_split"]
        assert c.post("/invocations", json=split).json() == {"predictions": want}
        records = {"dataframe_records": json.loads(df.to_json(orient="records"))}
        assert c.post("/invocations", json=records).json() == {"predictions": want}


def test_mlflow_error_codes_and_bodies_match_its_scoring_server(server: Server) -> None:
    with server.client() as c:
        # MLflow answers a refused content type with a 415 in plain text
        r = c.post("/invocations", content=b"<x/>", headers={"Content-Type": "application/xml"})
        assert r.status_code == 415 and r.headers["content-type"].startswith("text/plain")
        assert "only supports the following content types" in r.text and PARQUET in r.text
        r = c.post("/invocations", content=b"{}", headers={"Content-Type": "application/json; charset=latin-1"})
        assert r.status_code == 415 and r.text == "The scoring server only supports UTF-8"
        r = c.post("/invocations", content=b"{}", headers={"Content-Type": "application/json; format=pandas-split"})
        assert r.status_code == 415 and "Unrecognized content type parameters: format" in r.text
        # unreadable input: BAD_REQUEST
        for body, content_type in (
            (b'{"dataframe_records": [', "application/json"),
            (b'{"records": []}', "application/json"),
            (b"[1, 2]", "application/json"),
            (b"PAR1 not really parquet", PARQUET),
            (frame().to_parquet()[:-20], PARQUET),
        ):
            r = c.post("/invocations", content=body, headers={"Content-Type": content_type})
            assert r.status_code == 400, (body, r.text)
            assert r.headers["content-type"] == "application/json"
            assert r.json()["error_code"] == "BAD_REQUEST" and r.json()["message"], r.json()
        # input the signature refuses: INVALID_PARAMETER_VALUE, naming the column and the row
        r = c.post("/invocations", json={"dataframe_records": [ROW, {**ROW, "tenure": "x"}]})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "'tenure'" in r.json()["message"] and "row 1" in r.json()["message"]
        # the model's own failure stays a 500 INTERNAL_ERROR (MLflow says 400): it counts against a canary
        r = c.post("/invocations", json={"dataframe_records": [{**ROW, "plan": "platinum"}]})
        assert r.status_code == 500 and r.json()["error_code"] == "INTERNAL_ERROR"


def test_a_large_parquet_body_is_bounded_by_the_body_limit(serve) -> None:
    server = serve("churn@production", "--max-body-mb", "0.05")
    big = pd.DataFrame({"tenure": [3] * 200_000, "plan": ["basic"] * 200_000, "monthly_charges": [80.0] * 200_000})
    body = big.to_parquet()
    assert len(body) < 50_000, "compresses under the limit: what it decodes to must be refused"
    r = httpx.post(server.url + "/invocations", content=body, headers={"Content-Type": PARQUET}, timeout=60)
    assert r.status_code == 413 and "600000 cells" in r.json()["message"], r.text[:500]


def signature_violations() -> list[tuple[str, dict, str]]:
    """(what, a row, the words that must name it): a null where a value is needed, values of the wrong type."""
    return [
        ("null integer", {**ROW, "tenure": None}, "null at row 1"),
        ("text in an integer column", {**ROW, "tenure": "three"}, "row 1"),
        ("fraction in an integer column", {**ROW, "tenure": 2.5}, "row 1"),
        ("null string", {**ROW, "plan": None}, "null at row 1"),
        ("number in a string column", {**ROW, "plan": 7}, "row 1"),
        ("text in a number column", {**ROW, "monthly_charges": "lots"}, "row 1"),
    ]


def test_signature_violations_are_a_400_naming_column_and_row_in_every_protocol(server: Server) -> None:
    for what, bad, words in signature_violations():
        column = next(k for k in ROW if bad[k] != ROW[k])
        rows = [ROW, bad]
        with server.client() as c:
            answers = {
                "own": c.post("/predict", json={"records": rows}),
                "mlflow records": c.post("/invocations", json={"dataframe_records": rows}),
                "mlflow split": c.post(
                    "/invocations",
                    json={"dataframe_split": {"columns": list(ROW), "data": [list(r.values()) for r in rows]}},
                ),
                "v2 matrix": c.post(
                    "/v2/models/churn/infer",
                    json={
                        "inputs": [
                            {
                                "name": "x",
                                "shape": [2, 3],
                                "datatype": "BYTES",
                                "data": [list(r.values()) for r in rows],
                            }
                        ]
                    },
                ),
            }
            if what != "number in a string column":  # CSV has no numbers apart from text: "7" is a fine plan
                answers["mlflow csv"] = c.post(
                    "/invocations", content=pd.DataFrame(rows).to_csv(), headers={"Content-Type": "text/csv"}
                )
        for protocol, r in answers.items():
            assert r.status_code == 400, (what, protocol, r.status_code, r.text)
            text = json.dumps(r.json())
            assert f"'{column}'" in text and words in text, (what, protocol, text)


def test_parquet_nulls_and_types_are_checked_by_the_signature(server: Server) -> None:
    nullable = pd.DataFrame(
        {"tenure": pd.array([3, None], dtype="Int64"), "plan": ["basic", "pro"], "monthly_charges": [80.0, 1.0]}
    )
    wrong = pd.DataFrame({"tenure": [3.5, 4.0], "plan": ["basic", "pro"], "monthly_charges": [80.0, 1.0]})
    missing_float = pd.DataFrame({"tenure": [3, 4], "plan": ["basic", "pro"], "monthly_charges": [80.0, np.nan]})
    with server.client() as c:
        r = c.post("/invocations", content=nullable.to_parquet(), headers={"Content-Type": PARQUET})
        assert r.status_code == 400 and "'tenure'" in r.json()["message"] and "null at row 1" in r.json()["message"]
        r = c.post("/invocations", content=wrong.to_parquet(), headers={"Content-Type": PARQUET})
        assert r.status_code == 400 and "'tenure'" in r.json()["message"] and "row 0" in r.json()["message"]
        # a float column's NaN is a missing value, as pandas keeps it: the model gets what JSON's null gives it
        r = c.post("/invocations", content=missing_float.to_parquet(), headers={"Content-Type": PARQUET})
        as_json = c.post("/invocations", json={"dataframe_records": [ROW, {**ROW, "monthly_charges": None}]})
        assert r.status_code == as_json.status_code and "NaN" not in r.text, r.text


# --- Open Inference Protocol V2 with tritonclient -------------------------------------------------


def triton(server: Server):
    return tritonclient_http.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=30)


def column_inputs(binary: bool) -> list:
    http = tritonclient_http
    tenure = http.InferInput("tenure", [2], "INT64")
    tenure.set_data_from_numpy(np.array([3, 40], dtype=np.int64), binary_data=binary)
    plan = http.InferInput("plan", [2], "BYTES")
    plan.set_data_from_numpy(np.array(["basic", "pro"], dtype=object), binary_data=binary)
    charges = http.InferInput("monthly_charges", [2, 1], "FP32")
    charges.set_data_from_numpy(np.array([[80.0], [20.5]], dtype=np.float32), binary_data=binary)
    return [tenure, plan, charges]


def test_tritonclient_infers_with_its_defaults_and_without_binary_data(server: Server, model_repo: Path) -> None:
    want = expected(model_repo, ROWS)
    client = triton(server)
    try:
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        assert client.is_server_ready() and client.is_model_ready("churn")
        for binary in (True, False):
            result = client.infer("churn", column_inputs(binary))
            assert result.as_numpy("prediction").tolist() == want, binary
            requested = [tritonclient_http.InferRequestedOutput("prediction", binary_data=binary)]
            result = client.infer("churn", column_inputs(binary), outputs=requested, request_id="r-1")
            assert result.as_numpy("prediction").tolist() == want and result.get_response()["id"] == "r-1"
            # one BYTES [N, K] tensor of a numpy object array: mixed-type columns, sent as text
            matrix = tritonclient_http.InferInput("input-0", [2, 3], "BYTES")
            matrix.set_data_from_numpy(
                np.array([[3, "basic", 80.0], [40, "pro", 20.5]], dtype=object), binary_data=binary
            )
            assert client.infer("churn", [matrix]).as_numpy("prediction").tolist() == want, binary
    finally:
        client.close()


def test_tritonclient_errors_are_the_protocols_json(server: Server) -> None:
    client = triton(server)
    try:
        unknown = [tritonclient_http.InferRequestedOutput("logits")]
        with pytest.raises(tritonclient_http.InferenceServerException) as info:
            client.infer("churn", column_inputs(True), outputs=unknown)
        assert info.value.status() == "400" and "unknown output 'logits'" in info.value.message()
        # a datatype the column cannot take (tritonclient checks the numpy dtype, not the signature)
        flag = tritonclient_http.InferInput("tenure", [2], "BOOL")
        flag.set_data_from_numpy(np.array([True, False]))
        with pytest.raises(tritonclient_http.InferenceServerException) as info:
            client.infer("churn", [flag, *column_inputs(True)[1:]])
        assert info.value.status() == "400" and "'tenure'" in info.value.message()
        # a text cell that is no number, in a BYTES matrix: the column and the row
        matrix = tritonclient_http.InferInput("input-0", [2, 3], "BYTES")
        matrix.set_data_from_numpy(np.array([[3, "basic", 80.0], ["many", "pro", 20.5]], dtype=object))
        with pytest.raises(tritonclient_http.InferenceServerException) as info:
            client.infer("churn", [matrix])
        assert info.value.status() == "400" and "'tenure'" in info.value.message() and "row 1" in info.value.message()
        # a route this server does not have: the protocol's JSON error, which tritonclient reads
        with pytest.raises(tritonclient_http.InferenceServerException) as info:
            client.get_log_settings()
        assert info.value.status() == "404" and "no such route" in info.value.message()
        with pytest.raises(tritonclient_http.InferenceServerException) as info:
            client.get_model_metadata("other")
        assert info.value.status() == "404" and "unknown model 'other'" in info.value.message()
    finally:
        client.close()


DATATYPE_CASES = [
    ("INT64", [3, 1.5], "element 1"),
    ("INT64", [3, True], "element 1"),
    ("INT32", [3, 2**40], "element 1"),
    ("UINT8", [-1, 3], "element 0"),
    ("FP32", [80.0, "x"], "element 1"),
    ("FP64", [80.0, False], "element 1"),
    ("BOOL", [True, 2], "element 1"),
    ("BYTES", ["basic", {"a": 1}], "element 1"),
]


def test_v2_tensor_datatypes_are_checked_against_their_values(server: Server) -> None:
    for datatype, data, words in DATATYPE_CASES:
        names = {"INT64": "tenure", "INT32": "tenure", "UINT8": "tenure", "BOOL": "tenure", "BYTES": "plan"}
        name = names.get(datatype, "monthly_charges")
        inputs = {
            "tenure": {"name": "tenure", "shape": [2], "datatype": "INT64", "data": [3, 40]},
            "plan": {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
            "monthly_charges": {"name": "monthly_charges", "shape": [2], "datatype": "FP64", "data": [80.0, 20.5]},
        }
        inputs[name] = {"name": name, "shape": [2], "datatype": datatype, "data": data}
        r = httpx.post(server.url + "/v2/models/churn/infer", json={"inputs": list(inputs.values())}, timeout=30)
        assert r.status_code == 400, r.text
        assert (
            f"'{name}'" in r.json()["error"]
            and f"datatype {datatype}" in r.json()["error"]
            and words in r.json()["error"]
        )


def test_v2_unknown_routes_answer_json(server: Server) -> None:
    with server.client() as c:
        for method, path in (("GET", "/v2/repository/index"), ("POST", "/v2/models/churn/load"), ("GET", "/v2/nope")):
            r = c.request(method, path)
            assert r.status_code == 404 and r.headers["content-type"] == "application/json", (path, r.text)
            assert "no such route" in r.json()["error"]
        r = c.get("/v2/models/churn/infer")  # the route exists for POST only
        assert r.status_code == 405 and "error" in r.json() and "POST" in r.headers["allow"]
        assert c.get("/v2").json()["extensions"] == ["binary_tensor_data"]


def test_binary_input_read_per_the_signature(server: Server, model_repo: Path) -> None:
    """The BYTES matrix's text cells become the signature's types before the check and the model."""
    want = expected(model_repo, ROWS)
    body = {
        "inputs": [
            {"name": "x", "shape": [2, 3], "datatype": "BYTES", "data": ["3", "basic", "80", "40", "pro", "20.5"]}
        ]
    }
    r = httpx.post(server.url + "/v2/models/churn/infer", json=body, timeout=30)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == want, r.text
