"""The example policy parses, and the parser's positions point at the offending text."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.errors import FormatError
from mlops.registry.policy import evaluate, parse_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn" / "policy.yaml"


def test_the_demo_policy_parses_into_the_rules_it_says() -> None:
    policy = parse_policy(EXAMPLE.read_text(), "examples/churn/policy.yaml")
    production = policy.rules_for("churn", "production")
    assert [r.key for r in production.metrics] == [
        "eval_basic.test_accuracy",
        "eval_standard.test_accuracy",
        "eval_premium.test_accuracy",
    ]
    assert production.was_in == ("staging",) and production.no_failed_drift_check and production.approvals == 1
    assert policy.rules_for("churn", "staging").metrics[0].text == "metrics.train_accuracy >= 0.7"
    assert policy.rules_for("churn", "archived").empty


@pytest.mark.parametrize(
    "rule, value, ok",
    [
        ("metrics.a >= 0.5", 0.5, True),
        ("metrics.a > 0.5", 0.5, False),
        ("a < 1e-3", 0.0001, True),
        ("metrics.a == 3", 3, True),
        ("metrics.a != 3", 3, False),
        ("metrics.loss <= -1", -2, True),
        ("metrics.a >= 0.5", float("nan"), False),
        ("metrics.a >= 0.5", True, False),
    ],
)
def test_metric_rules_compare_numbers_only(rule, value, ok) -> None:
    policy = parse_policy(f"stages:\n  staging:\n    metrics: ['{rule}']\n", "p.yaml")
    (result,) = evaluate(policy.rules_for("m", "staging"), {"metrics": {"a": value, "loss": value}})
    assert result.ok is ok


def test_an_unknown_top_level_key_points_at_the_key() -> None:
    with pytest.raises(FormatError, match=r"p.yaml:2:1: unknown key 'stagse'"):
        parse_policy("format: 1\nstagse: {}\n", "p.yaml")
