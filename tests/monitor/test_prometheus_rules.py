"""`mlops export prometheus-rules`: rules Prometheus' own promtool accepts and evaluates as meant."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops.exporters.prometheus import rules

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool not installed (Debian package prometheus; .ci/run installs it)",
)

P = 'model="churn",variant="production",version="1"'
C = 'model="churn",variant="canary",version="2"'


def _summary(name: str) -> str:
    return next(r for r in rules("churn")["groups"][0]["rules"] if r["alert"] == name)["annotations"]["summary"]


def _firing(name: str, severity: str) -> list[dict]:
    return [{"exp_labels": {"model": "churn", "severity": severity}, "exp_annotations": {"summary": _summary(name)}}]


@needs_promtool
def test_promtool_checks_and_tests_the_exported_rules(cli, repo, tmp_path: Path) -> None:
    assert PROMTOOL is not None, "CI must have promtool (.ci/run installs Debian's prometheus)"
    (Path(repo.root) / "m.pkl").write_bytes(b"a model")
    from mlops import registry

    registry.register(repo, "churn", Path(repo.root) / "m.pkl")
    out = tmp_path / "rules.yaml"
    cli("export", "prometheus-rules", "churn", "-o", str(out))
    check = subprocess.run([PROMTOOL, "check", "rules", str(out)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "6 rules found" in check.stdout

    series = [
        # production: 100 requests a minute; 5xx start at minute 6 (20 a minute)
        {"series": f"mlops_requests_total{{{P}}}", "values": "0+100x30"},
        {"series": f'mlops_request_errors_total{{{P},code_class="5xx"}}', "values": "0x5 20+20x25"},
        # fast answers (all under 100 ms) until minute 10, then all between 100 ms and 1 s
        {"series": f'mlops_request_latency_seconds_bucket{{{P},le="0.1"}}', "values": "0+100x10 1000x20"},
        {"series": f'mlops_request_latency_seconds_bucket{{{P},le="1"}}', "values": "0+100x30"},
        {"series": f'mlops_request_latency_seconds_bucket{{{P},le="+Inf"}}', "values": "0+100x30"},
        # the canary: 10 requests a minute, failing as production does (20% from minute 6)
        {"series": f"mlops_requests_total{{{C}}}", "values": "0+10x30"},
        {"series": f'mlops_request_errors_total{{{C},code_class="5xx"}}', "values": "0x5 2+2x25"},
        {"series": 'mlops_rollbacks_total{model="churn"}', "values": "0x20 1x10"},
        {"series": 'mlops_request_log_dropped_rows_total{model="churn"}', "values": "0x30"},
    ]
    tests = {
        "rule_files": [str(out)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "MlopsHighErrorRate", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "MlopsHighErrorRate",
                        "exp_alerts": _firing("MlopsHighErrorRate", "critical"),
                    },
                    {"eval_time": "8m", "alertname": "MlopsHighLatencyP99", "exp_alerts": []},
                    {
                        "eval_time": "25m",
                        "alertname": "MlopsHighLatencyP99",
                        "exp_alerts": _firing("MlopsHighLatencyP99", "warning"),
                    },
                    {"eval_time": "3m", "alertname": "MlopsCanaryUnhealthy", "exp_alerts": []},
                    # the canary fails, but no more than production
                    {"eval_time": "15m", "alertname": "MlopsCanaryUnhealthy", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "MlopsRollback", "exp_alerts": []},
                    {
                        "eval_time": "22m",
                        "alertname": "MlopsRollback",
                        "exp_alerts": _firing("MlopsRollback", "warning"),
                    },
                    {"eval_time": "25m", "alertname": "MlopsRequestLogDropping", "exp_alerts": []},
                    {"eval_time": "25m", "alertname": "MlopsNoMetrics", "exp_alerts": []},
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"mlops_requests_total{{{P}}}", "values": "0+100x20"},
                    {"series": f'mlops_request_errors_total{{{P},code_class="5xx"}}', "values": "0x20"},
                    {"series": f"mlops_requests_total{{{C}}}", "values": "0+10x20"},
                    {"series": f'mlops_request_errors_total{{{C},code_class="5xx"}}', "values": "0+5x20"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "MlopsCanaryUnhealthy",
                        "exp_alerts": _firing("MlopsCanaryUnhealthy", "critical"),
                    },
                    {"eval_time": "15m", "alertname": "MlopsHighErrorRate", "exp_alerts": []},  # 5 of 110 a minute
                ],
            },
            {
                "interval": "1m",
                "input_series": [{"series": 'mlops_requests_total{model="other"}', "values": "0+1x20"}],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "MlopsNoMetrics",
                        "exp_alerts": _firing("MlopsNoMetrics", "critical"),
                    }
                ],
            },
        ],
    }
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    run = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rules_refuse_unknown_models_and_bad_durations(cli, repo) -> None:
    assert "no model 'churn'" in cli("export", "prometheus-rules", "churn", code=2).stderr
    (Path(repo.root) / "m.pkl").write_bytes(b"a model")
    from mlops import registry

    registry.register(repo, "churn", Path(repo.root) / "m.pkl")
    assert "not a Prometheus duration" in cli("export", "prometheus-rules", "churn", "--for", "5 min", code=2).stderr
    text = cli("export", "prometheus-rules", "churn", "--error-rate", "0.1").stdout
    doc = yaml.safe_load(text)
    assert doc["groups"][0]["name"] == "mlops-churn" and "> 0.1" in doc["groups"][0]["rules"][0]["expr"]
