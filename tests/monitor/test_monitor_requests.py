"""Requests, refusals (4xx), failures (5xx) and latency per window, from a real `mlops serve`'s
request and failure logs: `monitor build` counts them, `monitor check` reports and judges them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from monitorkit import register_in_production, write_day
from servekit import broken, guarded, mlops

from mlops import registry
from mlops.repo.repo import Repo
from mlops.serve.requestlog import REASON_MAX, requests_dir

GOOD = {"tenure": 5, "plan": "basic", "monthly_charges": 80.0}
DAY = 86400


@pytest.mark.timeout(300)
def test_served_requests_errors_and_latency_per_window(serve_monitored, monitored: Path) -> None:
    repo = Repo(monitored)
    # version 2 raises on a plan it never saw (OneHotEncoder's own check): a real 500, no mock
    register_in_production(monitored, guarded(), 2)
    server = serve_monitored()
    statuses = []
    with server.client() as c:
        for i in range(20):
            statuses.append(c.post("/predict", json={"records": [{**GOOD, "tenure": i}]}).status_code)
        for _ in range(4):  # the signature refuses: a column missing
            statuses.append(c.post("/predict", json={"records": [{"tenure": 1, "plan": "pro"}]}).status_code)
        statuses.append(  # not JSON: refused before routing
            c.post("/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code
        )
        for _ in range(3):  # the model raises
            statuses.append(c.post("/predict", json={"records": [{**GOOD, "plan": "gold" * 100}]}).status_code)
    assert statuses == [200] * 20 + [400] * 5 + [500] * 3
    assert server.stop() == 0

    failures = list((monitored / ".mlops" / "serve" / "churn" / "failures").glob("*.parquet"))
    table = pq.read_table(failures)
    assert sorted(table.column("status").to_pylist()) == [400] * 5 + [500] * 3
    assert "tenure" not in table.column_names and "plan" not in table.column_names  # no input is kept
    assert max(len(r) for r in table.column("reason").to_pylist()) <= REASON_MAX

    built = json.loads(mlops(monitored, "monitor", "build", "churn", "--json").stdout)
    assert built["built"] >= 2 and built["without_status"] == []
    args = ["monitor", "check", "churn", "--window", "1h", "--since", "1d", "--max-p99-ms", "1e9", "--json"]
    failed = mlops(monitored, *args, "--fail-on", "errors", code=1)
    doc = json.loads(failed.stdout)
    busy = [w for w in doc["windows"] if w["requests"] and w["requests"]["requests"]]
    assert sum(w["requests"]["requests"] for w in busy) == 28  # the hour may turn during the test
    assert sum(w["requests"]["refused"] for w in busy) == 5 and sum(w["requests"]["failed"] for w in busy) == 3
    assert sum(w["requests"]["ok"] for w in busy) == 20
    for w in busy:
        r = w["requests"]
        assert r["error_rate"] == pytest.approx(r["failed"] / r["requests"])
        assert r["refused_rate"] == pytest.approx(r["refused"] / r["requests"])
        q = r["latency_ms"]
        assert 0 < q["p50"] <= q["p95"] <= q["p99"] <= q["max"]
    slots = {}
    for w in busy:
        for name, s in w["slots"].items():
            slots[name] = slots.get(name, 0) + s["requests"]
    assert slots == {"production:2": 27, "unrouted:": 1}
    latest = busy[-1]["requests"]
    if latest["failed"]:  # the judged (latest) window holds the failures: 3 of its requests, over 5%
        assert "errors" in doc["breached"] and "requests failed (5xx)" in failed.stderr
        assert (
            json.loads(mlops(monitored, "monitor", "history", "churn", "--json").stdout)["checks"][-1]["requests"][
                "failed"
            ]
            == latest["failed"]
        )
        checks = registry.get_version(repo, "churn", 2).drift_checks
        assert "errors" in checks[-1]["summary"]["breached"]

    html = monitored / "requests.html"
    ok = mlops(monitored, *args[:-1], "--max-error-rate", "0.5", "--fail-on", "errors,latency", "--html", str(html))
    assert "5xx" in ok.stdout and "errors:" not in ok.stdout and "latency:" not in ok.stdout  # exit 0: neither breached
    page = html.read_text()
    assert "Requests in" in page and "production:2" in page and "p99 ms" in page


@pytest.mark.timeout(300)
def test_old_logs_and_old_profiles_still_build_and_check(monitored: Path) -> None:
    repo = Repo(monitored)
    yesterday = time.time() // DAY * DAY - DAY
    write_day(monitored, yesterday, 24, drifted=False, seed=5)
    for log in requests_dir(repo, "churn").glob("*.parquet"):  # as an older server wrote it: no status column
        table = pq.read_table(log)
        pq.write_table(table.drop_columns(["status"]), log)
    built = json.loads(mlops(monitored, "monitor", "build", "churn", "--json").stdout)
    assert len(built["without_status"]) == 1
    text = mlops(monitored, "monitor", "check", "churn", "--window", "1d", "--since", "3d", "--json")
    day = [w for w in json.loads(text.stdout)["windows"] if w["rows"]][-1]
    assert day["requests"]["requests"] == 24 and day["requests"]["ok"] == 24  # all counted as answered
    assert "no status column" in text.stderr

    for profile in (monitored / ".mlops" / "monitor" / "churn" / "logs").rglob("*.json"):
        data = json.loads(profile.read_text())  # as an older mlops made it: no request counts
        data.pop("service")
        data.pop("status_logged")
        profile.write_text(json.dumps(data))
    text = mlops(monitored, "monitor", "check", "churn", "--window", "1d", "--since", "3d", "--json")
    day = [w for w in json.loads(text.stdout)["windows"] if w["rows"]][-1]
    assert day["rows"] == 24 and day["requests"] is None and "without request counts" in text.stderr


@pytest.mark.timeout(300)
def test_a_failing_shadow_is_its_own_slot_and_not_the_callers_errors(serve_monitored, monitored: Path) -> None:
    register_in_production(monitored, broken(), 2, promote=False)  # raises on every real plan
    mlops(monitored, "deploy", "churn", "--shadow", "2")
    server = serve_monitored()
    with server.client() as c:
        for i in range(10):
            assert c.post("/predict", json={"records": [{**GOOD, "tenure": i}]}).status_code == 200
    assert server.stop() == 0
    args = ["monitor", "check", "churn", "--window", "1h", "--since", "1d", "--max-p99-ms", "1e9", "--json"]
    doc = json.loads(mlops(monitored, *args, "--fail-on", "errors").stdout)  # exit 0: the callers got answers
    busy = [w for w in doc["windows"] if w["slots"]]
    slots: dict[str, dict[str, int]] = {}
    for w in busy:
        for name, s in w["slots"].items():
            for key in ("requests", "ok", "failed"):
                slots.setdefault(name, {}).setdefault(key, 0)
                slots[name][key] += s[key]
    assert slots == {
        "production:1": {"requests": 10, "ok": 10, "failed": 0},
        "shadow:2": {"requests": 10, "ok": 0, "failed": 10},
    }
    assert sum(w["requests"]["requests"] for w in busy) == 10 and all(w["requests"]["failed"] == 0 for w in busy)
