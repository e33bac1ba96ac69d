"""Two `mlops promote` and several `mlops register` processes at the same moment: serialized by
the registry lock, every outcome recorded in order, files never half-written, versions unique."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from regkit import audit_entries, write_pickle, write_policy

from mlops.registry import promote, register, resolve, verify_audit

GO = "GO"


def _start_together(commands: list[list[str]], cwd: Path, env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Run every command in its own real process, released at one moment: each imports mlops,
    says it is ready, and waits for a shared start file, so they reach the registry together.
    Returns their results in command order."""
    gate = cwd.parent / GO
    ready = cwd.parent / "ready"
    ready.mkdir(exist_ok=True)
    waiter = (
        "import os, sys, time\n"
        "from mlops.cli.main import main\n"  # imported first: the processes meet at the registry, not at import
        f"open(os.path.join({str(ready)!r}, str(os.getpid())), 'w').close()\n"
        f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.001)\n"
        "sys.argv = sys.argv[1:]\n"
        "main()\n"
    )
    full = {**os.environ, "MLOPS_LOCK_TIMEOUT": "60", **(env or {})}
    procs = [
        subprocess.Popen([sys.executable, "-c", waiter, "mlops", *cmd], cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd in commands
    ]
    deadline = time.monotonic() + 60
    while len(os.listdir(ready)) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.write_text("go")
    results = []
    for proc, cmd in zip(procs, commands):
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    gate.unlink()
    shutil.rmtree(ready)
    return results


def test_concurrent_registers_never_share_a_version_number(repo) -> None:
    for index in range(4):
        write_pickle(repo.root / f"m{index}.pkl", {"model": index})
    results = _start_together([["register", "churn", f"m{i}.pkl", "--json", "--by", f"user{i}"] for i in range(4)], repo.root)
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    numbers = sorted(json.loads(r.stdout)["version"] for r in results)
    assert numbers == [1, 2, 3, 4]
    # each number names that process's own artifact
    for index, result in enumerate(results):
        version = json.loads(result.stdout)["version"]
        assert resolve(repo, f"churn:{version}").registered_by == f"user{index}"
    entries = audit_entries(repo.root)
    assert [e["version"] for e in entries] == [1, 2, 3, 4] and [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert verify_audit(repo).ok
    doc = json.loads((repo.root / ".mlops/registry/models/churn.json").read_text())  # whole, parseable
    assert doc["next_version"] == 5


def test_two_concurrent_promotes_are_serialized_and_both_recorded(repo) -> None:
    for index in (1, 2):
        write_pickle(repo.root / "m.pkl", {"model": index})
        register(repo, "churn", "m.pkl")
    results = _start_together([
        ["promote", "churn", "1", "--to", "production", "--json", "--by", "job-a"],
        ["promote", "churn", "2", "--to", "production", "--json", "--by", "job-b"],
    ], repo.root)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    docs = [json.loads(r.stdout) for r in results]
    first, second = sorted(docs, key=lambda d: d["audit_seq"])
    # the later one replaced the earlier one in production: one holder, the other archived
    assert resolve(repo, "churn@production").version == second["version"]
    assert resolve(repo, f"churn:{first['version']}").stage == "archived"
    assert second["displaced"] == first["version"] and first["displaced"] is None
    moves = [(e["version"], e["to_stage"], e["actor"]) for e in audit_entries(repo.root) if e["event"] == "stage_changed"]
    actor = {1: "job-a", 2: "job-b"}
    assert moves == [
        (first["version"], "production", actor[first["version"]]),
        (second["version"], "production", actor[second["version"]]),
        (first["version"], "archived", actor[second["version"]]),
    ]
    assert verify_audit(repo).ok


def test_concurrent_promotes_against_a_gate_both_outcomes_recorded(repo) -> None:
    write_policy(repo.root, "format: 1\nstages:\n  production:\n    approvals: 1\n")
    for index in (1, 2):
        write_pickle(repo.root / "m.pkl", {"model": index})
        register(repo, "churn", "m.pkl")
    from mlops.registry import approve

    approve(repo, "churn", 2, "production", by="alice")
    results = _start_together([
        ["promote", "churn", "1", "--to", "production", "--json"],
        ["promote", "churn", "2", "--to", "production", "--json"],
    ], repo.root)
    assert [r.returncode for r in results] == [1, 0]
    assert json.loads(results[0].stdout)["error"] == "promotion_refused"
    events = [(e["event"], e["version"]) for e in audit_entries(repo.root) if e["event"] in ("stage_changed", "promotion_refused")]
    assert sorted(events) == [("promotion_refused", 1), ("stage_changed", 2)]
    assert resolve(repo, "churn@production").version == 2 and verify_audit(repo).ok


def test_a_held_registry_lock_makes_a_writer_wait_then_exit_3(repo, mlops_bin) -> None:
    write_pickle(repo.root / "m.pkl", {"model": 1})
    register(repo, "churn", "m.pkl")
    with repo.lock("registry", what="the model registry"):
        result = mlops_bin("promote", "churn", "1", "--to", "staging", code=3, env={"MLOPS_LOCK_TIMEOUT": "0.3"})
    assert "holds the lock on the model registry" in result.stderr
    assert resolve(repo, "churn:1").stage == "none"
    promote(repo, "churn", 1, "staging", actor="ci")  # free again
