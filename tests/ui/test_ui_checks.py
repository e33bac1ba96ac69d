"""The checks pages over real checks: `mlops drift --model` and `mlops monitor check` run on a
served model's logged traffic (a calm day, then a drifted one), an HTML report kept under
`.mlops/`; the pages show both histories per model, open the report, and write nothing."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import time
from pathlib import Path

import pytest
from monitorkit import write_day
from servekit import fit_pipeline, mlops, training_frame
from uikit import client, snapshot

from mlops import registry
from mlops.repo.repo import Repo

DAY = 86400


@pytest.mark.timeout(300)
def test_drift_and_monitoring_checks_per_model_over_time(repo: Repo) -> None:
    root = Path(repo.root)
    (root / "data").mkdir()
    training_frame(rows=600).to_parquet(root / "data" / "train.parquet")
    mlops(root, "add", "data/train.parquet")
    (root / "models").mkdir()
    (root / "models" / "churn.pkl").write_bytes(pickle.dumps(fit_pipeline()))
    registry.register(repo, "churn", root / "models" / "churn.pkl", data=["data/train.parquet"])
    registry.promote(repo, "churn", 1, "production", reason="test set-up", actor="tests")
    c = client(repo)
    assert "No monitoring checks recorded." in c.get("/checks/churn").text

    today = time.time() // DAY * DAY
    write_day(root, today - 2 * DAY, 200, drifted=False, seed=1)
    write_day(root, today - DAY, 200, drifted=True, seed=2)
    report = root / ".mlops" / "reports" / "churn-monitor.html"
    report.parent.mkdir()
    mlops(root, "monitor", "check", "churn", "--window", "1d", "--since", "3d", "--html", str(report), code=None)
    (root / "data" / "current.csv").write_text(training_frame(rows=300).to_csv(index=False))
    drifted = mlops(
        root, "drift", "churn@production", "data/current.csv", "--html", ".mlops/reports/today.html", code=None
    )
    assert drifted.returncode in (0, 1), drifted.stderr

    before = snapshot(root)
    listing = c.get("/checks")
    assert listing.status_code == 200
    row = listing.text.split('<tr data-model="churn">', 1)[1].split("</tr>", 1)[0]
    assert 'href="/checks/churn"' in row
    assert re.search(r"<td>([1-9])</td>", row), row  # drift checks and monitor checks counted
    assert "No data validation is recorded yet" in listing.text

    page = c.get("/checks/churn").text
    drift = page.split('id="drift"', 1)[1].split("</table>", 1)[0]
    sources = re.findall(r"<td>(monitor|drift)[:<]", drift)
    assert "monitor" in sources and "drift" in sources, drift  # both commands' verdicts, on version 1
    assert 'href="/models/churn/1"' in drift
    monitor = page.split('id="monitor"', 1)[1].split("</table>", 1)[0]
    assert '<td class="error">drift</td>' in monitor and "tenure" in monitor  # the drifted day's verdict
    assert 'href="/reports/reports/churn-monitor.html"' in page
    assert c.get("/reports/reports/churn-monitor.html").status_code == 200
    recorded = page.split('id="recorded-reports"', 1)[1].split("</ul>", 1)[0]
    # exactly the reports the checks recorded, whether or not their names say the model
    assert 'href="/reports/reports/today.html"' in recorded, recorded
    assert 'href="/reports/reports/churn-monitor.html"' in recorded, recorded
    assert c.get("/reports/reports/today.html").status_code == 200
    assert 'href="/checks"' in page  # the nav names the page
    assert snapshot(root) == before  # the pages wrote nothing
    assert c.get("/checks/nope").status_code == 404
    assert c.get("/checks/..%2fetc").status_code == 404


@pytest.mark.timeout(120)
def test_data_validation_results_newest_first(repo: Repo) -> None:
    root = Path(repo.root)
    (root / "data").mkdir()
    (root / "data" / "good.csv").write_text("tenure,plan\n1,basic\n5,premium\n72,basic\n")
    mlops(root, "schema", "infer", "data/good.csv", "-o", "schema.yaml")
    passed = mlops(root, "validate", "data/good.csv", "--schema", "schema.yaml")
    assert "valid: 3 row(s)" in passed.stdout  # the CLI prints as before
    (root / "data" / "bad.csv").write_text("tenure,plan\n0,gold\n,basic\n500,platinum\n")
    failed = mlops(root, "validate", "data/bad.csv", "--schema", "schema.yaml", code=1)
    assert "violation" in failed.stderr + failed.stdout

    log = root / ".mlops" / "checks" / "validation.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["passed"] for r in lines] == [True, False]
    assert lines[1]["data"] == ["data/bad.csv"] and lines[1]["schema"] == "schema.yaml"
    assert lines[1]["violations"] >= 2 and lines[1]["first_violations"][0]["column"] in ("tenure", "plan")
    check_ignored = subprocess.run(["git", "check-ignore", "-q", str(log)], cwd=root)
    assert check_ignored.returncode == 0  # results stay local, like runs

    before = snapshot(root)
    page = client(repo).get("/checks")
    assert page.status_code == 200
    table = page.text.split('id="validation"', 1)[1].split("</table>", 1)[0]
    rows = table.split("<tbody>", 1)[1].split("</tr>")[:2]
    assert "failed" in rows[0] and "data/bad.csv" in rows[0] and "tenure" in rows[0]  # newest first
    assert "passed" in rows[1] and "data/good.csv" in rows[1] and "schema.yaml" in rows[1]
    assert snapshot(root) == before  # the page wrote nothing


def test_report_path_recorded_only_inside_the_repository(repo: Repo, tmp_path: Path) -> None:
    from mlops.drift.validations import report_in_repo

    root = Path(repo.root)
    assert report_in_repo(repo, root / ".mlops" / "reports" / "a.html") == ".mlops/reports/a.html"
    assert report_in_repo(repo, root / "reports" / "b.html") == "reports/b.html"
    assert report_in_repo(repo, root.parent / "elsewhere.html") is None
    assert report_in_repo(repo, None) is None
