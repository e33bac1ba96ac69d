"""Two `mlops serve` replicas sharing one deployment on an S3 test server, under load with a 10% canary.

    .venv/bin/python tests/benchmarks/bench_replicas.py [--seconds 60] [--work DIR]

A moto S3 server (``python -m moto.server``, 127.0.0.1) holds the shared state; two servers
run from two copies of one repository (separate folders, as two machines with clones), both with
``--state s3://bench/churn/serving``. A load generator process per replica (tests/serve/loadgen.py,
keyed requests, so the split is the router's hash of each request id) sends single-row requests.

1. A healthy 10% canary (v2, the production pipeline registered again): ``--seconds`` of load on
   both replicas. Targets: no failed request (anything but 200, a refused connection included),
   and the canary's share summed over both replicas within 2 points of 10%.
2. A failing 10% canary (v3 raises on every real row), rollback window 30 s, 20 requests at least,
   5% errors at most: load again on both replicas until the rollback. Targets: rolled back within
   the window, exactly once (one revision with the rollback, one canary_rollback audit entry over
   both machines' registries), and no failed request that production answered (the candidate's own
   500s before the rollback are what the rollback is for; they are counted and shown).
Prints the figures, the targets met, and ``uptime`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
SERVE_TESTS = PROJECT / "tests" / "serve"
sys.path.insert(0, str(SERVE_TESTS))

import httpx  # noqa: E402
from servekit import broken, fit_pipeline, register, serve_env  # noqa: E402

MLOPS = str(Path(sys.executable).with_name("mlops"))
ROW = {"tenure": 3, "plan": "basic", "monthly_charges": 80.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sh(*args: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def start_replica(root: Path, state: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    log = root / "serve.log"
    proc = subprocess.Popen(
        [MLOPS, "serve", "churn@production", "--port", "0", "--state", state, "--lease", "5s"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = re.search(r"http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if match:
            url = f"http://127.0.0.1:{match.group(1)}"
            try:
                if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
        if proc.poll() is not None:
            raise SystemExit(f"replica in {root} exited:\n{log.read_text()}")
        time.sleep(0.1)
    raise SystemExit(f"replica in {root} not ready:\n{log.read_text()}")


def load(url: str, seconds: float, concurrency: int, body: Path) -> subprocess.Popen[str]:
    """Keyed requests (X-Request-ID key-0..key-4999 round-robin): the split is the router's hash of each key."""
    port = url.rsplit(":", 1)[1]
    return subprocess.Popen(
        [
            sys.executable,
            str(SERVE_TESTS / "loadgen.py"),
            "--port",
            port,
            "--path",
            "/predict",
            "--body-file",
            str(body),
            "--concurrency",
            str(concurrency),
            "--count",
            "100000000",
            "--seconds",
            str(seconds),
            "--keys",
            "5000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def canary_of(url: str) -> Any:
    return httpx.get(url + "/health", timeout=10).json().get("canary")


def audit(root: Path, event: str) -> list[dict[str, Any]]:
    path = root / ".mlops" / "registry" / "audit.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, filter(None, lines)) if e.get("event") == event]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load of the healthy canary")
    parser.add_argument("--concurrency", type=int, default=4, help="connections per replica")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-")) if args.work is None else args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    moto_port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        env={**os.environ, **aws},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{moto_port}"
    env = serve_env({**aws, "AWS_ENDPOINT_URL_S3": endpoint})
    procs: list[subprocess.Popen[Any]] = [moto]
    ok = True
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(endpoint, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto did not start") from None
                time.sleep(0.2)
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket="bench")
        state = "s3://bench/churn/serving"
        body = work / "body.json"
        body.write_text(json.dumps({"records": [ROW]}))
        origin = work / "origin"
        origin.mkdir()
        sh("git", "init", "-q", "-b", "main", cwd=origin, env=env)
        sh(MLOPS, "init", cwd=origin, env=env)
        register(origin, "churn", 1, fit_pipeline(), stage="production")
        register(origin, "churn", 2, fit_pipeline())
        register(origin, "churn", 3, broken())
        machines = []
        for name in ("machine-a", "machine-b"):
            shutil.copytree(origin, work / name, symlinks=True)
            machines.append(work / name)
        replicas = []
        for root in machines:
            proc, url = start_replica(root, state, env)
            procs.append(proc)
            replicas.append(url)

        # 1. a healthy 10% canary under load
        sh(MLOPS, "deploy", "churn", "--canary", "2", "--weight", "10", "--state", state, cwd=machines[0], env=env)
        for url in replicas:
            while not canary_of(url):
                time.sleep(0.2)
        runs = [load(url, args.seconds, args.concurrency, body) for url in replicas]
        results = [json.loads(run.communicate()[0]) for run in runs]
        total = sum(r["requests"] for r in results)
        failed = sum(r["errors"] for r in results)
        canary = sum(r["variants"].get("canary", 0) for r in results)
        share = 100.0 * canary / max(1, sum(sum(r["variants"].values()) for r in results))
        rps = sum(r["rps"] or 0 for r in results)
        print(f"healthy 10% canary, {args.seconds:g} s on 2 replicas: {total} requests ({rps:.0f}/s), {failed} failed")
        for url, r in zip(replicas, results, strict=True):
            print(f"  {url}: {r['requests']} requests, variants {r['variants']}, p99 {r['p99_ms']} ms")
        print(f"  canary share summed over both: {share:.2f}% (target 10 +- 2)")
        ok &= failed == 0 and abs(share - 10.0) <= 2.0

        # 2. a failing canary: rolled back once, within the window
        sh(
            MLOPS,
            "deploy",
            "churn",
            "--canary",
            "3",
            "--weight",
            "10",
            "--window",
            "30s",
            "--min-requests",
            "20",
            "--max-error-rate",
            "0.05",
            "--state",
            state,
            cwd=machines[1],
            env=env,
        )
        for url in replicas:
            while not canary_of(url) or canary_of(url)["version"] != 3:
                time.sleep(0.2)
        started = time.monotonic()
        runs = [load(url, 120.0, args.concurrency, body) for url in replicas]
        rolled_back = None
        while time.monotonic() - started < 120:
            if all(canary_of(url) is None for url in replicas):
                rolled_back = time.monotonic() - started
                break
            time.sleep(0.2)
        for run in runs:
            run.terminate()
        for run in runs:
            run.wait(30)
        revisions = sh(MLOPS, "canary", "status", "churn", "--state", state, "--json", cwd=machines[0], env=env)
        status = json.loads(revisions)
        entries = audit(machines[0], "canary_rollback") + audit(machines[1], "canary_rollback")
        print(
            f"failing 10% canary: rolled back on both replicas after "
            f"{rolled_back if rolled_back is None else round(rolled_back, 1)} s "
            f"(window 30 s); canary_rollback audit entries over both machines: {len(entries)}; "
            f"last event: {status['last_event']}"
        )
        ok &= rolled_back is not None and rolled_back <= 30.0 and len(entries) == 1
        after = []
        with httpx.Client(timeout=10) as client:
            for url in replicas:
                after += [client.post(url + "/predict", json={"records": [ROW]}).status_code for _ in range(50)]
        print(f"  after the rollback: {after.count(200)} of {len(after)} requests answered 200")
        ok &= after.count(200) == len(after)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        for proc in procs:
            proc.wait(30)
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print("targets met" if ok else "TARGETS MISSED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
