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

from regkit import MLOPS_BIN as MLOPS_BIN_
from regkit import audit_entries, write_pickle, write_policy

from mlops.registry import promote, register, resolve, verify_audit

GO = "GO"


def _start_together(
    commands: list[list[str]], cwd: Path, env: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
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
        subprocess.Popen(
            [sys.executable, "-c", waiter, "mlops", *cmd],
            cwd=cwd,
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cmd in commands
    ]
    deadline = time.monotonic() + 60
    while len(os.listdir(ready)) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.write_text("go")
    results = []
    for proc, cmd in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    gate.unlink()
    shutil.rmtree(ready)
    return results


def test_concurrent_registers_never_share_a_version_number(repo) -> None:
    for index in range(4):
        write_pickle(repo.root / f"m{index}.pkl", {"model": index})
    results = _start_together(
        [["register", "churn", f"m{i}.pkl", "--json", "--by", f"user{i}"] for i in range(4)], repo.root
    )
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
    results = _start_together(
        [
            ["promote", "churn", "1", "--to", "production", "--json", "--by", "job-a"],
            ["promote", "churn", "2", "--to", "production", "--json", "--by", "job-b"],
        ],
        repo.root,
    )
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    docs = [json.loads(r.stdout) for r in results]
    first, second = sorted(docs, key=lambda d: d["audit_seq"])
    # the later one replaced the earlier one in production: one holder, the other archived
    assert resolve(repo, "churn@production").version == second["version"]
    assert resolve(repo, f"churn:{first['version']}").stage == "archived"
    assert second["displaced"] == first["version"] and first["displaced"] is None
    moves = [
        (e["version"], e["to_stage"], e["actor"]) for e in audit_entries(repo.root) if e["event"] == "stage_changed"
    ]
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
    results = _start_together(
        [
            ["promote", "churn", "1", "--to", "production", "--json"],
            ["promote", "churn", "2", "--to", "production", "--json"],
        ],
        repo.root,
    )
    assert [r.returncode for r in results] == [1, 0]
    assert json.loads(results[0].stdout)["error"] == "promotion_refused"
    events = [
        (e["event"], e["version"])
        for e in audit_entries(repo.root)
        if e["event"] in ("stage_changed", "promotion_refused")
    ]
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


WRITER = """
import sys
from mlops.registry import set_alias
from mlops.repo.repo import find_repo
repo = find_repo()
for i in range(int(sys.argv[1])):
    set_alias(repo, "churn", 1 + i % 2, "best", actor="writer")
"""


def test_audit_verify_reads_consistently_while_another_process_writes(repo) -> None:
    """verify takes no lock: it reads the head, then the model files, then the log (the reverse of
    a writer's order), so a change landing meanwhile is never reported as tampering."""
    for number in (1, 2):
        write_pickle(repo.root / "m.pkl", {"model": number})
        register(repo, "churn", "m.pkl")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, "300"],
        cwd=repo.root,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLOPS_LOCK_TIMEOUT": "60"},
    )
    checks, false_alarms = 0, []
    try:
        while writer.poll() is None:
            report = verify_audit(repo)
            checks += 1
            if not report.ok:
                false_alarms.append([p.message for p in report.problems])
    finally:
        _, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert checks >= 20  # the two really overlapped
    assert false_alarms == []
    assert verify_audit(repo).ok and len(audit_entries(repo.root)) == 302


GC_LOOP = """
import os, subprocess, sys
stop, mlops = sys.argv[1], sys.argv[2]
runs = 0
while not os.path.exists(stop):
    proc = subprocess.run([mlops, "gc", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"gc failed: {proc.stderr}")
    runs += 1
print(runs)
"""


def test_gc_running_during_register_never_deletes_the_new_artifact(repo, mlops_bin) -> None:
    """register holds the store lock (shared) from storing the artifact until the registry names
    it, and gc reads the registry's roots inside its exclusive hold: no window in between."""
    import pickle

    from regkit import MLOPS_BIN
    from sklearn.tree import DecisionTreeClassifier

    for index in range(4):  # distinct scikit-learn models: each register loads one to infer its signature
        model = DecisionTreeClassifier(max_depth=index + 1).fit(
            [[i, index] for i in range(8)], [i % 2 for i in range(8)]
        )
        (repo.root / f"m{index}.pkl").write_bytes(pickle.dumps(model))
    stop = repo.root.parent / "stop-gc"
    env = {**os.environ, "MLOPS_LOCK_TIMEOUT": "60"}
    gc_loop = subprocess.Popen(
        [sys.executable, "-c", GC_LOOP, str(stop), MLOPS_BIN],
        cwd=repo.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for index in range(4):
            mlops_bin("register", "churn", f"m{index}.pkl", env={"MLOPS_LOCK_TIMEOUT": "60"})
    finally:
        stop.write_text("stop")
        out, err = gc_loop.communicate(timeout=120)
    assert gc_loop.returncode == 0, err
    assert int(out) >= 4  # gc really ran alongside
    from mlops.registry import load_model, versions

    for mv in versions(repo, "churn"):
        assert repo.objects.exists(mv.artifact), f"{mv.ref()}: its artifact was deleted by gc"
        assert load_model(mv, repo).max_depth == mv.version
    assert verify_audit(repo).ok


def _has_open(pid: int, name: str) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_a_reference_is_resolved_inside_the_registry_lock(repo) -> None:
    """`mlops promote churn@staging --to production` acts on the version in staging when it holds
    the lock, not on the one that was there when the command started."""
    from mlops.registry.store import transaction

    for index in (1, 2):
        write_pickle(repo.root / "m.pkl", {"model": index})
        register(repo, "churn", "m.pkl")
    promote(repo, "churn", 1, "staging", actor="ci")
    with transaction(repo) as txn:  # this process holds the registry lock
        proc = subprocess.Popen(
            [MLOPS_BIN_, "promote", "churn@staging", "--to", "production", "--json"],
            cwd=repo.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MLOPS_LOCK_TIMEOUT": "60"},
        )
        deadline = time.monotonic() + 60
        while not _has_open(proc.pid, "registry.lock") and time.monotonic() < deadline:  # waiting for the lock
            time.sleep(0.01)
        assert proc.poll() is None
        # meanwhile, staging changes hands (inside the held lock, as a promote would do it)
        doc = txn.model("churn")
        for record in doc["versions"]:
            record["stage"] = {1: "none", 2: "staging"}[record["version"]]
        txn.record("stage_changed", model="churn", version=2, from_stage="none", to_stage="staging", actor="ci")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["version"] == 2
    assert resolve(repo, "churn@production").version == 2 and resolve(repo, "churn:1").stage == "none"
    assert verify_audit(repo).ok
