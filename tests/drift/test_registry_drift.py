"""A model reference as the reference data: the version's training data, and the verdict recorded
for the version, which the production gate `no_failed_drift_check` then reads."""

from __future__ import annotations

import json

import pytest
from driftkit import base_columns, write_csv, write_parquet

from mlops import registry


@pytest.fixture
def churn(repo, cli):
    """churn:1 in production and churn:2 registered, both trained on data/train.csv (tracked)."""
    write_csv(repo.root / "data" / "train.csv", base_columns(3000, seed=1))
    write_parquet(repo.root / "data" / "extra" / "more.parquet", base_columns(1000, seed=9))
    (repo.root / "data" / "extra" / "README.txt").write_text("not a table\n")
    cli("add", "data/train.csv", "data/extra")
    (repo.root / "model.bin").write_bytes(b"a model")
    registry.register(repo, "churn", "model.bin", data=["data/train.csv", "data/extra"])
    registry.promote(repo, "churn", 1, "production")
    (repo.root / "model.bin").write_bytes(b"a better model")
    registry.register(repo, "churn", "model.bin", data=["data/train.csv"])
    return repo


def test_drift_against_the_training_data_of_a_model_version(churn, cli, tmp_path) -> None:
    current = write_parquet(tmp_path / "cur.parquet", base_columns(3000, seed=2))
    doc = json.loads(cli("drift", "churn@production", str(current), "--json").stdout)
    assert doc["reference"]["source"] == "churn@production (training data of churn version 1)"
    assert sorted(doc["reference"]["files"]) == ["data/extra/more.parquet", "data/train.csv"]
    assert doc["reference"]["rows"] == 4000  # the CSV and the Parquet file; README.txt is not a table
    assert doc["recorded_for"] == {"model": "churn", "version": 1, "drifted": False}
    checks = registry.get_version(churn, "churn", 1).drift_checks
    assert len(checks) == 1 and checks[0]["drifted"] is False
    assert checks[0]["summary"]["tested_columns"] == 3 and checks[0]["summary"]["current"] == str(current)

    result = cli("drift", "churn:2", str(current))
    assert "recorded the verdict for churn version 2" in result.stderr
    assert len(registry.get_version(churn, "churn", 2).drift_checks) == 1


def test_a_failed_drift_check_blocks_promotion_to_production(churn, cli, tmp_path) -> None:
    (churn.dot / "policy.yaml").write_text("format: 1\nstages:\n  production:\n    no_failed_drift_check: true\n")
    drifted = write_parquet(tmp_path / "cur.parquet", base_columns(3000, seed=2, shift=1.0))
    doc = json.loads(
        cli("drift", "churn:2", str(drifted), "--json", "--drift-share", "0.3", "--fail-on-drift", code=1).stdout
    )
    assert doc["verdict"]["drifted"] is True and doc["recorded_for"]["drifted"] is True
    checks = registry.get_version(churn, "churn", 2).drift_checks
    assert checks[-1]["drifted"] is True and checks[-1]["summary"]["drifted_columns"] == ["amount"]
    with pytest.raises(registry.PromotionRefused):
        registry.promote(churn, "churn", 2, "production")
    result = cli("promote", "churn", "2", "--to", "production", code=1)
    assert "drift" in (result.stdout + result.stderr)


def test_model_references_need_a_registered_model_and_the_reference_side(churn, cli, tmp_path) -> None:
    current = write_parquet(tmp_path / "cur.parquet", base_columns(500, seed=2))
    result = cli("drift", "nosuch@production", str(current), code=2)
    assert "nosuch" in result.stderr
    result = cli("drift", str(current), "churn@production", code=2)
    assert "use it as the reference" in result.stderr


def test_predict_runs_the_model_on_both_sets_for_prediction_drift_and_quality(repo, cli, tmp_path) -> None:
    import pickle

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score

    rng = np.random.default_rng(3)

    def customers(n: int, shift: float) -> pd.DataFrame:
        tenure = rng.integers(1, 73, n) - int(shift * 20)
        charges = rng.uniform(10, 120, n) * (1 + shift)
        churned = (rng.random(n) < 1 / (1 + np.exp((tenure - 20) / 8))).astype(int)
        return pd.DataFrame({"tenure": tenure, "charges": charges, "churned": churned})

    train = customers(3000, 0.0)
    (repo.root / "data").mkdir()
    train.to_csv(repo.root / "data" / "train.csv", index=False)
    cli("add", "data/train.csv")
    model = LogisticRegression(max_iter=500).fit(train[["tenure", "charges"]], train["churned"])
    (repo.root / "model.pkl").write_bytes(pickle.dumps(model))
    registry.register(repo, "churn", "model.pkl", data=["data/train.csv"])
    current = customers(3000, 0.5)
    current.to_csv(tmp_path / "cur.csv", index=False)

    doc = json.loads(
        cli("drift", "churn:1", str(tmp_path / "cur.csv"), "--predict", "--target", "churned", "--json").stdout
    )
    assert doc["prediction_drift"]["column"] == "prediction"
    assert {c["column"]: c["role"] for c in doc["columns"]}["prediction"] == "prediction"
    q = doc["quality"]
    assert q["task"] == "classification" and q["prediction_is"] == "probability"
    m = {row["metric"]: row for row in q["metrics"]}
    for side, frame in (("reference", train), ("current", current)):
        proba = model.predict_proba(frame[["tenure", "charges"]])[:, 1]
        assert m["accuracy"][side] == pytest.approx(
            accuracy_score(frame["churned"], (proba >= 0.5).astype(int)), abs=1e-12
        )
        assert m["roc_auc"][side] == pytest.approx(roc_auc_score(frame["churned"], proba), abs=1e-12)
    result = cli("drift", str(tmp_path / "cur.csv"), str(tmp_path / "cur.csv"), "--predict", code=2)
    assert "--predict needs a model reference" in result.stderr
    pd.DataFrame({"tenure": [1, 2]}).to_csv(tmp_path / "narrow.csv", index=False)
    result = cli("drift", "churn:1", str(tmp_path / "narrow.csv"), "--predict", code=2)
    assert "lacks the model's input column(s) charges" in result.stderr
    result = cli("drift", "churn:1", str(tmp_path / "cur.csv"), "--predict", "--pos-label", "yes", code=2)
    assert "--pos-label yes: churn:1 has no such class" in result.stderr


def test_a_verdict_that_cannot_be_recorded_still_shows_its_report_then_fails(churn, cli, tmp_path) -> None:
    # a hand-edited model file: the registry refuses to write to it (the audit anchor no longer matches)
    from mlops.registry.store import model_path

    path = model_path(churn, "churn")
    doc = json.loads(path.read_text())
    doc["edited_by_hand"] = True
    path.write_text(json.dumps(doc))
    current = write_parquet(tmp_path / "cur.parquet", base_columns(500, seed=2))
    result = cli("drift", "churn:1", str(current), "--json", "--html", str(tmp_path / "report.html"), code=3)
    report = json.loads(result.stdout)  # one document: the report, with why it was not recorded
    assert report["verdict"]["drifted"] is False and "recorded_for" not in report
    assert report["record_error"]["exit_code"] == 3
    assert (tmp_path / "report.html").exists()
    assert not registry.get_version(churn, "churn", 1).drift_checks
