"""End to end: a model trained on a training set from the store, registered (the service and hashes
in its lineage), served with entity keys by a real `mlops serve`: the same predictions as the
offline pipeline for the training set built as of now; missing features and direct values refused."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from servekit import start_server  # noqa: E402

pytest.importorskip("duckdb")

FEATURES = """\
format: 1
entities:
  customer: {join_keys: [customer_id], value_type: int64}
sources:
  orders: {path: data/orders.parquet, timestamp_field: event_ts}
feature_views:
  customer_stats:
    entities: [customer]
    source: orders
    ttl: 30d
    schema: {total_purchases: int64, avg_order_value: float64}
feature_services:
  churn_v2:
    features: [customer_stats]
    defaults: {avg_order_value: 0.0}
"""


@pytest.mark.timeout(240)
def test_served_with_entity_keys_matches_the_offline_training_set(repo, cli) -> None:
    from sklearn.linear_model import LogisticRegression

    root = repo.root
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    customers = list(range(1, 41))
    rows = []
    for c in customers:
        for days, shift in ((10, 0), (5, 7), (1, 13)):
            rows.append((c, now - dt.timedelta(days=days), (c * 3 + shift) % 17, float((c * 11 + shift * 5) % 97)))
    (root / "data").mkdir()
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array([r[0] for r in rows], pa.int64()),
                "event_ts": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
                "total_purchases": pa.array([r[2] for r in rows], pa.int64()),
                "avg_order_value": pa.array([r[3] for r in rows], pa.float64()),
            }
        ),
        root / "data" / "orders.parquet",
    )
    (root / "features.yaml").write_text(FEATURES)
    cli("add", "data/orders.parquet")

    def training_set(at: dt.datetime, name: str) -> pa.Table:
        times = pa.array([at] * len(customers), pa.timestamp("us", tz="UTC"))
        pq.write_table(
            pa.table({"customer_id": customers, "event_timestamp": times}), root / f"{name}-entities.parquet"
        )
        cli("features", "get-training-set", f"{name}-entities.parquet", "-s", "churn_v2", "-o", f"{name}.parquet")
        return pq.read_table(root / f"{name}.parquet")

    train = training_set(now - dt.timedelta(days=3), "train").to_pandas()
    names = ["total_purchases", "avg_order_value"]
    model = LogisticRegression(max_iter=500).fit(train[names], (train["avg_order_value"] > 45).astype(int))
    (root / "model.pkl").write_bytes(pickle.dumps(model))

    cli("register", "churn", "model.pkl", "--signature-from", "train.parquet")
    lineage = json.loads(cli("lineage", "churn:1", "--json").stdout)
    assert lineage["training_set"]["service"] == "churn_v2"
    assert set(lineage["training_set"]["sources"]) == {"orders"}
    assert "feature service `churn_v2`" in cli("card", "churn:1").stdout
    from mlops import registry

    assert registry.resolve(repo, "churn:1").signature["feature_service"] == "churn_v2"
    registry.promote(repo, "churn", 1, "production", reason="test", actor="tests")
    cli("features", "materialize", "-s", "churn_v2")

    server = start_server(root, "churn@production")
    try:
        with server.client() as c:
            r = c.post("/predict", json={"records": [{"customer_id": k} for k in customers]})
            assert r.status_code == 200, r.text
            served = r.json()["predictions"]
            # a customer the store does not know: avg_order_value has a default, total_purchases none
            r = c.post("/predict", json={"records": [{"customer_id": 999}]})
            assert r.status_code == 400
            text = json.dumps(r.json())
            assert "customer_stats:total_purchases for customer_id=999" in text
            assert "avg_order_value" not in text
            # the Open Inference Protocol: one tensor of entity keys
            tensor = {"name": "customer_id", "shape": [2], "datatype": "INT64", "data": customers[:2]}
            r = c.post("/v2/models/churn/infer", json={"inputs": [tensor]})
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == served[:2]
            # a key of the wrong type is the caller's mistake (400), 42.0 is 42
            r = c.post("/predict", json={"records": [{"customer_id": "abc"}]})
            assert r.status_code == 400 and "not a whole number" in r.text
            r = c.post("/predict", json={"records": [{"customer_id": 1.0}]})
            assert r.status_code == 200 and r.json()["predictions"] == served[:1]
            # sending the features themselves is refused unless the service allows it
            r = c.post("/predict", json={"records": [{"customer_id": 1, "total_purchases": 3}]})
            assert r.status_code == 400 and "allow_direct" in r.text
        assert server.stop() == 0
    finally:
        server.kill()
    offline = training_set(dt.datetime.now(dt.timezone.utc), "now").to_pandas()
    assert served == [int(v) for v in model.predict(offline[names])]
    assert set(served) == {0, 1}  # both answers occur: the comparison can fail
    # the request log holds the feature values the model was given
    from mlops.serve.requestlog import log_files

    logged = pa.concat_tables([pq.read_table(p) for p in log_files(repo, "churn")]).to_pandas()
    assert list(logged["total_purchases"][: len(customers)]) == list(offline["total_purchases"])
    # skew: the served feature values against the training set, as drift
    result = cli("drift", "train.parquet", "serving:churn", "--columns", ",".join(names), "--json")
    assert {c["column"] for c in json.loads(result.stdout)["columns"]} == set(names)
