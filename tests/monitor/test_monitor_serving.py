"""`mlops monitor build` and `check` over the request logs of a real `mlops serve`."""

from __future__ import annotations

import json
import random
from pathlib import Path

from servekit import mlops


def test_served_traffic_is_profiled_once_and_checked(serve_monitored, monitored: Path) -> None:
    server = serve_monitored()
    rng = random.Random(4)
    sent = 0
    with server.client() as c:
        for i in range(30):
            records = [
                {
                    "tenure": rng.randint(0, 71),
                    "plan": rng.choice(["basic", "pro", "family"]),
                    "monthly_charges": round(rng.uniform(10, 120), 2),
                }
                for _ in range(5)
            ]
            r = c.post("/predict", json={"records": records}, headers={"X-Request-ID": f"req-{i}"})
            assert r.status_code == 200
            sent += 5
    assert server.stop() == 0

    first = json.loads(mlops(monitored, "monitor", "build", "churn", "--json").stdout)
    assert first["built"] >= 1 and first["already_built"] == 0 and first["version"] == 1
    again = json.loads(mlops(monitored, "monitor", "build", "churn", "--json").stdout)
    assert again["built"] == 0 and again["already_built"] == first["built"]  # idempotent
    profiles = sorted((monitored / ".mlops" / "monitor" / "churn" / "logs").rglob("*.json"))
    assert len(profiles) == first["built"]

    doc = json.loads(mlops(monitored, "monitor", "check", "churn", "--window", "1h", "--since", "1d", "--json").stdout)
    busy = [w for w in doc["windows"] if w["rows"]]
    assert sum(w["rows"] for w in busy) == sent
    latest = busy[-1]
    assert set(latest["data_drift"]["columns"]) == {"tenure", "plan", "monthly_charges"}
    assert latest["prediction_drift"] is not None
    assert 0.5 < latest["estimated_accuracy"] <= 1.0  # the model's mean confidence in its answers
    assert latest["mean_latency_ms"] > 0
    assert doc["judged_window"] == latest["start"]
    html = monitored / "monitor.html"
    text = mlops(monitored, "monitor", "check", "churn", "--window", "1h", "--since", "1d", "--html", str(html))
    assert "no breach" in text.stdout and html.read_text().startswith("<!")
    assert "churn: window" in html.read_text()


def test_monitor_usage_errors(monitored: Path) -> None:
    assert "whole number of hours" in mlops(monitored, "monitor", "check", "churn", "--window", "30m", code=2).stderr
    assert "--fail-on: unknown" in mlops(monitored, "monitor", "check", "churn", "--fail-on", "speed", code=2).stderr
    assert "not a valid model name" in mlops(monitored, "monitor", "build", "../x", code=2).stderr
    assert "no model" in mlops(monitored, "monitor", "build", "nope", code=2).stderr
    assert (
        "no column 'request_id' (--key)"
        in mlops(monitored, "labels", "add", "data/train.parquet", "--model", "churn", "--target", "y", code=2).stderr
    )
