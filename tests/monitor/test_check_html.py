"""A check's ``--html`` report is written before the verdict that links it is recorded: a report
that cannot be written leaves no record pointing at it (drift and monitor checks)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from monitorkit import write_day

from mlops import registry
from mlops.drift.config import preset_settings
from mlops.errors import InvalidPathError
from mlops.monitor.check import check, history
from mlops.repo.repo import Repo
from mlops.workflows.drift import check as drift_check

DAY = 86400


def _drift_checks(repo: Repo) -> list[dict]:
    return list(registry.get_version(repo, "churn", 1).drift_checks)


def test_monitor_check_writes_the_html_before_recording_it(monitored: Path) -> None:
    repo = Repo(monitored)
    write_day(monitored, time.time() // DAY * DAY - DAY, 48, drifted=False, seed=3)
    with pytest.raises(InvalidPathError):
        check(repo, "churn", window_seconds=DAY, html=str(monitored / "no-such-folder" / "monitor.html"))
    assert history(repo, "churn") == [] and _drift_checks(repo) == []  # nothing recorded, no dangling link

    report = check(repo, "churn", window_seconds=DAY, html=str(monitored / "monitor.html"))
    assert report.recorded and (monitored / "monitor.html").read_text().startswith("<!")
    assert history(repo, "churn")[-1]["html"] == "monitor.html"
    assert _drift_checks(repo)[-1]["summary"]["html"] == "monitor.html"


def test_drift_check_writes_the_html_before_recording_it(monitored: Path) -> None:
    repo = Repo(monitored)
    settings = preset_settings("default")
    with pytest.raises(InvalidPathError):
        drift_check(
            "churn@production",
            "data/train.parquet",
            settings,
            repo=repo,
            html=str(monitored / "no-such-folder" / "drift.html"),
        )
    assert _drift_checks(repo) == []
    done = drift_check("churn@production", "data/train.parquet", settings, repo=repo, html=str(monitored / "d.html"))
    assert done.recorded is not None and (monitored / "d.html").read_text().startswith("<!")
    assert _drift_checks(repo)[-1]["summary"]["html"] == "d.html"
