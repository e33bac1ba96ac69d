"""A week of served traffic, labels that arrive a week later, and a drifted day: realized and
estimated accuracy per day against values computed here, the verdict in the registry and history.

The request logs are written by the server's own writer (mlops.serve.requestlog.RequestLog) with
the times of past days, as a server running then would have written them."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from servekit import mlops

from mlops import registry
from mlops.repo.repo import Repo
from mlops.serve.requestlog import LogSettings, RequestLog, requests_dir

DAY = 86400
ROWS_PER_DAY = 240


def _traffic(rng: np.random.Generator, rows: int, drifted: bool) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenure": rng.integers(48 if drifted else 0, 72, rows).astype("int64"),
            "plan": rng.choice(["basic", "pro", "family"], rows),
            "monthly_charges": rng.uniform(90 if drifted else 10, 120, rows).round(2),
        }
    )


def _truth(frame: pd.DataFrame) -> np.ndarray:
    return ((frame["tenure"] < 12) & (frame["monthly_charges"] > 60)).astype(int).to_numpy()


@pytest.mark.timeout(300)
def test_a_week_of_traffic_labels_a_week_later_and_a_drifted_day(monitored: Path) -> None:
    model = pickle.loads((monitored / "models" / "churn.pkl").read_bytes())
    repo = Repo(monitored)
    today = time.time() // DAY * DAY
    days = [today - (8 - d) * DAY for d in range(8)]  # 8 complete UTC days; the last one drifted
    rng = np.random.default_rng(11)
    log = RequestLog(requests_dir(repo, "churn"), settings=LogSettings(rotate_seconds=3600))
    log.start()
    expected: dict[float, dict] = {}
    labels = []
    for d, day in enumerate(days):
        frame = _traffic(rng, ROWS_PER_DAY, drifted=d == 7)
        predictions = model.predict(frame)
        probabilities = model.predict_proba(frame)
        truth = _truth(frame)
        if d == 6:
            truth = 1 - truth  # the world changed on day 6: the model is wrong where it was right
        labelled = rng.random(ROWS_PER_DAY) < 0.7  # 70% of the requests get a label a week later
        for i in range(ROWS_PER_DAY):
            at = day + 3600 + i * 60
            request_id = f"d{d}-r{i}"
            row = frame.iloc[i]
            log.append(
                None,
                {"tenure": [int(row.tenure)], "plan": [str(row.plan)], "monthly_charges": [float(row.monthly_charges)]},
                1,
                {
                    "prediction": [int(predictions[i])],
                    "variant": "production",
                    "version": 1,
                    "latency_ms": 2.0,
                    "time": at,
                    "request_id": request_id,
                    "probabilities": ((0, 1), [probabilities[i].tolist()]),
                },
            )
            if labelled[i]:
                labels.append({"request_id": request_id, "churned": int(truth[i]), "labelled_at": at + 7 * DAY})
        expected[day] = {
            "estimated": float(np.mean(probabilities.max(axis=1))),
            "realized": float(np.mean(predictions[labelled] == truth[labelled])),
            "labelled": int(labelled.sum()),
        }
    log.close()
    assert log.files_finished >= 1 and log.error is None

    # no labels yet: estimated accuracy only
    doc = json.loads(mlops(monitored, "monitor", "check", "churn", "--window", "1d", "--since", "8d", "--json").stdout)
    by_day = {w["start"]: w for w in doc["windows"]}
    for day in days:
        window = by_day[time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(day))]
        assert window["rows"] == ROWS_PER_DAY and window["complete"]
        assert window["estimated_accuracy"] == pytest.approx(expected[day]["estimated"], abs=1e-12)
        assert window["realized_accuracy"] is None and window["labelled_rows"] == 0
    assert doc["breached"] == ["drift"] and doc["judged_window"] == time.strftime(
        "%Y-%m-%dT%H:%MZ", time.gmtime(days[7])
    )
    last = by_day[doc["judged_window"]]
    assert {"tenure", "monthly_charges"} <= set(last["data_drift"]["drifted_columns"])
    assert all(not by_day[time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(d))]["data_drift"]["drifted"] for d in days[:7])
    assert doc["recorded"] is True
    checks = registry.get_version(repo, "churn", 1).drift_checks
    assert checks[-1]["drifted"] is True and checks[-1]["summary"]["source"] == "monitor"

    # the same check again: nothing new recorded (a schedule does not grow the registry)
    again = json.loads(
        mlops(monitored, "monitor", "check", "churn", "--window", "1d", "--since", "8d", "--json").stdout
    )
    assert again["recorded"] is False and len(registry.get_version(repo, "churn", 1).drift_checks) == len(checks)

    # labels a week later
    pd.DataFrame(labels).to_parquet(monitored / "labels.parquet")
    added = json.loads(
        mlops(monitored, "labels", "add", "labels.parquet", "--model", "churn", "--target", "churned", "--json").stdout
    )
    assert added["rows"] == len(labels) == added["matched_now"] and added["new"] is True
    twice = json.loads(
        mlops(monitored, "labels", "add", "labels.parquet", "--model", "churn", "--target", "churned", "--json").stdout
    )
    assert twice["new"] is False  # the same labels kept once

    doc = json.loads(
        mlops(
            monitored,
            "monitor",
            "check",
            "churn",
            "--window",
            "1d",
            "--since",
            "8d",
            "--min-accuracy",
            "0.8",
            "--fail-on",
            "drift,quality",
            "--json",
            code=1,
        ).stdout
    )
    by_day = {w["start"]: w for w in doc["windows"]}
    for day in days:
        window = by_day[time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(day))]
        assert window["realized_accuracy"] == pytest.approx(expected[day]["realized"], abs=1e-12)
        assert window["labelled_rows"] == expected[day]["labelled"]
        assert window["label_coverage"] == pytest.approx(expected[day]["labelled"] / ROWS_PER_DAY)
    day6 = by_day[time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(days[6]))]
    assert day6["realized_accuracy"] < 0.5 < day6["estimated_accuracy"]  # concept drift: only labels show it
    assert doc["breached"] == ["drift"]  # the judged day (7) is still accurate: no quality breach there

    history = json.loads(mlops(monitored, "monitor", "history", "churn", "--json").stdout)["checks"]
    assert [h["breached"] for h in history] == [["drift"]]  # one verdict for the window, recorded once
    assert history[0]["window"] == doc["judged_window"] and "tenure" in history[0]["drifted_columns"]
    text = mlops(monitored, "monitor", "history", "churn").stdout
    assert doc["judged_window"] in text and "drift" in text
