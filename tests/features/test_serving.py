"""End to end: a model trained on a training set from the store, registered (the service and hashes
in its lineage), served with entity keys by a real `mlops serve`: the same predictions as the
offline pipeline for the training set built as of now; missing features and direct values refused."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from servekit import mlops, start_server  # noqa: E402

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


NAMES = ["total_purchases", "avg_order_value"]
CUSTOMERS = list(range(1, 41))


def _trained(repo, cli, store: str = "") -> tuple[Any, Any]:
    """Orders tracked, features.yaml written (``store``: its online_store line), a model fitted on a
    training set as of three days ago and pickled to model.pkl: (the model, a training set builder)."""
    from sklearn.linear_model import LogisticRegression

    root = repo.root
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rows = []
    for c in CUSTOMERS:
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
    (root / "features.yaml").write_text(store + FEATURES)
    cli("add", "data/orders.parquet")

    def training_set(at: dt.datetime, name: str) -> pa.Table:
        times = pa.array([at] * len(CUSTOMERS), pa.timestamp("us", tz="UTC"))
        pq.write_table(
            pa.table({"customer_id": CUSTOMERS, "event_timestamp": times}), root / f"{name}-entities.parquet"
        )
        cli("features", "get-training-set", f"{name}-entities.parquet", "-s", "churn_v2", "-o", f"{name}.parquet")
        return pq.read_table(root / f"{name}.parquet")

    train = training_set(now - dt.timedelta(days=3), "train").to_pandas()
    model = LogisticRegression(max_iter=500).fit(train[NAMES], (train["avg_order_value"] > 45).astype(int))
    (root / "model.pkl").write_bytes(pickle.dumps(model))
    return model, training_set


@pytest.mark.timeout(240)
def test_served_with_entity_keys_matches_the_offline_training_set(repo, cli) -> None:
    root = repo.root
    customers, names = CUSTOMERS, NAMES
    model, training_set = _trained(repo, cli)
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
            # V2 model metadata names what callers send: the entity key, not the features looked up
            r = c.get("/v2/models/churn")
            assert r.json()["inputs"] == [{"name": "customer_id", "datatype": "INT64", "shape": [-1]}]
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


@pytest.mark.timeout(240)
def test_a_bundle_of_a_feature_service_model_looks_features_up_in_redis(repo, cli, redis_url, tmp_path) -> None:
    model, training_set = _trained(repo, cli, store=f"online_store: {redis_url}\n")
    cli("register", "fsm", "model.pkl", "--signature-from", "train.parquet")
    bundle = tmp_path / "bundle"
    cli("export", "model", "fsm:1", "-o", str(bundle))
    carried = (bundle / "features.yaml").read_text()
    assert redis_url in carried and "churn_v2" in carried and "data/orders.parquet" in carried
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # served before materialize: one error line before the server announces itself, no traceback
    early = mlops(elsewhere, "serve", "--model-dir", str(bundle), "--port", "0", code=2)
    assert "Traceback" not in early.stderr and "serving" not in early.stderr
    assert early.stderr.startswith("error: feature view 'customer_stats'") and "materialize" in early.stderr
    # a bundle exported before bundles carried definitions: one line saying to export again
    old = tmp_path / "old-bundle"
    shutil.copytree(bundle, old)
    (old / "features.yaml").unlink()
    manifest = json.loads((old / "mlops-bundle.json").read_text())
    del manifest["files"]["features.yaml"]
    (old / "mlops-bundle.json").write_text(json.dumps(manifest))
    stale = mlops(elsewhere, "serve", "--model-dir", str(old), "--port", "0", code=2)
    assert stale.stderr.startswith("error: bundle ") and "export the model again" in stale.stderr
    cli("features", "materialize", "-s", "churn_v2")
    server = start_server(elsewhere, "fsm:1", "--model-dir", str(bundle))
    try:
        with server.client() as c:
            r = c.post("/predict", json={"records": [{"customer_id": k} for k in CUSTOMERS]})
            assert r.status_code == 200, r.text
            served = r.json()["predictions"]
        assert server.stop() == 0
    finally:
        server.kill()
    assert "Traceback" not in server.stderr()
    offline = training_set(dt.datetime.now(dt.timezone.utc), "now").to_pandas()
    assert served == [int(v) for v in model.predict(offline[NAMES])]
    assert set(served) == {0, 1}


def test_a_bundle_of_a_feature_service_model_needs_a_store_it_can_reach(repo, cli, tmp_path) -> None:
    _trained(repo, cli)  # the embedded SQLite store: a file inside this repository
    cli("register", "fsm", "model.pkl", "--signature-from", "train.parquet")
    refused = cli("export", "model", "fsm:1", "-o", str(tmp_path / "bundle"), code=2)
    assert "SQLite" in refused.stderr and "redis://" in refused.stderr and "direct inputs" in refused.stderr
    assert not (tmp_path / "bundle").exists()


def test_v2_metadata_lists_the_features_too_when_callers_may_send_them(repo, cli) -> None:
    from mlops import registry
    from mlops.serve.features import FeatureInputs
    from mlops.serve.protocols import v2_metadata
    from mlops.serve.signature import Signature

    _trained(repo, cli)
    cli("register", "churn", "model.pkl", "--signature-from", "train.parquet")
    signature = Signature.from_dict(registry.resolve(repo, "churn:1").signature)
    features = repo.root / "features.yaml"
    features.write_text(features.read_text().replace("defaults: {avg_order_value: 0.0}", "allow_direct: true"))
    cli("features", "materialize", "-s", "churn_v2")
    inputs = FeatureInputs(repo, "churn_v2")
    try:
        listed = v2_metadata("churn", [1], inputs.caller_signature(signature), "mlops-sklearn")["inputs"]
    finally:
        inputs.close()
    assert [(t["name"], t["datatype"]) for t in listed] == [
        ("customer_id", "INT64"),
        ("total_purchases", "INT64"),
        ("avg_order_value", "FP64"),
    ]
