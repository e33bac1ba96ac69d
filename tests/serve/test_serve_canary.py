"""Canary split and stickiness, shadow records, automatic rollback, deploy changes under load,
progressive canary and promotion through the gates: against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import httpx
from loadgen import build_request, run_load
from servekit import ROW, audit_entries, broken, deploy_canary, mlops, register, stage_of, wait_for, wait_for_canary

from mlops.repo.repo import Repo
from mlops.serve.requestlog import shadow_log_files

BODY = json.dumps({"records": [ROW]}).encode()


def send_many(url: str, count: int, *, keys: list[str] | None = None, concurrency: int = 8) -> dict:
    """``count`` requests over raw keep-alive connections; with ``keys``, X-Request-ID round-robin."""
    port = int(url.rsplit(":", 1)[1])
    if keys:
        requests = [build_request("127.0.0.1", port, "/predict", BODY, {"X-Request-ID": k}) for k in keys]
    else:
        requests = [build_request("127.0.0.1", port, "/predict", BODY)]
    return asyncio.run(
        run_load("127.0.0.1", port, requests, concurrency=concurrency, count=count, seconds=60, keyed=bool(keys))
    )


def test_canary_split_and_stickiness_over_thousands_of_requests(serve, model_repo: Path) -> None:
    server = serve()
    deploy_canary(model_repo, 2, weight=20, max_error_rate=1)
    wait_for(lambda: httpx.get(server.url + "/health").json().get("canary"), what="the server to follow the deployment")

    unkeyed = send_many(server.url, 2000)
    assert unkeyed["ok"] == 2000, unkeyed
    share = unkeyed["variants"]["canary"] / 2000
    assert 0.16 <= share <= 0.24, share  # 20% +- 4 points: ~4.5 standard deviations at n=2000

    keys = [f"customer-{i}" for i in range(300)]
    keyed = send_many(server.url, 1500, keys=keys)  # each key 5 times
    assert keyed["ok"] == 1500 and keyed["keys_on_two_variants"] == 0, "a key reached both variants"
    canary_keys = {keys[int(i)] for i, v in keyed["per_key"].items() if v == ["canary"]}
    assert 0.12 <= len(canary_keys) / len(keys) <= 0.28, len(canary_keys)

    def counted() -> dict:  # each worker's statistics reach the file once a second: wait for them, do not race them
        status = json.loads(mlops(model_repo, "canary", "status", "churn", "--json").stdout)
        variants = {v["variant"]: v for v in status["variants"]}
        return status if variants["canary"]["requests"] > 300 and variants["production"]["requests"] > 2000 else {}

    status = wait_for(counted, what="the requests in the statistics")
    variants = {v["variant"]: v for v in status["variants"]}
    assert variants["canary"]["version"] == 2
    assert variants["canary"]["p99_ms"] is not None and "classes" in variants["canary"]["distribution"]
    assert status["candidate"]["verdict"] == "healthy"

    # raising the weight only moves keys to the canary, never back
    deploy_canary(model_repo, 2, weight=50, max_error_rate=1)
    wait_for(lambda: httpx.get(server.url + "/health").json().get("canary", {}).get("weight") == 50.0, what="weight 50")
    after = send_many(server.url, 600, keys=keys)
    now_canary = {keys[int(i)] for i, v in after["per_key"].items() if v == ["canary"]}
    assert canary_keys <= now_canary and len(now_canary) > len(canary_keys)


def test_shadow_sees_every_request_and_both_predictions_are_recorded(serve, model_repo: Path) -> None:
    server = serve("churn@production", "--log-rotate", "1s")
    mlops(model_repo, "deploy", "churn", "--shadow", "3", "--min-requests", "5")
    wait_for(lambda: httpx.get(server.url + "/health").json().get("shadow"), what="the shadow")
    rows = [ROW, {"tenure": 40, "plan": "pro", "monthly_charges": 20.5}]
    with server.client() as c:
        for _ in range(30):
            r = c.post("/predict", json={"records": rows})
            assert r.status_code == 200 and r.json()["variant"] == "production" and r.json()["version"] == 1
    repo = Repo(model_repo)
    files = wait_for(lambda: shadow_log_files(repo, "churn"), what="a finished shadow log file")
    import pyarrow.parquet as pq

    wait_for(
        lambda: (t := pq.read_table(files[-1] if len(files) == 1 else files)) and t.num_rows >= 2 and t, what="rows"
    )
    frame = pq.ParquetDataset([str(f) for f in shadow_log_files(repo, "churn")]).read().to_pandas()
    assert set(frame["variant"]) == {"shadow"} and set(frame["version"]) == {3}
    # v3 answers the opposite of production: every compared row disagrees, and both answers are there
    assert (frame["prediction"] != frame["production_prediction"]).all()
    # the shadow's comparison is recorded once production's answer is in, which may be a moment after the
    # shadow's own: wait for all of them
    status = wait_for(
        lambda: (
            (s := json.loads(mlops(model_repo, "canary", "status", "churn", "--json").stdout))
            and s["variants"][1]["requests"] >= 30
            and s["variants"][1].get("compared_rows") == 60
            and s
        ),
        timeout=30,
        what="shadow statistics",
    )
    shadow = status["variants"][1]
    assert shadow["variant"] == "shadow" and shadow["disagreement"] == 1.0 and shadow["compared_rows"] == 60
    assert status["variants"][0]["requests"] == 30


def test_automatic_rollback_when_the_candidate_raises(serve, model_repo: Path) -> None:
    register(model_repo, "churn", 4, broken())
    server = serve()
    deploy_canary(model_repo, 4, weight=50, min_requests=10, max_error_rate=0.2)
    wait_for_canary(server)
    results = []
    with server.client() as c:
        deadline = time.monotonic() + 60  # a bound, not an expectation: a loaded CI machine may take its time
        while time.monotonic() < deadline:
            r = c.post("/predict", json={"records": [ROW]})
            results.append((r.status_code, r.headers.get("x-variant")))
            if "canary" not in httpx.get(server.url + "/health").json() and len(results) > 20:
                break
        assert "canary" not in c.get("/health").json(), "no rollback within 60 s"
        after = [c.post("/predict", json={"records": [ROW]}) for _ in range(30)]
    assert all(r.status_code == 200 and r.headers["x-variant"] == "production" for r in after)
    failed = [s for s, v in results if s == 500]
    assert failed and all(v == "canary" for s, v in results if s == 500)  # only canary requests failed
    dep = (model_repo / ".mlops" / "deployments" / "churn.yaml").read_text()
    assert "candidate:" not in dep and "automatic: true" in dep
    entries = audit_entries(model_repo, "canary_rollback")
    assert len(entries) == 1 and entries[0]["automatic"] is True and entries[0]["version"] == 4
    assert "error rate" in entries[0]["reason"]
    status = mlops(model_repo, "canary", "status", "churn").stdout
    assert "rollback of v4" in status and "error rate" in status
    metrics = httpx.get(server.url + "/metrics").text
    assert 'mlops_rollbacks_total{model="churn"} 1' in metrics


def test_a_deploy_change_is_picked_up_with_requests_in_flight_and_none_failing(serve, model_repo: Path) -> None:
    server = serve()
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set() and len(results) < 20000:
                r = c.post("/predict", content=BODY, headers={"Content-Type": "application/json"})
                results.append((r.status_code, r.headers.get("x-model-version", "")))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        deploy_canary(model_repo, 2, weight=50, max_error_rate=1)
        wait_for(lambda: any(v == "2" for _, v in results[-200:]), what="requests on v2")
        mlops(model_repo, "canary", "rollback", "churn", "-m", "test over")
        mark = len(results)
        wait_for(lambda: len(results) > mark + 300, what="more requests")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert len(results) > mark + 300
    assert all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:5]
    assert {v for _, v in results} == {"1", "2"}
    assert all(v == "1" for _, v in results[-100:])


def test_progressive_canary_steps_up_then_promotes_through_the_gates(serve, model_repo: Path) -> None:
    server = serve()
    mlops(
        model_repo,
        "deploy",
        "churn",
        "--canary",
        "2",
        "--steps",
        "20,60",
        "--interval",
        "1s",
        "--min-requests",
        "5",
        "--window",
        "30s",
    )
    weights = set()
    with server.client() as c:
        deadline = time.monotonic() + 90  # a bound, not an expectation
        while time.monotonic() < deadline:
            assert c.post("/predict", json={"records": [ROW]}).status_code == 200
            health = c.get("/health").json()
            if "canary" in health:
                weights.add(health["canary"]["weight"])
            elif health["production"] == 2:
                break
        assert c.get("/health").json()["production"] == 2, "not promoted within 90 s"
    assert weights == {20.0, 60.0}
    assert stage_of(model_repo, "churn", 2) == "production" and stage_of(model_repo, "churn", 1) == "archived"
    assert len(audit_entries(model_repo, "canary_step")) == 1
    promoted = [e for e in audit_entries(model_repo, "stage_changed") if e.get("version") == 2]
    assert promoted and "progressive canary" in json.dumps(promoted[-1])


def test_a_refused_promotion_holds_the_canary(serve, model_repo: Path) -> None:
    (model_repo / ".mlops" / "policy.yaml").write_text("format: 1\nstages:\n  production:\n    approvals: 1\n")
    mlops(model_repo, "deploy", "churn", "--canary", "2", "--weight", "30")
    r = mlops(model_repo, "canary", "promote", "churn", code=1)
    assert "refused" in r.stderr and "approval" in r.stderr
    assert "candidate:" in (model_repo / ".mlops" / "deployments" / "churn.yaml").read_text()
    server = serve()
    mlops(model_repo, "deploy", "churn", "--canary", "2", "--steps", "50", "--interval", "1s", "--min-requests", "3")
    with server.client() as c:

        def held() -> bool:
            for _ in range(5):
                c.post("/predict", json={"records": [ROW]})
            return "hold:" in (model_repo / ".mlops" / "deployments" / "churn.yaml").read_text()

        wait_for(held, timeout=60, what="the hold")
    status = json.loads(mlops(model_repo, "canary", "status", "churn", "--json").stdout)
    assert "promotion refused" in status["candidate"]["hold"]
    assert stage_of(model_repo, "churn", 2) == "none"
    assert audit_entries(model_repo, "promotion_refused")


def test_bad_input_does_not_dilute_a_failing_canary(serve, model_repo: Path) -> None:
    """4xx answers are the caller's: they count neither toward min_requests nor the error rate's denominator."""
    register(model_repo, "churn", 4, broken())
    server = serve()
    deploy_canary(model_repo, 4, weight=100, min_requests=10, max_error_rate=0.5)
    wait_for_canary(server)
    with server.client() as c:
        for _ in range(12):
            assert c.post("/predict", json={"records": [{**ROW, "tenure": "x"}]}).status_code == 400
        for _ in range(9):
            assert c.post("/predict", json={"records": [ROW]}).status_code == 500

    def canary() -> dict:
        status = json.loads(mlops(model_repo, "canary", "status", "churn", "--json").stdout)
        return status if status["variants"][-1]["errors"] == 9 else {}

    status = wait_for(canary, what="the canary's 9 errors in the statistics")
    entry = status["variants"][-1]
    assert (entry["requests"], entry["bad_requests"], entry["errors"]) == (9, 12, 9)
    assert status["candidate"]["verdict"] == "waiting", status["candidate"]  # 9 of the 10 requests needed
    assert "candidate:" in (model_repo / ".mlops" / "deployments" / "churn.yaml").read_text()
    assert httpx.post(server.url + "/predict", json={"records": [ROW]}).status_code == 500  # the 10th: 10 of 10 failed
    wait_for(lambda: "canary" not in httpx.get(server.url + "/health").json(), timeout=30, what="the rollback")
    reason = audit_entries(model_repo, "canary_rollback")[-1]["reason"]
    assert "error rate 100.0%" in reason and "(10 of 10 requests failed)" in reason


def test_automatic_rollback_when_the_candidate_is_slow(serve, model_repo: Path, pipelines) -> None:
    import pickle

    from servekit import slow

    register(model_repo, "churn", 4, slow(pickle.loads(pipelines["base"]), 0.3), signature=False)
    server = serve()
    deploy_canary(model_repo, 4, "--max-p99-ms", "100", weight=100, min_requests=3, max_error_rate=1)
    wait_for_canary(server)

    def rolled_back() -> bool:
        r = httpx.post(server.url + "/predict", json={"records": [ROW]}, timeout=30)
        assert r.status_code == 200
        return "canary" not in httpx.get(server.url + "/health").json()

    wait_for(rolled_back, timeout=60, interval=0, what="the rollback on p99")
    entry = audit_entries(model_repo, "canary_rollback")[-1]
    assert (
        entry["automatic"] is True
        and entry["version"] == 4
        and "p99 latency" in entry["reason"]
        and "> 100 ms" in entry["reason"]
    )
    assert httpx.post(server.url + "/predict", json={"records": [ROW]}).headers["x-variant"] == "production"


def test_a_slow_read_of_an_older_file_is_never_applied_after_a_newer_one(serve, model_repo: Path) -> None:
    """The watcher's read of the deployment file is held up (the file is a FIFO that the test feeds);
    meanwhile the file is replaced and /admin/reload asked for. Whatever order the two reads finish
    in, the server must end on the file as it now is, not on the slow, older read."""
    import errno

    server = serve()
    deploy_canary(model_repo, 2, weight=10, max_error_rate=1)
    wait_for(lambda: httpx.get(server.url + "/health").json().get("canary", {}).get("weight") == 10.0, what="weight 10")
    path = model_repo / ".mlops" / "deployments" / "churn.yaml"
    text = path.read_text()
    fifo = model_repo / "held.fifo"
    os.mkfifo(fifo)
    os.link(fifo, model_repo / "held.link")
    os.replace(model_repo / "held.link", path)  # the watcher's next look reads the FIFO, and waits for its writer

    def reader_waiting() -> int | None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nobody reads it yet
                return None
            raise

    held = wait_for(reader_waiting, what="the watcher to be reading the FIFO")
    newer = model_repo / "newer.yaml"
    assert "revision: 1\n" in text
    newer.write_text(
        text.replace("weight: 10.0", "weight: 50.0").replace("revision: 1\n", "revision: 2\n")
    )  # as a deploy writes
    os.replace(newer, path)
    reload = threading.Thread(target=lambda: httpx.post(server.url + "/admin/reload", json={}, timeout=60))
    reload.start()
    deadline = time.monotonic() + 3  # give the reload its chance to go first (it must wait, or be undone by nothing)
    while (
        time.monotonic() < deadline
        and reload.is_alive()
        and httpx.get(server.url + "/health").json()["canary"]["weight"] != 50.0
    ):
        time.sleep(0.05)
    os.write(held, text.encode())  # the older read (revision 1, weight 10) now completes
    os.close(held)
    reload.join(60)
    wait_for(
        lambda: httpx.get(server.url + "/health").json().get("canary", {}).get("weight") == 50.0,
        what="the newer file (weight 50) to be what is served",
    )
    time.sleep(1.5)  # three polls of the watcher: nothing may move it back
    assert httpx.get(server.url + "/health").json()["canary"]["weight"] == 50.0


def test_a_same_size_rewrite_within_one_timestamp_tick_is_seen(serve, model_repo: Path) -> None:
    """An edit that leaves size and mtime as they were (two writes within one tick of the file system's
    clock) is still followed: a recently modified file is read again on every poll."""
    server = serve()
    deploy_canary(model_repo, 2, weight=10, max_error_rate=1)
    wait_for(lambda: httpx.get(server.url + "/health").json().get("canary", {}).get("weight") == 10.0, what="weight 10")
    path = model_repo / ".mlops" / "deployments" / "churn.yaml"
    before = os.stat(path)
    path.write_text(path.read_text().replace("weight: 10.0", "weight: 90.0"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the tick the first write had
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    wait_for(lambda: httpx.get(server.url + "/health").json().get("canary", {}).get("weight") == 90.0, what="weight 90")
