"""A process killed in the middle of a registry change: the next command accepts the state
(settling it with an entry, never a rewrite) and `audit verify` passes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from regkit import audit_entries, js, write_pickle

from mlops.registry import register, resolve, verify_audit

KILL_AT = """
import os, sys
import mlops.registry.store as store
import mlops.registry.audit as audit
point = sys.argv[1]
if point == "model_file":        # after the audit append, before the model file is replaced
    real = store.atomic_write
    def dying(path, data):
        if str(path).endswith(".json"):
            os._exit(9)
        return real(path, data)
    store.atomic_write = dying
elif point == "append":          # before the audit entry is written: nothing may change
    def dying(path, record):
        os._exit(9)
    audit.append_record = dying
elif point == "head":            # after the model file, before the head moves
    real_head = audit.write_head
    def dying(path, seq, digest):
        os._exit(9)
    audit.write_head = dying
from mlops.registry import promote
from mlops.repo.repo import find_repo
promote(find_repo(), "churn", 1, "staging", actor="ci", reason="crash test")
"""


@pytest.mark.parametrize("point, landed", [("append", False), ("model_file", False), ("head", True)])
def test_a_change_killed_midway_is_accepted_by_the_next_command(repo, cli, point, landed) -> None:
    write_pickle(repo.root / "m.pkl", {"v": 1})
    register(repo, "churn", "m.pkl")
    proc = subprocess.run([sys.executable, "-c", KILL_AT, point], cwd=repo.root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    assert resolve(repo, "churn:1").stage == ("staging" if landed else "none")
    cli("alias", "churn", "1", "stable")  # the next change settles, then goes on
    events = [e["event"] for e in audit_entries(repo.root)]
    if point == "append":
        assert events == ["registered", "alias_set"]
    elif point == "model_file":
        assert events == ["registered", "stage_changed", "interrupted", "alias_set"]
    else:
        assert events == ["registered", "stage_changed", "alias_set"]
    assert verify_audit(repo).ok
    assert js(cli("audit", "verify", "--json"))["ok"]
    assert resolve(repo, "churn@stable").stage == ("staging" if landed else "none")
    cli("promote", "churn", "1", "--to", "staging")  # and the change can be made again
    assert verify_audit(repo).ok


def test_models_show_version_option_and_reference_agree(repo, cli) -> None:
    write_pickle(repo.root / "m.pkl", {"v": 1})
    register(repo, "churn", "m.pkl")
    register(repo, "churn", "m.pkl")
    assert js(cli("models", "show", "churn", "--version", "2", "--json")) == js(cli("models", "show", "churn:2", "--json"))
    assert "either a reference" in cli("models", "show", "churn:1", "--version", "2", code=2).stderr
