"""`monitor check --notify URL --on-breach CMD` with a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from monitorkit import Receiver, write_day
from servekit import mlops

DAY = 86400


@pytest.fixture
def receiver():
    r = Receiver(fail=2)  # the first two posts fail: the check retries
    yield r
    r.close()


@pytest.mark.timeout(300)
def test_a_persisting_breach_alerts_once_and_runs_its_command_once(monitored: Path, receiver: Receiver) -> None:
    today = time.time() // DAY * DAY
    write_day(monitored, today - 2 * DAY, 200, drifted=False, seed=1)
    write_day(monitored, today - DAY, 200, drifted=True, seed=2)
    command = f"{sys.executable} -c \"open('retrained', 'a').write('x')\""
    args = ("monitor", "check", "churn", "--window", "1d", "--since", "3d", "--notify", receiver.url)
    doc = json.loads(mlops(monitored, *args, "--on-breach", command, "--json").stdout)
    assert doc["breached"] == ["drift"]
    alerts = doc["alerts"]
    assert alerts["sent"] == ["churn:drift"] and alerts["delivered"] is True and alerts["attempts"] == 3
    assert alerts["on_breach"]["exit_code"] == 0
    assert (monitored / "retrained").read_text() == "x"
    assert len(receiver.bodies) == 1 and receiver.calls == 3
    [alert] = receiver.bodies[0]  # Alertmanager's /api/v2/alerts shape: a list of alerts
    assert alert["labels"] == {
        "alertname": "MlopsMonitorBreach",
        "model": "churn",
        "kind": "drift",
        "severity": "warning",
        "dedup_key": "churn:drift",
    }
    assert "data drift" in alert["annotations"]["description"] and "startsAt" in alert and "endsAt" not in alert

    # the breach persists: no second post, no second run (within the cooldown)
    doc = json.loads(mlops(monitored, *args, "--on-breach", command, "--json").stdout)
    assert doc["alerts"]["sent"] == [] and doc["alerts"]["suppressed"] == ["churn:drift"]
    assert doc["alerts"]["on_breach"] is None
    assert receiver.calls == 3 and (monitored / "retrained").read_text() == "x"

    history = json.loads(mlops(monitored, "monitor", "history", "churn", "--json").stdout)["checks"]
    ran = [h for h in history if h.get("event") == "alert"]
    assert len(ran) == 1 and ran[0]["on_breach"]["exit_code"] == 0 and ran[0]["sent"] == ["churn:drift"]
    assert "ran" in mlops(monitored, "monitor", "history", "churn").stdout

    # gone: the traffic of today is clean again; the alert is resolved once, with endsAt
    # today's rows lie in the past whatever the hour: the check never sees future traffic, and at
    # 00:10 UTC rows from 01:00 on would all be in the future
    if time.time() - today < 120:
        time.sleep(120 - (time.time() - today))
    write_day(monitored, today, 200, drifted=False, seed=3, first=time.time() - 101, spacing=0.5)
    doc = json.loads(mlops(monitored, *args, "--json").stdout)
    assert doc["breached"] == [] and doc["alerts"]["resolved"] == ["churn:drift"]
    assert receiver.bodies[-1][0]["labels"]["dedup_key"] == "churn:drift" and "endsAt" in receiver.bodies[-1][0]


def test_an_undelivered_alert_is_exit_3_and_tried_again(monitored: Path) -> None:
    today = time.time() // DAY * DAY
    write_day(monitored, today - DAY, 100, drifted=True, seed=2)
    down = Receiver(fail=100)
    try:
        r = mlops(monitored, "monitor", "check", "churn", "--since", "2d", "--notify", down.url, code=3)
        assert "not delivered after 4 attempt(s)" in r.stderr and "HTTP 503" in r.stderr
        down.fail = 0
        doc = json.loads(
            mlops(monitored, "monitor", "check", "churn", "--since", "2d", "--notify", down.url, "--json").stdout
        )
        assert doc["alerts"]["sent"] == ["churn:drift"] and len(down.bodies) == 1
    finally:
        down.close()
    mlops(monitored, "monitor", "check", "churn", "--notify", "ftp://x", code=2)
