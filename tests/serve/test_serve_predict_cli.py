"""Batch prediction and the deploy/canary commands without a server."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from servekit import audit_entries, mlops, stage_of, training_frame


@pytest.fixture
def frame():
    data = training_frame(rows=2500, seed=3)
    data.insert(0, "customer_id", [f"c{i}" for i in range(len(data))])
    return data


def expected(model_repo: Path, frame) -> list[int]:
    model = pickle.loads((model_repo / "models" / "churn-v1.pkl").read_bytes())
    return model.predict(frame[["tenure", "plan", "monthly_charges"]]).tolist()


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_batch_predict_streams_chunks_and_passes_extra_columns_through(model_repo: Path, frame, suffix: str) -> None:
    import pandas as pd

    src = model_repo / f"data.{suffix}"
    frame.to_parquet(src) if suffix == "parquet" else frame.to_csv(src, index=False)
    out = json.loads(
        mlops(
            model_repo, "predict", "churn@production", str(src), "-o", "preds.parquet", "--chunk-rows", "700", "--json"
        ).stdout
    )
    assert out["rows"] == 2500 and out["chunks"] == 4 and out["version"] == 1
    result = pd.read_parquet(model_repo / "preds.parquet")
    assert list(result.columns) == ["customer_id", "tenure", "plan", "monthly_charges", "prediction"]
    assert result["prediction"].tolist() == expected(model_repo, frame)
    assert result["customer_id"].tolist() == frame["customer_id"].tolist()
    r = mlops(model_repo, "predict", "churn:2", str(src), "-o", "preds.csv", "--keep", "customer_id")
    assert "2500 rows scored by churn v2 in 1 chunk(s)" in r.stdout
    csv = pd.read_csv(model_repo / "preds.csv")
    assert list(csv.columns) == ["customer_id", "prediction"] and csv["prediction"].tolist() == expected(
        model_repo, frame
    )


def test_batch_predict_refuses_signature_failures_and_writes_nothing(model_repo: Path, frame) -> None:
    bad = frame.drop(columns=["monthly_charges"]).assign(tenure=frame["tenure"].astype(str))
    bad.to_parquet(model_repo / "bad.parquet")
    r = mlops(model_repo, "predict", "churn@production", "bad.parquet", "-o", "out.parquet", code=2)
    assert (
        "missing column 'monthly_charges'" in r.stderr
        and "column 'tenure' is string, the model takes int64" in r.stderr
    )
    assert "nothing was written" in r.stderr and not (model_repo / "out.parquet").exists()

    late = frame.copy()
    late["monthly_charges"] = late["monthly_charges"].astype("float64")
    late.loc[2000, "monthly_charges"] = None  # float nulls are allowed (NaN), tenure nulls are not:
    late["tenure"] = late["tenure"].astype("Int64")
    late.loc[2100, "tenure"] = None
    late.to_parquet(model_repo / "late.parquet")
    r = mlops(
        model_repo, "predict", "churn@production", "late.parquet", "-o", "out.parquet", "--chunk-rows", "1000", code=2
    )
    assert "rows 2000-2499" in r.stderr and "column 'tenure' (int64): null at row 2100" in r.stderr
    assert not (model_repo / "out.parquet").exists() and not list(model_repo.glob(".tmp-mlops-*"))
    r = mlops(model_repo, "predict", "churn@production", "missing.parquet", "-o", "out.parquet", code=2)
    assert "no such file" in r.stderr


def test_deploy_and_canary_commands(model_repo: Path) -> None:
    r = mlops(model_repo, "canary", "status", "churn", code=2)
    assert "no deployment of churn" in r.stderr
    mlops(model_repo, "deploy", "churn", "--canary", "2", "--shadow", "3", code=2)
    r = mlops(model_repo, "deploy", "churn", "--canary", "1", code=2)
    assert "already the production version" in r.stderr
    r = mlops(model_repo, "deploy", "churn", "--canary", "9", code=2)
    assert "9" in r.stderr
    r = mlops(model_repo, "deploy", "churn", "--steps", "5,25", code=2)
    assert "go with --canary" in r.stderr
    r = mlops(model_repo, "deploy", "churn", "--canary", "2", "--steps", "25,5", "--interval", "1m", code=2)
    assert "increasing" in r.stderr

    dep = json.loads(
        mlops(
            model_repo,
            "deploy",
            "churn",
            "--canary",
            "2",
            "--steps",
            "5,25,50",
            "--interval",
            "2m",
            "--key",
            "field:customer_id",
            "--max-p99-ms",
            "250",
            "--json",
        ).stdout
    )
    assert dep["candidate"] == {
        "version": 2,
        "mode": "canary",
        "weight": 5.0,
        "steps": [5.0, 25.0, 50.0],
        "interval_seconds": 120.0,
        "started_at": dep["candidate"]["started_at"],
        "step_started_at": dep["candidate"]["step_started_at"],
    }
    assert (
        dep["routing"] == {"key": "field:customer_id"} and dep["rollback"]["max_p99_ms"] == 250 and dep["revision"] == 1
    )
    text = (model_repo / ".mlops" / "deployments" / "churn.yaml").read_text()
    assert text.startswith("# mlops deployment") and "production: 1" in text

    status = mlops(model_repo, "canary", "status", "churn").stdout
    assert "canary v2 at 5%: waiting" in status and "no statistics yet" in status
    assert (
        json.loads(mlops(model_repo, "canary", "status", "churn", "--json").stdout)["candidate"]["progression"]["next"]
        == 25.0
    )

    r = mlops(model_repo, "canary", "promote", "churn", "-m", "looks good")
    assert "promoted churn v2 to production (was v1)" in r.stdout
    assert stage_of(model_repo, "churn", 2) == "production"
    assert audit_entries(model_repo, "deploy")[-1]["candidate"] == 2
    moved = [e for e in audit_entries(model_repo, "stage_changed") if e.get("version") == 2]
    assert "looks good" in json.dumps(moved[-1]) and "production" in json.dumps(moved[-1])
    r = mlops(model_repo, "canary", "rollback", "churn", code=2)
    assert "no canary or shadow to roll back" in r.stderr
    mlops(model_repo, "deploy", "churn", "--shadow", "3")
    r = mlops(model_repo, "canary", "rollback", "churn", "-m", "shadow disagrees too much")
    assert "shadow v3 removed; all traffic to production v2" in r.stdout
    assert audit_entries(model_repo, "canary_rollback")[-1]["reason"] == "shadow disagrees too much"


def test_a_broken_deployment_file_is_a_located_error(model_repo: Path) -> None:
    folder = model_repo / ".mlops" / "deployments"
    folder.mkdir(parents=True)
    (folder / "churn.yaml").write_text(
        "format: 1\nmodel: churn\nproduction: 1\ncandidate:\n  version: 2\n  mode: blue\n"
    )
    r = mlops(model_repo, "canary", "status", "churn", code=2)
    assert "churn.yaml" in r.stderr and "canary or shadow" in r.stderr
    (folder / "churn.yaml").write_text("format: 9\nmodel: churn\n")
    r = mlops(model_repo, "serve", "churn@production", code=2)
    assert "newer mlops" in r.stderr


def test_deploy_refuses_what_its_own_parser_would_refuse_and_leaves_the_file(model_repo: Path) -> None:
    from dataclasses import replace

    from mlops.errors import UsageError
    from mlops.repo.repo import Repo
    from mlops.serve.deployment import Thresholds, update_deployment

    mlops(model_repo, "deploy", "churn", "--canary", "2", "--weight", "10")
    path = model_repo / ".mlops" / "deployments" / "churn.yaml"
    before = path.read_text()
    for args, message in (
        (["--steps", "5,25", "--interval", "0s"], "--interval must be at least 100ms"),
        (["--weight", "5", "--window", "0"], "--window must be at least 1 s"),
        (["--weight", "5", "--window", "500ms"], "--window must be at least 1 s"),
    ):
        r = mlops(model_repo, "deploy", "churn", "--canary", "2", *args, code=2)
        assert message in r.stderr, r.stderr
        assert path.read_text() == before
    mlops(model_repo, "canary", "status", "churn")  # still readable
    mlops(model_repo, "deploy", "churn", "--canary", "2", "--steps", "5,25", "--interval", "500ms")
    mlops(model_repo, "canary", "status", "churn")
    before = path.read_text()
    with pytest.raises(
        UsageError, match="not written: .*window_seconds"
    ):  # the writer's own check, whatever the caller
        update_deployment(
            Repo(model_repo), "churn", lambda old: replace(old, thresholds=Thresholds(window_seconds=0)), by="tests"
        )
    assert path.read_text() == before


def test_serve_and_predict_refuse_options_they_would_otherwise_ignore(model_repo: Path, frame) -> None:
    for option, value in (("--timeout", "0s"), ("--log-rotate", "0s"), ("--log-max-age", "0")):
        r = mlops(model_repo, "serve", "churn@production", option, value, code=2)
        assert f"{option} must be longer than 0" in r.stderr, r.stderr
    frame.to_parquet(model_repo / "data.parquet")
    r = mlops(
        model_repo,
        "predict",
        "churn@production",
        "data.parquet",
        "-o",
        "out.parquet",
        "--keep",
        "customer_id,nosuch",
        code=2,
    )
    assert "--keep" in r.stderr and "'nosuch'" in r.stderr and "customer_id" in r.stderr
    assert not (model_repo / "out.parquet").exists()


def test_a_model_that_fails_on_the_rows_is_one_line_and_writes_nothing(model_repo: Path, frame) -> None:
    frame.loc[1200, "plan"] = "a-plan-never-seen"  # fits the signature (a string); the fitted encoder refuses it
    src = model_repo / "data.parquet"
    frame.to_parquet(src)
    r = mlops(
        model_repo, "predict", "churn@production", str(src), "-o", "preds.parquet", "--chunk-rows", "1000", code=3
    )
    first = r.stderr.strip().splitlines()[0]
    assert "churn:1: the model failed on rows 1000-1999" in first and "ValueError" in first
    assert "internal error" not in r.stderr
    assert not (model_repo / "preds.parquet").exists()


def test_an_input_broken_partway_is_the_inputs_fault_in_one_line(model_repo: Path, frame) -> None:
    src = model_repo / "data.parquet"
    frame.to_parquet(src, row_group_size=500)
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = b"\xff" * 2000  # the footer still reads; a row group in the middle does not
    src.write_bytes(bytes(data))
    r = mlops(model_repo, "predict", "churn@production", str(src), "-o", "preds.csv", code=2)
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {src}: not a readable Parquet file"), r.stderr
    assert "cannot write" not in r.stderr
    assert not (model_repo / "preds.csv").exists()


def test_canary_status_takes_only_a_window_the_server_keeps(model_repo: Path) -> None:
    mlops(model_repo, "deploy", "churn", "--canary", "2")
    r = mlops(model_repo, "canary", "status", "churn", "--window", "0", code=2)
    assert "--window must be longer than 0" in r.stderr
    r = mlops(model_repo, "canary", "status", "churn", "--window", "2h", code=2)
    assert "keeps the last 10 minutes only" in r.stderr
    mlops(model_repo, "canary", "status", "churn", "--window", "5m")
