"""Serving overhead of a feature-service model over the same model with direct inputs, concurrency 1.

    python tests/benchmarks/bench_features_serving.py [--rounds 10] [--requests 300]

Builds a repository (examples/features' data and definitions), trains one model, registers it
twice (churn_fs: its signature names the feature service, callers send customer_id; churn_direct:
callers send the two features), materializes, starts one `mlops serve` per model on 127.0.0.1 and
sends the same customers one request at a time to each, alternating, in rounds. Reports, per model,
the median over rounds of each round's median latency as the client sees it, and the overhead as
the median over rounds of the difference of the two medians (with the rounds' range: on a shared
machine one round can be slowed by a neighbour, the median of rounds is not). Then, in-process, the
lookup alone (OnlineReader.lookup on the same online store, as the server does it): p50 and p99.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT / "examples" / "features"
MLOPS = [sys.executable, "-m", "mlops"]


def sh(root: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.run([*args], cwd=root, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def serve(root: Path, ref: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    log = root / f"serve-{ref.replace(':', '-')}.log"
    handle = open(log, "wb")
    proc = subprocess.Popen([*MLOPS, "serve", ref, "--port", "0"], cwd=root, env=env, stderr=handle)
    handle.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = re.search(r"http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if match:
            return proc, f"http://127.0.0.1:{match.group(1)}"
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(log.read_text())


def main() -> None:
    import httpx
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300, help="requests per model per round")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-serving-features-"))
    try:
        sh(root, "git", "init", "-q", "-b", "main")
        sh(root, *MLOPS, "init")
        sh(root, sys.executable, str(EXAMPLE / "make_orders.py"), "data")
        shutil.copy(EXAMPLE / "features.yaml", root / "features.yaml")
        sh(root, *MLOPS, "add", "data/order_stats.parquet", "data/labels.parquet")
        sh(root, *MLOPS, "features", "get-training-set", "data/labels.parquet", "-s", "churn_v2", "-o", "train.parquet")
        sh(root, sys.executable, str(EXAMPLE / "train.py"), "train.parquet", "models/churn.pkl")
        plain = pd.read_parquet(root / "train.parquet")  # pandas drops the store's metadata: a plain table
        plain.to_parquet(root / "plain.parquet")
        sh(root, *MLOPS, "register", "churn_fs", "models/churn.pkl", "--signature-from", "train.parquet")
        sh(root, *MLOPS, "register", "churn_direct", "models/churn.pkl", "--signature-from", "plain.parquet")
        sh(root, *MLOPS, "features", "materialize", "-s", "churn_v2")
        rows = plain.drop_duplicates("customer_id").fillna(0.0)
        servers = [serve(root, "churn_fs:1"), serve(root, "churn_direct:1")]
        try:
            rounds: list[dict[str, list[float]]] = []
            with httpx.Client(timeout=30) as fs, httpx.Client(timeout=30) as direct:
                for client, url in ((fs, servers[0][1]), (direct, servers[1][1])):
                    for _ in range(120):  # ready, and warm
                        try:
                            if client.get(url + "/v2/health/ready").status_code == 200:
                                break
                        except httpx.TransportError:
                            time.sleep(0.5)
                bodies = [
                    (
                        {"records": [{"customer_id": int(row.customer_id)}]},
                        {
                            "records": [
                                {
                                    "total_purchases": int(row.total_purchases),
                                    "avg_order_value": float(row.avg_order_value),
                                }
                            ]
                        },
                    )
                    for row in rows.itertuples()
                ]
                for _ in range(50):  # warm both servers before the rounds
                    fs.post(servers[0][1] + "/predict", json=bodies[0][0])
                    direct.post(servers[1][1] + "/predict", json=bodies[0][1])
                for _ in range(args.rounds):
                    latencies: dict[str, list[float]] = {"entity keys": [], "direct": []}
                    for i in range(args.requests):
                        by_keys, by_values = bodies[i % len(bodies)]
                        pairs = (
                            ("entity keys", fs, servers[0][1], by_keys),
                            ("direct", direct, servers[1][1], by_values),
                        )
                        for name, client, url, body in pairs if i % 2 else pairs[::-1]:  # neither always first
                            started = time.perf_counter()
                            response = client.post(url + "/predict", json=body)
                            latencies[name].append((time.perf_counter() - started) * 1000)
                            assert response.status_code == 200, response.text
                    rounds.append(latencies)
        finally:
            for proc, _ in servers:
                proc.terminate()
                proc.wait(timeout=60)
        medians = {name: [_median(r[name]) for r in rounds] for name in ("entity keys", "direct")}
        for name, values in medians.items():
            every = sorted(v for r in rounds for v in r[name])
            print(
                f"{name}: median of round medians {_median(values):.3f} ms "
                f"(rounds {min(values):.3f} to {max(values):.3f}), p99 of all {every[int(len(every) * 0.99)]:.3f} ms"
            )
        overheads = [a - b for a, b in zip(medians["entity keys"], medians["direct"], strict=True)]
        print(
            f"overhead of the feature lookups: median over {args.rounds} rounds {_median(overheads):.3f} ms "
            f"(rounds {min(overheads):.3f} to {max(overheads):.3f}), {args.requests} requests per model per round"
        )
        print("lookup alone, in-process:", lookup_alone(root, [int(c) for c in rows.customer_id]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def lookup_alone(root: Path, customers: list[int], lookups: int = 20000) -> str:
    """OnlineReader.lookup as the server calls it, timed alone in this process."""
    sys.path.insert(0, str(PROJECT))
    from mlops.features.definitions import load_definitions
    from mlops.features.online import OnlineReader
    from mlops.repo.repo import Repo

    repo = Repo(root)
    reader = OnlineReader(repo, load_definitions(root), "churn_v2")
    try:
        times = []
        for i in range(lookups):
            started = time.perf_counter()
            reader.lookup({"customer_id": customers[i % len(customers)]})
            times.append((time.perf_counter() - started) * 1000)
    finally:
        reader.close()
    times.sort()
    return f"{lookups} lookups, p50 {times[len(times) // 2]:.3f} ms, p99 {times[int(len(times) * 0.99)]:.3f} ms"


if __name__ == "__main__":
    main()
