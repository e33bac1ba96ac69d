"""Writers check a model file against its audit anchor before changing it: a hand-edited,
re-anchored, rolled-back or deleted model file stops every writer (exit 3, nothing written),
so the next write never launders the evidence; `audit verify` keeps finding it (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from regkit import audit_lines, git, js, write_pickle, write_policy

from mlops.errors import RegistryTampered
from mlops.registry import approve, promote, record_drift_check, register, set_alias, verify_audit
from mlops.registry.audit import entry_hash, state_hash
from mlops.tracking.store import create_run, finish_run, log_metrics

POLICY = "format: 1\nstages:\n  production:\n    metrics: ['metrics.acc >= 0.9']\n    approvals: 2\n"


def _model_file(repo) -> Path:
    return repo.root / ".mlops/registry/models/churn.json"


def _registry_bytes(repo) -> dict[str, bytes]:
    folder = repo.root / ".mlops/registry"
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def weak(repo):
    """churn:1 with a real run that logged acc 0.5, under a policy that wants 0.9 and two approvals."""
    write_policy(repo.root, POLICY)
    write_pickle(repo.root / "m.pkl", {"n": 1})
    run_id = create_run(repo, None, "scripted", source="api")["id"]
    log_metrics(repo, run_id, {"acc": 0.5})
    finish_run(repo, run_id)
    register(repo, "churn", "m.pkl", run=run_id)
    return repo


def _forge_gates(repo) -> None:
    """What a hurried person does: edit the metrics and add two approvals by hand."""
    doc = json.loads(_model_file(repo).read_text())
    record = doc["versions"][0]
    record["metrics"]["acc"] = 0.99
    record["approvals"] = [
        {"stage": "production", "by": who, "at": "2026-01-01T00:00:00Z", "comment": ""} for who in ("ann", "bo")
    ]
    _model_file(repo).write_text(json.dumps(doc, indent=2))


def test_a_forged_model_file_does_not_pass_the_gates_and_the_evidence_stays(weak, cli) -> None:
    _forge_gates(weak)
    assert [p["kind"] for p in js(cli("audit", "verify", "--json", code=1))["problems"]] == ["model_file"]
    before = _registry_bytes(weak)
    result = cli("promote", "churn", "1", "--to", "production", code=3)  # not 0 (passed), not 1 (a gate)
    assert (
        "churn.json was changed outside mlops" in result.stderr and "refusing to change the registry" in result.stderr
    )
    assert js(cli("promote", "churn", "1", "--to", "production", "--json", code=3))["error"] == "registry_tampered"
    # every other writer refuses too, and nothing at all is written
    cli("approve", "churn", "1", "--to", "production", "--by", "cy", code=3)
    cli("alias", "churn", "1", "best", code=3)
    cli("rollback", "churn", code=3)
    with pytest.raises(RegistryTampered):
        record_drift_check(weak, "churn", 1, drifted=False, summary={})
    with pytest.raises(RegistryTampered):
        register(weak, "churn", "m.pkl")
    assert _registry_bytes(weak) == before
    assert [p["kind"] for p in js(cli("audit", "verify", "--json", code=1))["problems"]] == [
        "model_file"
    ]  # still there


def test_a_forger_who_recomputes_the_state_is_caught_by_the_entry(weak, cli) -> None:
    _forge_gates(weak)
    doc = json.loads(_model_file(weak).read_text())
    doc["audit"]["state"] = state_hash(doc)  # the file now agrees with its own anchor, not with the log
    _model_file(weak).write_text(json.dumps(doc, indent=2))
    before = _registry_bytes(weak)
    assert "was changed outside mlops" in cli("promote", "churn", "1", "--to", "production", code=3).stderr
    assert _registry_bytes(weak) == before
    cli("audit", "verify", code=1)


def test_a_model_file_naming_a_missing_or_forged_entry_is_refused(weak) -> None:
    approve(weak, "churn", 1, "production", by="ann")
    doc = json.loads(_model_file(weak).read_text())
    original = json.dumps(doc, indent=2)
    doc["audit"]["seq"] = 99  # the anchor entry is not in the log
    _model_file(weak).write_text(json.dumps(doc, indent=2))
    with pytest.raises(RegistryTampered, match="names audit entry #99, which is not in the log"):
        approve(weak, "churn", 1, "production", by="bo")
    doc["audit"]["seq"], doc["audit"]["hash"] = 2, entry_hash({"x": 1})  # the entry is there, but it is another one
    _model_file(weak).write_text(json.dumps(doc, indent=2))
    with pytest.raises(RegistryTampered, match="not the entry"):
        approve(weak, "churn", 1, "production", by="bo")
    del doc["audit"]
    _model_file(weak).write_text(json.dumps(doc, indent=2))
    with pytest.raises(RegistryTampered, match="no audit anchor"):
        approve(weak, "churn", 1, "production", by="bo")
    _model_file(weak).write_text(original)  # put right: writers go on
    assert approve(weak, "churn", 1, "production", by="bo").approvers == ("ann", "bo")
    assert verify_audit(weak).ok


def test_an_older_copy_put_back_is_refused_by_writers(weak, cli) -> None:
    older = _model_file(weak).read_bytes()
    set_alias(weak, "churn", 1, "best", actor="ann")
    _model_file(weak).write_bytes(older)  # self-consistent, but the alias change is quietly undone
    before = _registry_bytes(weak)
    assert "older than audit entry #2" in cli("alias", "churn", "1", "other", code=3).stderr
    assert _registry_bytes(weak) == before


def test_a_deleted_model_file_is_reported_and_its_name_is_not_reused(repo, cli) -> None:
    write_pickle(repo.root / "m.pkl", {"n": 1})
    register(repo, "evil", "m.pkl")
    register(repo, "evil", "m.pkl")
    register(repo, "other", "m.pkl")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "registry")
    (repo.root / ".mlops/registry/models/evil.json").unlink()
    report = js(cli("audit", "verify", "--json", code=1))
    assert [(p["kind"], p["seq"]) for p in report["problems"]] == [("deleted", 2)]
    assert (
        ".mlops/registry/models/evil.json was deleted: audit entries #1-#2 wrote it" in report["problems"][0]["message"]
    )
    lines = audit_lines(repo.root)
    refused = cli("register", "evil", "m.pkl", code=3)  # never evil:1 again
    assert (
        "evil.json is missing, but audit entries #1-#2 wrote it" in refused.stderr
        and "git checkout --" in refused.stderr
    )
    assert "model file was deleted" in cli("promote", "evil", "1", "--to", "staging", code=3).stderr
    assert audit_lines(repo.root) == lines and not (repo.root / ".mlops/registry/models/evil.json").exists()
    assert promote(repo, "other", 1, "staging", actor="ci").changed  # other models are not held hostage
    git(repo.root, "checkout", "--", ".mlops/registry/models/evil.json")  # restored: numbering goes on
    assert js(cli("register", "evil", "m.pkl", "--json"))["version"] == 3
    assert verify_audit(repo).ok
