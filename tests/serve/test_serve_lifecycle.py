"""A real server's life: auth on and off, SIGTERM with requests in flight, several workers,
request logs read back, a port in use."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pickle
import signal
import socket
import time
from pathlib import Path

import httpx
from servekit import ROW, mlops, register, slow, wait_for

from mlops.repo.repo import Repo
from mlops.serve.requestlog import log_files

STATS = Path(".mlops") / "serve" / "churn" / "stats"


def in_flight(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    return float(
        [line for line in text.splitlines() if line.startswith("mlops_requests_in_flight{")][0].rsplit(" ", 1)[1]
    )


def snapshots(root: Path) -> list[dict]:
    """The statistics snapshots of the live workers (each rewritten once a second)."""
    out = []
    for path in (root / STATS).glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(data["pid"], 0)
        except ProcessLookupError:
            continue
        out.append(data)
    return out


TOKEN = "s3cret-token-for-tests"


def test_bearer_token_on_everything_but_health_checks(serve, model_repo: Path) -> None:
    server = serve("churn@production", "--token-env", "SERVE_TOKEN", env={"SERVE_TOKEN": TOKEN})
    good = {"Authorization": f"Bearer {TOKEN}"}
    bad = {"Authorization": "Bearer wrong"}
    with server.client() as c:
        for path in (
            "/ping",
            "/health",
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/churn/ready",
            "/v2/models/churn/versions/1/ready",
        ):
            assert c.get(path).status_code == 200, path  # health checks and readiness probes need no token
        assert c.get("/v2/models/other/ready").status_code == 404
        public = c.get("/health").json()
        assert "pid" not in public and "controller" not in public and public["problems"] == []
        assert c.get("/health", headers=good).json()["pid"] > 0
        for method, path, body in (
            ("POST", "/predict", {"records": [ROW]}),
            ("POST", "/invocations", {"dataframe_records": [ROW]}),
            ("POST", "/v2/models/churn/infer", {"inputs": []}),
            ("GET", "/metadata", None),
            ("GET", "/metrics", None),
            ("GET", "/version", None),
            ("GET", "/v2/models/churn", None),
            ("GET", "/v2", None),
            ("POST", "/admin/reload", None),
            ("POST", "/admin/rollback", None),
        ):
            for headers in ({}, bad):
                r = c.request(method, path, json=body, headers=headers)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
        assert c.post("/predict", json={"records": [ROW]}, headers=good).status_code == 200
        assert c.post("/invocations", json={"dataframe_records": [ROW]}, headers=good).json()["predictions"]
        assert c.get("/metrics", headers=good).status_code == 200
        assert c.post("/admin/reload", headers=good).json()["reloaded"] is True
        mlops(model_repo, "deploy", "churn", "--canary", "2", "--weight", "10")
        r = c.post("/admin/rollback", json={"reason": "admin says no"}, headers=good)
        assert r.status_code == 200 and r.json()["deployment"]["last_event"]["reason"] == "admin says no"
    assert TOKEN not in server.stderr()


def test_without_a_token_admin_works_on_loopback_and_a_missing_token_variable_is_refused(
    serve, model_repo: Path
) -> None:
    server = serve()
    with server.client() as c:
        assert c.post("/predict", json={"records": [ROW]}).status_code == 200
        assert (
            c.post("/admin/reload", json={}).status_code == 200
        )  # JSON, from a loopback Host: tests/serve/test_serve_security.py
        r = c.post("/admin/rollback", json={})
        assert r.status_code == 409 and "no deployment of churn" in r.json()["error"]
    r = mlops(model_repo, "serve", "churn@production", "--token-env", "NOT_SET_ANYWHERE", code=2)
    assert "NOT_SET_ANYWHERE" in r.stderr


def test_sigterm_lets_requests_in_flight_finish_and_closes_the_request_log(serve, model_repo: Path, pipelines) -> None:
    register(model_repo, "churn", 4, slow(pickle.loads(pipelines["base"]), 0.8), signature=False)
    server = serve("churn:4")

    def send(i: int) -> tuple[int, dict]:
        r = httpx.post(server.url + "/predict", json={"records": [{**ROW, "tenure": i}]}, timeout=30)
        return r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(send, i) for i in range(6)]
        wait_for(lambda: in_flight(server.url) == 6, what="six requests in flight")  # in the model or queued behind it
        server.proc.send_signal(signal.SIGTERM)
        results = [f.result(timeout=30) for f in futures]
    assert [status for status, _ in results] == [200] * 6
    assert server.proc.wait(timeout=30) == 0
    assert "stopped" in server.stderr()
    import pyarrow.parquet as pq

    files = log_files(Repo(model_repo), "churn")
    assert len(files) == 1
    table = pq.read_table(files[0])
    assert table.num_rows == 6
    # this model has no signature: its input columns are logged in name order (a signature's order otherwise)
    assert table.schema.names == [
        "monthly_charges",
        "plan",
        "tenure",
        "prediction",
        "variant",
        "version",
        "status",
        "latency_ms",
        "time",
        "request_id",
        "request_row",
        "probabilities",  # a classifier: predict_proba's answer beside predict()'s
    ]
    assert [str(t) for t in table.schema.types] == [
        "double",
        "string",
        "int64",
        "int64",
        "string",
        "int64",
        "int16",
        "double",
        "timestamp[us, tz=UTC]",
        "string",
        "int32",
        "map<string, double ('probabilities')>",  # pyarrow names the map's field after its column
    ]
    frame = table.to_pandas()
    assert (
        sorted(frame["tenure"]) == list(range(6))
        and set(frame["version"]) == {4}
        and set(frame["variant"]) == {"production"}
    )
    assert (frame["latency_ms"] >= 700).all()
    assert log_files(Repo(model_repo), "churn", since_seconds=60) == files
    hour_ago = time.time() - 3600
    os.utime(files[0], (hour_ago, hour_ago))
    assert log_files(Repo(model_repo), "churn", since_seconds=600) == []
    assert log_files(Repo(model_repo), "churn", since_seconds=7200) == files


def test_several_workers_share_statistics_metrics_and_one_controller(serve, model_repo: Path) -> None:
    server = serve("churn@production", "--workers", "2")
    with server.client() as c:
        for _ in range(200):
            assert c.post("/predict", json={"records": [ROW]}).status_code == 200
    import asyncio

    from loadgen import build_request, run_load

    body = json.dumps({"records": [ROW]}).encode()
    result = asyncio.run(
        run_load(
            "127.0.0.1",
            server.port,
            [build_request("127.0.0.1", server.port, "/predict", body)],
            concurrency=8,
            count=400,
            seconds=60,
        )
    )
    assert result["ok"] == 400

    def total() -> int:
        text = httpx.get(server.url + "/metrics").text
        return int(
            [line for line in text.splitlines() if line.startswith("mlops_requests_total{")][0].rsplit(" ", 1)[1]
        )

    wait_for(lambda: total() == 600, what="metrics over both workers to reach 600")
    # each worker writes its snapshot once a second from its start: wait for both, do not race them
    stats = wait_for(
        lambda: (
            (found := list((model_repo / ".mlops" / "serve" / "churn" / "stats").glob("*.json")))
            and len(found) == 2
            and found
        ),
        what="both workers' statistics files",
    )
    pids = {json.loads(p.read_text())["pid"] for p in stats}
    assert len(pids) == 2
    assert server.stop() == 0
    import pyarrow.parquet as pq

    files = log_files(Repo(model_repo), "churn")
    assert sum(pq.read_metadata(f).num_rows for f in files) == 600
    # each worker writes its own files (the kernel decides which worker accepts a connection)
    assert {f.name.rsplit("-", 2)[1] for f in files} <= {str(p) for p in pids}


def test_a_port_in_use_is_one_clear_error(model_repo: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        r = mlops(model_repo, "serve", "churn@production", "--port", str(port), code=3)
    assert f"port {port} on 127.0.0.1 is already in use" in r.stderr and "Traceback" not in r.stderr


def test_serving_an_unknown_model_is_a_usage_error(model_repo: Path) -> None:
    r = mlops(model_repo, "serve", "nope@production", code=2)
    assert "nope" in r.stderr and "Traceback" not in r.stderr


def test_without_a_deployment_file_the_server_follows_its_reference(serve, model_repo: Path) -> None:
    server = serve("churn@production")
    with server.client() as c:
        assert c.post("/predict", json={"records": [ROW]}).json()["version"] == 1
        mlops(model_repo, "deploy", "churn", "--canary", "3", "--weight", "0")  # promote 3 through the gates by hand
        mlops(model_repo, "canary", "promote", "churn")
        (model_repo / ".mlops" / "deployments" / "churn.yaml").unlink()  # back to following the reference alone
        wait_for(
            lambda: c.post("/predict", json={"records": [ROW]}).json()["version"] == 3,
            timeout=60,
            what="the server to follow churn@production to v3",
        )
        assert c.get("/health").json()["problems"] == []


def test_json_key_order_does_not_split_the_request_log(serve, model_repo: Path) -> None:
    server = serve()
    reordered = {k: ROW[k] for k in reversed(list(ROW))}
    with server.client() as c:
        for i in range(200):
            assert c.post("/predict", json={"records": [ROW if i % 2 else reordered]}).status_code == 200
    assert server.stop() == 0
    import pyarrow.parquet as pq

    files = log_files(Repo(model_repo), "churn")
    assert 1 <= len(files) <= 2, f"{len(files)} request-log files for 200 requests"
    assert sum(pq.read_metadata(f).num_rows for f in files) == 200
    assert pq.read_schema(files[0]).names[:3] == ["tenure", "plan", "monthly_charges"]  # the signature's order


def test_sigterm_with_several_workers_lets_every_request_finish(serve, model_repo: Path, pipelines) -> None:
    register(model_repo, "churn", 4, slow(pickle.loads(pipelines["base"]), 2.0), signature=False)
    server = serve("churn:4", "--workers", "2")

    def send(i: int) -> int:
        return httpx.post(server.url + "/predict", json={"records": [{**ROW, "tenure": i}]}, timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(send, i) for i in range(6)]
        wait_for(
            lambda: sum(s.get("gauges", {}).get("requests_in_flight", 0) for s in snapshots(model_repo)) == 6,
            timeout=30,
            what="six requests in flight over the workers",
        )
        server.proc.send_signal(signal.SIGTERM)
        codes = [f.result(timeout=60) for f in futures]
    assert codes == [200] * 6
    assert server.proc.wait(timeout=60) == 0, server.stderr()
    import pyarrow.parquet as pq

    files = log_files(Repo(model_repo), "churn")
    assert sum(pq.read_metadata(f).num_rows for f in files) == 6
    assert not [
        p for p in (model_repo / ".mlops" / "serve" / "churn" / "requests").iterdir() if p.name.startswith(".open-")
    ]


def test_every_worker_follows_a_hand_edit_that_keeps_the_revision(serve, model_repo: Path) -> None:
    """The deployment file is meant for git: an edit, a pull or a checkout may leave `revision` as it was."""
    server = serve("churn@production", "--workers", "2")
    path = model_repo / ".mlops" / "deployments" / "churn.yaml"

    def all_follow(text: str) -> bool:
        digest = hashlib.sha256(text.encode()).hexdigest()
        snaps = snapshots(model_repo)
        return len(snaps) == 2 and all(s.get("deployment", {}).get("digest") == digest for s in snaps)

    mlops(model_repo, "deploy", "churn", "--canary", "2", "--weight", "10", "--max-error-rate", "1")
    deployed = path.read_text()
    wait_for(lambda: all_follow(deployed), timeout=30, what="both workers to follow `mlops deploy`")
    edited = deployed.replace("weight: 10.0", "weight: 100.0")
    assert edited != deployed and "revision: 1\n" in edited
    path.write_text(edited)  # in place, as an editor or git writes it
    wait_for(lambda: all_follow(edited), timeout=30, what="both workers to follow the hand edit")
    for _ in range(20):  # new connections: whichever worker accepts, the canary answers
        r = httpx.post(server.url + "/predict", json={"records": [ROW]}, headers={"Connection": "close"})
        assert r.status_code == 200 and r.headers["x-variant"] == "canary", r.headers
    path.write_text(deployed)  # `git checkout` of the committed file: back to 10%
    wait_for(lambda: all_follow(deployed), timeout=30, what="both workers to follow the checkout")


def test_request_logs_rotate_and_old_files_go_while_serving(serve, model_repo: Path) -> None:
    server = serve("churn@production", "--log-rotate", "1s", "--log-max-age", "2s")
    repo = Repo(model_repo)
    seen: set[str] = set()

    def first_file_gone() -> bool:
        with server.client() as c:
            for _ in range(5):
                assert c.post("/predict", json={"records": [ROW]}).status_code == 200
        now = {f.name for f in log_files(repo, "churn")}
        seen.update(now)
        return len(seen) >= 2 and min(seen) not in now

    wait_for(first_file_gone, timeout=60, interval=0.2, what="a rotation, then the oldest file removed by age")
    import pyarrow.parquet as pq

    for f in log_files(repo, "churn"):
        assert pq.read_metadata(f).num_rows > 0  # finished files only: each has its footer
