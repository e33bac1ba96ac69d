"""A real `mlops promote --to production` / `mlops rollback` killed (SIGKILL) between its registry
write and its deployment write: the registry has changed, the deployment file has not. The next
commands report the disagreement (`canary status`, `models show`), the next flow repairs it
(`mlops deploy`, or the killed command run again), and afterwards the two agree and
`mlops audit verify` and `mlops verify` pass.

Where the process stops is chosen, never guessed, and nothing in mlops knows about it:
- ``read``: the deployment file is swapped for a FIFO holding its bytes back, so the command
  (which first reads the file after its registry transaction has committed) blocks in the read;
  the test sees it there (a writer can open the FIFO only once a reader has), checks that the
  registry already changed, and sends SIGKILL. The file's own bytes are then put back: exactly
  what a crash at that moment leaves behind.
- ``temp`` / ``rename``: a Python audit hook installed before mlops is imported (no mlops function
  is replaced) sends SIGKILL when the process creates the deployment's temp file (its
  ``deployment_followed`` audit entry already written) or renames it into place.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops.registry import resolve
from mlops.repo.repo import Repo
from mlops.serve.deployment import deployment_path, load_deployment

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))

KILL_AT = r"""
import os, signal, sys
point, argv = sys.argv[1], sys.argv[2:]
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        hit = point == "temp" and "/.mlops/deployments/.tmp-mlops-" in os.fsdecode(args[0])
    elif event == "os.rename":
        hit = point == "rename" and os.fsdecode(args[1]).endswith("/.mlops/deployments/churn.yaml")
    else:
        hit = False
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
sys.argv = ["mlops", *argv]
from mlops.cli.main import main
main()
"""

# the killed flow, the registry's production version it leaves, and the deployment's (one step behind)
FLOWS = {
    "promote": (("promote", "churn", "3", "--to", "production", "--reason", "v3 is better"), 3, 2),
    "rollback": (("rollback", "churn", "--reason", "v2 answers wrong"), 1, 2),
}


@pytest.fixture
def deployed(repo: Repo, cli) -> Repo:
    """churn v1..v3 registered; v1 then v2 in production; a deployment file following it (v2)."""
    for number in (1, 2, 3):
        (repo.root / f"model{number}.bin").write_bytes(f"model {number}\n".encode())
        cli("register", "churn", f"model{number}.bin")
    cli("promote", "churn", "1", "--to", "production")
    cli("deploy", "churn")
    cli("promote", "churn", "2", "--to", "production")
    assert load_deployment(repo, "churn").production == 2
    return repo


def _kill_at_read(root: Path, args: tuple[str, ...]) -> None:
    """Run the command with the deployment file swapped for a FIFO; SIGKILL it once it waits there."""
    path = deployment_path(Repo(root), "churn")
    kept = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    proc = subprocess.Popen([MLOPS_BIN, *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:
            try:  # opens only once the command has the FIFO open for reading: it is at the read
                writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                if proc.poll() is not None or time.monotonic() > deadline:
                    out, err = proc.communicate()
                    pytest.fail(f"mlops {' '.join(args)} never read the deployment file ({proc.returncode}):\n{err}")
                time.sleep(0.02)
        proc.kill()
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.communicate()
        if writer is not None:
            os.close(writer)
        path.unlink()
        path.write_bytes(kept)  # what the crash left: the file as it was before the command


def _kill_at(point: str, root: Path, args: tuple[str, ...]) -> None:
    if point == "read":
        _kill_at_read(root, args)
        return
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AT, point, *args], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, f"not killed at {point}: {proc.returncode}\n{proc.stderr}"


def _serving(cli) -> tuple[tuple[int, int, str], tuple[int, int, str], dict]:
    """(registry, deployed, agreement) as `canary status` and as `models show` report them, and the agreement."""
    status = json.loads(cli("canary", "status", "churn", "--json").stdout)
    shown = json.loads(cli("models", "show", "churn", "--json").stdout)["serving"]
    return (
        (status["registry_production"], status["production"], status["agreement"]["state"]),
        (shown["registry"], shown["deployed"], shown["agreement"]["state"]),
        status["agreement"],
    )


def _crash(repo: Repo, cli, point: str, flow: str) -> tuple[int, int]:
    args, now, behind = FLOWS[flow]
    _kill_at(point, repo.root, args)
    assert resolve(repo, "churn@production").version == now  # the registry's change committed
    assert load_deployment(repo, "churn").production == behind  # the deployment's did not
    status, shown, agreement = _serving(cli)
    assert status == shown == (now, behind, "behind")
    assert "mlops deploy churn" in agreement["hint"]
    return now, behind


def _agree_and_verify(repo: Repo, cli, version: int) -> None:
    assert resolve(repo, "churn@production").version == version
    dep = load_deployment(repo, "churn")
    assert dep.production == version and not dep.pinned
    status, shown, _ = _serving(cli)
    assert status == shown == (version, version, "agrees")
    audit = json.loads(cli("audit", "verify", "--json").stdout)
    assert audit["ok"] is True, audit
    cli("verify")
    # the killed writer's temp file went with the next write of the file (it would show in git)
    assert [p.name for p in (repo.root / ".mlops" / "deployments").iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("point", ["read", "temp", "rename"])
@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_a_flow_killed_between_registry_and_deployment_is_reported_then_repaired_by_deploy(
    deployed: Repo, cli, point: str, flow: str
) -> None:
    now, _ = _crash(deployed, cli, point, flow)
    proc = subprocess.run([MLOPS_BIN, "deploy", "churn"], cwd=deployed.root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    _agree_and_verify(deployed, cli, now)
    entries = json.loads(cli("history", "churn", "--json").stdout)["entries"]
    assert (entries[-1]["event"], entries[-1]["production"]) == ("deploy", now)


@pytest.mark.parametrize("point", ["read", "rename"])
def test_a_killed_promotion_run_again_repairs_the_deployment(deployed: Repo, cli, point: str) -> None:
    """The natural next step after a crash: the same command again. The registry already holds the
    version (nothing to change there), but the deployment must still be made to agree."""
    args, now, _ = FLOWS["promote"]
    _crash(deployed, cli, point, "promote")
    if point == "read":  # the text output says the deployment caught up, not only "already in production"
        text = subprocess.run([MLOPS_BIN, *args], cwd=deployed.root, capture_output=True, text=True)
        assert text.returncode == 0, text.stderr
        assert "is already in production" in text.stdout
        assert f"follows: production v{now}" in text.stderr
    else:
        proc = subprocess.run([MLOPS_BIN, *args, "--json"], cwd=deployed.root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        again = json.loads(proc.stdout)
        assert (again["changed"], again["deployment_followed"], again["deployment"]["production"]) == (False, True, now)
    _agree_and_verify(deployed, cli, now)
