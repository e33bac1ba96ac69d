"""Replicas that share one deployment through ``--state URL`` (serve/shared.py) on the moto S3 server.

Each replica runs from its own copy of the repository (separate folders, no shared disk but the
S3 prefix), as two machines with clones would.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from servekit import ROW, Server, audit_entries, broken, deploy_canary, mlops, register, start_server, wait_for

from mlops.repo.repo import Repo
from mlops.serve import deployment as deployments
from mlops.serve.shared import open_state


@pytest.fixture
def machines(model_repo: Path, tmp_path: Path) -> list[Path]:
    """Two copies of the repository (v4 a candidate failing every request), as on two machines."""
    register(model_repo, "churn", 4, broken())
    out = []
    for name in ("machine-a", "machine-b"):
        target = tmp_path / name
        shutil.copytree(model_repo, target, symlinks=True)
        out.append(target)
    return out


@pytest.fixture
def state_url(s3_bucket: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_bucket.endpoint_url)
    return f"s3://{s3_bucket.name}/churn/serving"


@pytest.fixture
def replicas(machines: list[Path], state_url: str) -> Any:
    started: list[Server] = []

    def start(root: Path, *args: str) -> Server:
        server = start_server(root, "churn@production", "--state", state_url, "--lease", "3s", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def candidate_of(server: Server) -> Any:
    try:
        return httpx.get(server.url + "/health", timeout=5).json().get("canary")
    except httpx.TransportError:
        return None


def lease_holder(state_url: str) -> Any:
    return open_state(state_url).lease()


@pytest.mark.timeout(240)
def test_a_deploy_and_a_hand_rollback_are_followed_by_both_replicas(replicas, machines, state_url) -> None:
    a, b = (replicas(root) for root in machines)
    # deployed from machine a's clone, rolled back from machine b's: both servers follow each change
    mlops(machines[0], "deploy", "churn", "--canary", "3", "--weight", "30", "--state", state_url)
    for server in (a, b):
        wait_for(lambda s=server: candidate_of(s), timeout=60, what="the canary on both replicas")
    assert all(candidate_of(s)["version"] == 3 for s in (a, b))
    # the shared revision is the local file of both machines now
    for root in machines:
        dep = deployments.load_deployment(Repo(root), "churn")
        assert dep is not None and dep.candidate is not None and dep.candidate.version == 3 and dep.revision == 1
    mlops(machines[1], "canary", "rollback", "churn", "--state", state_url, "-m", "by hand on b")
    for server in (a, b):
        wait_for(lambda s=server: candidate_of(s) is None, timeout=60, what="the rollback on both replicas")
    shared = open_state(state_url).latest("churn")
    assert shared is not None and shared.revision == 2 and shared.candidate is None
    assert shared.last_event and shared.last_event["reason"] == "by hand on b"
    # the one hand rollback is in the audit log of the machine it was made on, once
    assert len(audit_entries(machines[1], "canary_rollback")) == 1
    assert audit_entries(machines[0], "canary_rollback") == []
    status = json.loads(mlops(machines[0], "canary", "status", "churn", "--state", state_url, "--json").stdout)
    assert status["revision"] == 2 and status["servers"]["live_workers"] == 2


@pytest.mark.timeout(300)
def test_a_failing_canary_is_rolled_back_once_and_a_dead_controller_replaced(replicas, machines, state_url) -> None:
    a = replicas(machines[0])
    wait_for(lambda: lease_holder(state_url) or None, timeout=60, what="a controller lease")
    first = lease_holder(state_url)
    b = replicas(machines[1])
    # the first replica keeps the lease while it lives: the second does not take it
    time.sleep(4)
    assert lease_holder(state_url).holder == first.holder
    a.kill()  # SIGKILL of the controller's process group: no hand-over, the lease just stops being renewed
    killed_at = time.time()
    taken = wait_for(
        lambda: (h := lease_holder(state_url)) and h.holder not in (first.holder, "") and h,
        timeout=60,
        what="the lease taken over by the other replica",
    )
    assert taken.term > first.term and taken.expires > killed_at
    # the new controller decides: a failing canary, with traffic on the surviving replica only
    deploy_canary(machines[1], 4, "--state", state_url, weight=50, min_requests=10, max_error_rate=0.2)
    wait_for(lambda: candidate_of(b), timeout=60, what="the canary on b")
    codes = []
    with b.client() as c:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and candidate_of(b):
            codes.append(c.post("/predict", json={"records": [ROW]}).status_code)
    assert candidate_of(b) is None, "no rollback within 90 s"
    assert 500 in codes
    shared = open_state(state_url).latest("churn")
    assert shared.candidate is None and shared.last_event["automatic"] is True and shared.last_event["version"] == 4
    entries = audit_entries(machines[0], "canary_rollback") + audit_entries(machines[1], "canary_rollback")
    assert len(entries) == 1 and entries[0]["automatic"] is True, entries


@pytest.mark.timeout(300)
def test_rollback_decided_on_statistics_summed_over_both_replicas(replicas, machines, state_url) -> None:
    """min-requests 20 with ~12 failing canary requests on each replica: only the sum judges."""
    a, b = replicas(machines[0]), replicas(machines[1])
    deploy_canary(
        machines[0], 4, "--window", "5m", "--state", state_url, weight=100, min_requests=20, max_error_rate=0.2
    )
    for server in (a, b):
        wait_for(lambda s=server: candidate_of(s), timeout=60, what="the canary on both replicas")
    for server in (a, b):
        with server.client() as c:
            assert [c.post("/predict", json={"records": [ROW]}).status_code for _ in range(12)] == [500] * 12
    for server in (a, b):
        wait_for(lambda s=server: candidate_of(s) is None, timeout=60, what="the rollback on both replicas")
    shared = open_state(state_url).latest("churn")
    assert "24 requests" in shared.last_event["reason"] or "(24 of 24" in shared.last_event["reason"], shared.last_event
    entries = audit_entries(machines[0], "canary_rollback") + audit_entries(machines[1], "canary_rollback")
    assert len(entries) == 1


@pytest.mark.parametrize("first", ["automatic", "by_hand"])
def test_a_hand_edit_and_an_automatic_rollback_never_lose_either(machines, state_url, first: str) -> None:
    """The two writers start from the same revision; whichever creates the next one first, neither change is lost."""
    laptop, controller = (Repo(root) for root in machines)
    from mlops.serve.source import open_source

    state = open_state(state_url)
    deployments.deploy(laptop, open_source(laptop), "churn", canary=4, weight=10, by="alice", state=state)
    base = state.latest("churn")
    assert base is not None and base.revision == 1

    def automatic_rollback(expect_revision: int = base.revision) -> Any:
        return deployments.rollback(
            controller,
            open_source(controller),
            "churn",
            reason="canary v4: error rate 90%",
            by="mlops serve (automatic)",
            automatic=True,
            expect_revision=expect_revision,
            state=open_state(state_url),
        )

    def hand_edit(during: Any = None) -> Any:
        calls = []

        def change(old: Any) -> Any:
            calls.append(old.revision)
            if during is not None and len(calls) == 1:
                during()  # the other writer creates the next revision between this one's read and its create
            return replace(old, key="field:customer_id")

        new = deployments.update_deployment(
            laptop, "churn", change, by="alice (hand edit)", state=open_state(state_url)
        )
        return new, calls

    if first == "automatic":
        new, calls = hand_edit(during=automatic_rollback)
        assert calls == [1, 2]  # lost the race on revision 2, made again on top of the rollback
        assert new.revision == 3 and new.candidate is None and new.key == "field:customer_id"
        assert new.last_event["event"] == "rollback"
    else:
        outcome: dict[str, Any] = {}

        def rollback_meanwhile() -> None:
            try:
                automatic_rollback()
            except deployments.RevisionChanged as exc:
                outcome["lost"] = exc

        # the hand edit wins revision 2; the rollback decided on revision 1 then loses and is not recorded
        hand_edit()
        thread = threading.Thread(target=rollback_meanwhile)
        thread.start()
        thread.join(60)
        assert isinstance(outcome.get("lost"), deployments.RevisionChanged)
        assert audit_entries(machines[1], "canary_rollback") == []
        # the controller decides again on what it now sees: the rollback happens on top of the hand edit
        again = automatic_rollback(expect_revision=2)
        assert again.revision == 3 and again.candidate is None and again.key == "field:customer_id"
    final = open_state(state_url).latest("churn")
    assert final.revision == 3 and final.candidate is None and final.key == "field:customer_id"
    assert len(audit_entries(machines[1], "canary_rollback")) == 1  # the rollback recorded exactly once
    names = open_state(state_url).remote.list_refs("deployment/")
    assert names == ["deployment/1.yaml", "deployment/2.yaml", "deployment/3.yaml"]


def test_two_writers_racing_on_a_folder_state_each_win_once(machines, tmp_path: Path) -> None:
    """A local folder as the state: 8 threads x 5 changes from the two machines' clones, each adding its own
    mark; none lost."""
    from mlops.serve.source import open_source

    url = str(tmp_path / "state")
    first = Repo(machines[0])
    deployments.deploy(first, open_source(first), "churn", by="alice", state=open_state(url))

    def writer(index: int) -> None:
        repo = Repo(machines[index % 2])
        state = open_state(url)
        for n in range(5):
            deployments.update_deployment(
                repo,
                "churn",
                lambda old, mark=f"{index}-{n}": replace(
                    old, last_event={"marks": [*(old.last_event or {}).get("marks", []), mark]}
                ),
                by=f"writer {index}",
                state=state,
            )

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    final = open_state(url).latest("churn")
    assert final.revision == 41
    assert sorted(final.last_event["marks"]) == sorted(f"{i}-{n}" for i in range(8) for n in range(5))


def test_serve_refuses_an_unreachable_state(model_repo: Path) -> None:
    proc = mlops(model_repo, "serve", "churn@production", "--port", "0", "--state", "s3://", code=None)
    assert proc.returncode in (2, 3) and "Traceback" not in proc.stderr, proc.stderr


def test_the_lease_holder_raises_a_progressive_canary_from_both_replicas_statistics(machines, state_url) -> None:
    """In one process, without servers: two replicas' snapshots (real Stats) in the shared state; each alone
    is below min-requests; the controller's step counts their sum and is recorded once."""
    from mlops.serve.controller import control_once
    from mlops.serve.health import Stats
    from mlops.serve.source import open_source

    laptop, controller = (Repo(root) for root in machines)
    state = open_state(state_url)
    deployments.deploy(
        laptop, open_source(laptop), "churn", canary=2, steps=(10.0, 50.0), interval_seconds=0.1, min_requests=6,
        by="alice", state=state,
    )  # fmt: skip
    assert state.take_lease("replica-a", 10.0) is not None
    assert state.take_lease("replica-b", 10.0) is None  # one holder at a time
    for name in ("replica-a", "replica-b"):
        stats = Stats()
        for _ in range(4):
            stats.record("canary", 2, 3.0, 200, [0])
            stats.record("production", 1, 3.0, 200, [0])
        state.publish_stats(name, stats.snapshot("churn"))
    gone = Stats()
    gone.record("canary", 2, 3.0, 500, None)
    state.publish_stats("replica-gone", {**gone.snapshot("churn"), "written": time.time() - 700})
    time.sleep(0.3)  # the step's interval
    new, event = control_once(controller, open_source(controller), "churn", state=state)
    assert event == "step" and new.candidate.weight == 50.0 and new.revision == 2
    assert open_state(state_url).latest("churn").candidate.weight == 50.0
    steps = audit_entries(machines[1], "canary_step")
    assert len(steps) == 1 and steps[0]["weight"] == 50.0 and audit_entries(machines[0], "canary_step") == []
    # a replica silent for longer than the longest window is pruned by the controller
    assert state.remote.list_refs("stats/") == ["stats/replica-a.json", "stats/replica-b.json"]
