"""Stage transitions and their audit entries; every policy gate passing and failing; approvals
by one person counted once; refusals change nothing; --force is recorded; bad policy files."""

from __future__ import annotations

import pytest
from regkit import audit_entries, js, write_pickle, write_policy

from mlops.errors import PromotionRefused
from mlops.registry import approve, promote, record_drift_check, register, resolve
from mlops.registry.store import model_path
from mlops.tracking.store import create_run, finish_run, log_metrics


def _register(repo, name="churn", metrics=None, count=1):
    """Register a small pickle ``count`` times; with ``metrics``, from a real run that logged them."""
    for _ in range(count):
        write_pickle(repo.root / "m.pkl", {"n": 1})
        run_id = None
        if metrics is not None:
            run_id = create_run(repo, None, "scripted", source="api")["id"]
            log_metrics(repo, run_id, metrics)
            finish_run(repo, run_id)
        mv = register(repo, name, "m.pkl", run=run_id).version
    return mv


def test_every_transition_is_recorded_and_one_version_holds_a_stage(repo, cli) -> None:
    _register(repo, count=3)
    cli("promote", "churn", "1", "--to", "staging", "--reason", "first look", "--by", "ann")
    cli("promote", "churn", "2", "--to", "staging", "--by", "ann")  # v1 leaves staging -> none
    cli("promote", "churn", "2", "--to", "production", "--by", "bo", "--reason", "good")
    cli("promote", "churn", "3", "--to", "production", "--by", "bo")  # v2 archived
    stages = {v["version"]: v["stage"] for v in js(cli("models", "show", "churn", "--json"))["versions"]}
    assert stages == {1: "none", 2: "archived", 3: "production"}
    moves = [
        (e["version"], e["from_stage"], e["to_stage"], e["actor"])
        for e in audit_entries(repo.root)
        if e["event"] == "stage_changed"
    ]
    assert moves == [
        (1, "none", "staging", "ann"),
        (2, "none", "staging", "ann"),
        (1, "staging", "none", "ann"),
        (2, "staging", "production", "bo"),
        (3, "none", "production", "bo"),
        (2, "production", "archived", "bo"),
    ]
    first = next(e for e in audit_entries(repo.root) if e["event"] == "stage_changed")
    assert first["reason"] == "first look" and first["forced"] is False
    history = js(cli("history", "churn", "--json"))["entries"]
    assert [e["event"] for e in history] == ["registered"] * 3 + ["stage_changed"] * 6
    assert "replaced in production by churn:3" in cli("history", "churn").stdout
    # the same stage again changes nothing and records nothing
    again = js(cli("promote", "churn", "3", "--to", "production", "--json"))
    assert again["changed"] is False and len(audit_entries(repo.root)) == 9
    # archiving by hand, and back to none
    cli("promote", "churn", "3", "--to", "archived")
    assert resolve(repo, "churn:3").stage == "archived"


POLICY = """\
format: 1
stages:
  staging:
    metrics:
      - metrics.test_accuracy >= 0.8
  production:
    metrics:
      - metrics.test_accuracy >= 0.85
      - metrics.latency_ms < 50
    was_in: staging
    no_failed_drift_check: true
    approvals: 2
"""


def test_each_gate_fails_with_the_value_seen_then_passes(repo, cli) -> None:
    write_policy(repo.root, POLICY)
    _register(repo, metrics={"test_accuracy": 0.9, "latency_ms": 80})
    before = model_path(repo, "churn").read_bytes()
    refused = cli("promote", "churn", "1", "--to", "production", "--json", code=1)
    doc = js(refused)
    assert doc["error"] == "promotion_refused" and doc["changed"] is False
    failed = {f["rule"]: f["seen"] for f in doc["failed"]}
    assert failed == {
        "metrics.latency_ms < 50": 80,
        "was in staging": "never left 'none'",
        "approvals >= 2 (distinct people)": 0,
    }
    assert {c["rule"]: c["ok"] for c in doc["checks"]}["metrics.test_accuracy >= 0.85"] is True
    assert model_path(repo, "churn").read_bytes() == before  # refused: nothing changed
    assert audit_entries(repo.root)[-1]["event"] == "promotion_refused"
    text = cli("promote", "churn", "1", "--to", "production", code=1)
    assert "FAIL\tmetrics.latency_ms < 50\tseen: 80" in text.stdout
    assert "refused by 3 of 5 rule(s)" in text.stderr

    # meet the rules one by one
    cli("promote", "churn", "1", "--to", "staging")  # staging's gate: test_accuracy >= 0.8 holds
    cli("approve", "churn", "1", "--to", "production", "--by", "alice")
    cli("approve", "churn", "1", "--to", "production", "--by", "alice", "--comment", "still fine")
    still = {
        f["rule"]: f["seen"] for f in js(cli("promote", "churn", "1", "--to", "production", "--json", code=1))["failed"]
    }
    assert still == {"metrics.latency_ms < 50": 80, "approvals >= 2 (distinct people)": 1}  # alice counted once
    cli("approve", "churn", "1", "--to", "staging", "--by", "carol")  # an approval for another stage does not count
    assert js(cli("approve", "churn", "1", "--to", "production", "--by", "bob", "--json"))["count"] == 2
    record_drift_check(repo, "churn", 1, drifted=True, summary={"share": 0.6})
    still = {f["rule"] for f in js(cli("promote", "churn", "1", "--to", "production", "--json", code=1))["failed"]}
    assert still == {"metrics.latency_ms < 50", "no failed drift check"}
    # a version that meets every rule goes through
    _register(repo, metrics={"test_accuracy": 0.95, "latency_ms": 20})
    cli("promote", "churn", "2", "--to", "staging")
    approve(repo, "churn", 2, "production", by="alice")
    approve(repo, "churn", 2, "production", by="bob")
    done = js(cli("promote", "churn", "2", "--to", "production", "--reason", "all gates", "--json"))
    assert done["changed"] and not done["forced"] and all(c["ok"] for c in done["checks"]) and len(done["checks"]) == 5


def test_a_missing_metric_fails_its_rule(repo) -> None:
    write_policy(repo.root, "format: 1\nstages:\n  staging:\n    metrics: ['metrics.auc > 0.7']\n")
    _register(repo, metrics={"accuracy": 0.9})
    with pytest.raises(PromotionRefused) as refused:
        promote(repo, "churn", 1, "staging", actor="ci")
    (failed,) = refused.value.fields["failed"]
    assert failed["seen"] == "missing" and "metrics: accuracy" in failed["detail"]


def test_force_overrides_and_is_recorded_as_forced(repo, cli) -> None:
    write_policy(repo.root, POLICY)
    _register(repo, metrics={"test_accuracy": 0.5, "latency_ms": 10})
    assert "--force needs --reason" in cli("promote", "churn", "1", "--to", "production", "--force", code=2).stderr
    doc = js(
        cli(
            "promote",
            "churn",
            "1",
            "--to",
            "production",
            "--force",
            "--reason",
            "hotfix, reviewed by hand",
            "--by",
            "lead",
            "--json",
        )
    )
    assert (
        doc["forced"] and doc["changed"] and {o["rule"] for o in doc["overridden"]} >= {"metrics.test_accuracy >= 0.85"}
    )
    entry = audit_entries(repo.root)[-1]
    assert (
        entry["event"] == "stage_changed" and entry["forced"] is True and entry["reason"] == "hotfix, reviewed by hand"
    )
    assert entry["actor"] == "lead" and len(entry["overridden"]) == 3  # latency 10 < 50 held
    mv = resolve(repo, "churn@production")
    assert mv.stage_history[-1]["forced"] is True
    assert "FORCED" in cli("history", "churn").stdout


def test_per_model_rules_replace_the_default(repo) -> None:
    write_policy(repo.root, "format: 1\nstages:\n  staging:\n    approvals: 1\nmodels:\n  lenient:\n    staging: {}\n")
    _register(repo, name="lenient")
    _register(repo, name="strict")
    assert promote(repo, "lenient", 1, "staging", actor="ci").changed
    with pytest.raises(PromotionRefused):
        promote(repo, "strict", 1, "staging", actor="ci")


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("format: 1\nstages:\n  production:\n    metrics:\n      - metrics.acc >> 3\n", ":5:9", "not a metric rule"),
        ("format: 1\nstages:\n  production:\n    approvals: two\n", ":4:16", "'approvals' must be a whole number"),
        ("format: 1\nstages:\n  production:\n    aproovals: 2\n", ":4:5", "unknown rule 'aproovals'"),
        ("format: 1\nstages:\n  prod:\n    approvals: 2\n", ":3:3", "unknown target stage 'prod'"),
        ("format: 1\nstages:\n  production:\n    was_in: [qa]\n", ":4:14", "unknown stage 'qa'"),
        ("format: 1\nstages: [\n", ":3:1", "not valid YAML"),
        ("format: 9\n", "", "newer mlops"),
    ],
)
def test_a_bad_policy_file_exits_2_with_file_line_col(repo, cli, text, where, what) -> None:
    _register(repo)
    write_policy(repo.root, text)
    result = cli("promote", "churn", "1", "--to", "production", code=2)
    assert what in result.stderr and f".mlops/policy.yaml{where}" in result.stderr, result.stderr
    assert resolve(repo, "churn:1").stage == "none"


def test_approvals_are_audited_and_shown(repo, cli) -> None:
    _register(repo)
    cli("approve", "churn", "1", "--to", "production", "--by", "alice", "--comment", "reviewed")
    repeated = cli("approve", "churn", "1", "--to", "production", "--by", "alice")
    assert "counted once" in repeated.stderr
    entries = [e for e in audit_entries(repo.root) if e["event"] == "approved"]
    assert [(e["actor"], e["repeated"], e["comment"]) for e in entries] == [
        ("alice", False, "reviewed"),
        ("alice", True, ""),
    ]
    assert "production: alice" in cli("models", "show", "churn:1").stdout
    assert "approvals are for a target stage" in cli("approve", "churn", "1", "--to", "none", code=2).stderr


def test_broken_registry_and_policy_files_are_usage_errors_at_the_cli(repo, cli) -> None:
    """A file mlops cannot read as it expects is exit 2 with one line naming it (--json: its kind)."""
    _register(repo)
    path = model_path(repo, "churn")
    good = path.read_text()
    path.write_text(good[:40])  # cut short: not JSON
    for args in (["promote", "churn", "1", "--to", "staging"], ["models", "show", "churn"], ["history", "churn:1"]):
        result = cli(*args, code=2)
        assert ".mlops/registry/models/churn.json:" in result.stderr and "not valid JSON" in result.stderr, (
            result.stderr
        )
        assert result.stderr.count("\n") == 2 and "Traceback" not in result.stderr  # error + hint lines
    doc = js(cli("promote", "churn", "1", "--to", "staging", "--json", code=2))
    assert doc["error"] == "format" and doc["exit_code"] == 2
    path.write_text(good.replace('"format": 1', '"format": 7'))
    assert js(cli("models", "show", "churn", "--json", code=2))["error"] == "newer_format"
    path.write_text(good)
    write_policy(repo.root, "format: 1\nstages:\n  staging:\n    approvals: [\n")
    doc = js(cli("promote", "churn", "1", "--to", "staging", "--json", code=2))
    assert doc["error"] == "format" and ".mlops/policy.yaml:" in doc["message"]
    assert resolve(repo, "churn:1").stage == "none"


def test_a_folder_named_policy_yaml_is_one_line_exit_2(repo, cli) -> None:
    _register(repo)
    (repo.root / ".mlops" / "policy.yaml").mkdir()
    result = cli("promote", "churn", "1", "--to", "staging", code=2)
    assert result.stderr.splitlines()[0] == "error: .mlops/policy.yaml: is a folder, not a policy file"
    assert "internal error" not in result.stderr
    assert js(cli("promote", "churn", "1", "--to", "staging", "--json", code=2))["error"] == "config"
    assert resolve(repo, "churn:1").stage == "none"


def test_drift_checks_with_numpy_values_are_recorded(repo) -> None:
    import numpy as np

    _register(repo)
    record_drift_check(
        repo,
        "churn",
        1,
        drifted=False,
        summary={"share": np.float64(0.1), "columns": np.int64(3), "p": np.array([0.5, 0.2])},
    )
    (check,) = resolve(repo, "churn:1").drift_checks
    assert check["summary"] == {"share": 0.1, "columns": 3, "p": [0.5, 0.2]} and check["drifted"] is False
    entry = audit_entries(repo.root)[-1]
    assert entry["event"] == "drift_check" and entry["summary"]["columns"] == 3
