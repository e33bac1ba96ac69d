"""Approvals name a real identity: git's user.email by default; `approver_not_author` keeps the
person who registered or promoted a version from approving it; `mlops approve --sign` signs with
an SSH key as git does, and `mlops audit verify` checks it against .mlops/allowed_signers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from regkit import write_pickle

from mlops.registry import promote, register

POLICY = """format: 1
stages:
  production:
    approvals: 1
    approver_not_author: true
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _identity(root: Path, email: str) -> None:
    _git(root, "config", "user.email", email)


def _key(folder: Path, name: str) -> tuple[Path, str]:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key, key.with_suffix(".pub").read_text().strip()


@pytest.fixture
def authored(repo, monkeypatch: pytest.MonkeyPatch):
    """churn:1 registered and put in staging by ann@example.com (her git identity)."""
    monkeypatch.delenv("MLOPS_USER", raising=False)
    _identity(repo.root, "ann@example.com")
    write_pickle(repo.root / "m.pkl", {"v": 1})
    register(repo, "churn", "m.pkl")
    promote(repo, "churn", 1, "staging")
    (repo.dot / "policy.yaml").write_text(POLICY)
    return repo


def test_the_approver_is_the_git_identity_and_the_author_cannot_approve(authored, cli) -> None:
    refused = cli("approve", "churn", "1", "--to", "production", code=1)
    assert "ann@example.com registered or promoted it" in refused.stderr
    refused = cli("promote", "churn", "1", "--to", "production", code=1)
    assert "approvals >= 1" in refused.stdout
    _identity(authored.root, "bob@example.com")
    approved = json.loads(cli("approve", "churn", "1", "--to", "production", "--json").stdout)
    assert approved["by"] == "bob@example.com"
    promoted = json.loads(cli("promote", "churn", "1", "--to", "production", "--json").stdout)
    assert promoted["changed"] and promoted["to_stage"] == "production"


def test_an_authors_approval_recorded_before_the_rule_does_not_count(authored, cli) -> None:
    (authored.dot / "policy.yaml").write_text(POLICY.replace("    approver_not_author: true\n", ""))
    cli("approve", "churn", "1", "--to", "production")  # ann, while the rule was off
    (authored.dot / "policy.yaml").write_text(POLICY)
    refused = cli("promote", "churn", "1", "--to", "production", code=1)
    assert "ann@example.com (registered or promoted it)" in refused.stdout


def test_signed_approvals_count_and_verify_and_a_forged_one_is_found(authored, cli, tmp_path: Path) -> None:
    (authored.dot / "policy.yaml").write_text(POLICY + "    signed_approvals: true\n")
    bob_key, bob_pub = _key(tmp_path, "bob")
    eve_key, _ = _key(tmp_path, "eve")
    (authored.dot / "allowed_signers").write_text(f"bob@example.com {bob_pub}\n")
    _identity(authored.root, "bob@example.com")

    cli("approve", "churn", "1", "--to", "production")  # bob, unsigned: does not count
    refused = cli("promote", "churn", "1", "--to", "production", code=1)
    assert "not signed" in refused.stdout

    cli("approve", "churn", "1", "--to", "production", "--by", "carol@example.com", "--sign", "--key", str(eve_key))
    out = cli("audit", "verify", code=1)  # carol is no allowed signer (and eve signed): found
    assert "carol@example.com does not verify" in out.stdout

    _git(authored.root, "config", "user.signingkey", str(bob_key))
    signed = cli("approve", "churn", "1", "--to", "production", "--sign")
    assert "(signed)" in signed.stdout
    promoted = json.loads(cli("promote", "churn", "1", "--to", "production", "--json").stdout)
    assert promoted["changed"]
    gate = next(c for c in promoted["checks"] if c["rule"].startswith("approvals"))
    assert gate["seen"] == 1 and "carol@example.com (not signed" in gate["detail"]


def test_a_signed_approval_verifies_until_its_key_is_withdrawn(authored, cli, tmp_path: Path) -> None:
    bob_key, bob_pub = _key(tmp_path, "bob")
    (authored.dot / "allowed_signers").write_text(f"bob@example.com {bob_pub}\n")
    _identity(authored.root, "bob@example.com")
    cli("approve", "churn", "1", "--to", "production", "--sign", "--key", str(bob_key), "-m", "looked at it")
    assert "audit log ok" in cli("audit", "verify").stdout
    (authored.dot / "allowed_signers").write_text("")  # bob's key withdrawn: the signature no longer verifies
    assert "does not verify" in cli("audit", "verify", code=1).stdout
