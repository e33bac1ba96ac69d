"""A real `mlops promote` / `mlops register` killed (SIGKILL) in the middle of a change: the next
command accepts the state (settling it with an entry, never a rewrite) and `audit verify` passes.

The kill points are real moments of the real command: a Python audit hook (installed before mlops
is imported; no mlops function is replaced) sends SIGKILL to the process when it reaches a
given OS call - opening the audit log to append, creating the model file's temp file, renaming
it into place, creating the head's temp file. A second test kills at varied times instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from regkit import audit_entries, js, mlops, write_pickle

from mlops.registry import promote, register, resolve, verify_audit

KILL_AT = r"""
import os, signal, sys
point, _, nth = sys.argv[1].partition("#")  # "head#2": at the second time the point is reached
argv, seen = sys.argv[2:], [0]
def hook(event, args):
    hit = False
    if event == "open" and isinstance(args[0], (str, bytes)):
        path, flags = os.fsdecode(args[0]), args[2] if isinstance(args[2], int) else 0
        hit = ((point == "append" and path.endswith("/registry/audit.jsonl") and flags & os.O_APPEND)
               or (point == "model_file" and "/registry/models/.tmp-mlops-" in path)
               or (point == "head" and "/registry/.tmp-mlops-audit.head" in path))
    elif event == "os.rename" and point == "model_rename":
        hit = "/registry/models/" in os.fsdecode(args[1]) and not os.path.basename(os.fsdecode(args[1])).startswith(".")
    if hit:
        seen[0] += 1
        if seen[0] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
sys.argv = ["mlops", *argv]
from mlops.cli.main import main
main()
"""


def _killed_at(point: str, root: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AT, point, *args], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, f"not killed at {point}: {proc.returncode}\n{proc.stderr}"


def _temps(root: Path) -> list[str]:
    return sorted(p.name for p in (root / ".mlops" / "registry").rglob(".tmp-mlops-*"))


@pytest.mark.parametrize(
    "point, landed, events",
    [
        ("append", False, ["registered", "alias_set"]),  # before the entry: nothing happened
        ("model_file", False, ["registered", "stage_changed", "interrupted", "alias_set"]),  # entry, no model file
        (
            "model_rename",
            False,
            ["registered", "stage_changed", "interrupted", "alias_set"],
        ),  # model file written, not placed
        ("head", True, ["registered", "stage_changed", "alias_set"]),  # model file placed, head not moved
    ],
)
def test_a_promote_killed_midway_is_accepted_by_the_next_command(repo, point, landed, events) -> None:
    write_pickle(repo.root / "m.pkl", {"v": 1})
    register(repo, "churn", "m.pkl")
    _killed_at(point, repo.root, "promote", "churn", "1", "--to", "staging", "--reason", "crash test")
    assert resolve(repo, "churn:1").stage == ("staging" if landed else "none")
    report = js(mlops("audit", "verify", "--json", cwd=repo.root))  # not tampering: at most a note
    assert report["ok"]
    if point != "append":
        assert [n["kind"] for n in report["notes"]] == ["pending"]
    if point == "model_rename":
        assert _temps(repo.root)  # the killed writer's temp file is still there
    mlops("alias", "churn", "1", "stable", cwd=repo.root)  # the next change settles, then goes on
    assert [e["event"] for e in audit_entries(repo.root)] == events
    assert _temps(repo.root) == []  # swept by the next writer: nothing half-written gets committed
    assert verify_audit(repo).ok
    assert resolve(repo, "churn@stable").stage == ("staging" if landed else "none")
    mlops("promote", "churn", "1", "--to", "staging", cwd=repo.root)  # and the change can be made (again)
    assert resolve(repo, "churn:1").stage == "staging" and verify_audit(repo).ok


@pytest.mark.parametrize(
    "point, version_after",
    [
        ("head#1", 1),  # the first change anchors the head at the genesis: killed there, nothing happened
        ("append", 1),  # artifact stored, no entry
        ("model_file", 1),  # entry appended, model file never written
        ("head#2", 2),  # model file written, head not moved: it landed
    ],
)
def test_a_register_killed_midway_leaves_nothing_the_next_commands_refuse(repo, point, version_after) -> None:
    write_pickle(repo.root / "m.pkl", {"v": 1})
    _killed_at(point, repo.root, "register", "churn", "m.pkl")
    stored = [d for d in repo.objects.iter_digests()]
    assert len(stored) == 1  # the artifact was stored before the kill (children before parents)
    assert js(mlops("audit", "verify", "--json", cwd=repo.root))["ok"]
    if point in ("head#1", "append"):  # the registry never named it: gc may take it
        assert js(mlops("gc", "--json", cwd=repo.root))["removed"] == 1
    # a registration that never reached its model file does not make the name "deleted"
    doc = js(mlops("register", "churn", "m.pkl", "--json", cwd=repo.root))
    assert doc["version"] == version_after
    events = [e["event"] for e in audit_entries(repo.root)]
    assert (
        events
        == {
            "head#1": ["registered"],
            "append": ["registered"],
            "model_file": ["registered", "interrupted", "registered"],
            "head#2": ["registered", "registered"],
        }[point]
    )
    assert verify_audit(repo).ok and _temps(repo.root) == []
    assert js(mlops("gc", "--json", cwd=repo.root))["removed"] == 0  # the registered artifact is kept


def test_promotes_killed_at_varied_moments_never_leave_a_state_the_next_command_refuses(repo) -> None:
    write_pickle(repo.root / "m.pkl", {"v": 1})
    register(repo, "churn", "m.pkl")
    started = time.monotonic()
    mlops("promote", "churn", "1", "--to", "staging", cwd=repo.root)
    whole = time.monotonic() - started  # one full run: the kills below land across it
    promote(repo, "churn", 1, "none", actor="ci")
    env = {**os.environ, "MLOPS_LOCK_TIMEOUT": "30"}
    for index, fraction in enumerate((0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.1)):
        target = "staging" if resolve(repo, "churn:1").stage == "none" else "none"
        proc = subprocess.Popen(
            [mlops.__globals__["MLOPS_BIN"], "promote", "churn", "1", "--to", target],
            cwd=repo.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(whole * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        mlops("alias", "churn", "1", f"after{index}", cwd=repo.root)  # accepted, settled
        assert verify_audit(repo).ok, [p.message for p in verify_audit(repo).problems]
        # the stage is what the log says landed: the last stage change of v1 that was not voided
        entries = audit_entries(repo.root)
        void = {e.get("of") for e in entries if e["event"] == "interrupted"}
        moves = [e["to_stage"] for e in entries if e["event"] == "stage_changed" and e["seq"] not in void]
        assert resolve(repo, "churn:1").stage == moves[-1]
    assert _temps(repo.root) == []
    doc = json.loads((repo.root / ".mlops/registry/models/churn.json").read_text())
    assert doc["aliases"] == {f"after{i}": 1 for i in range(8)}


def test_models_show_version_option_and_reference_agree(repo, cli) -> None:
    write_pickle(repo.root / "m.pkl", {"v": 1})
    register(repo, "churn", "m.pkl")
    register(repo, "churn", "m.pkl")
    assert js(cli("models", "show", "churn", "--version", "2", "--json")) == js(
        cli("models", "show", "churn:2", "--json")
    )
    assert "either a reference" in cli("models", "show", "churn:1", "--version", "2", code=2).stderr
