"""Serving overhead of a feature-service model over the same model with direct inputs, concurrency 1.

    python tests/benchmarks/bench_features_serving.py [--requests 2000]

Builds a repository (examples/features' data and definitions), trains one model, registers it
twice (churn_fs: its signature names the feature service, callers send customer_id; churn_direct:
callers send the two features), materializes, starts one `mlops serve` per model on 127.0.0.1 and
sends the same customers one request at a time to each, alternating. Reports median and p99
latency per model as the client sees it, and the difference of medians.
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
    parser.add_argument("--requests", type=int, default=2000)
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
            latencies: dict[str, list[float]] = {"entity keys": [], "direct": []}
            with httpx.Client(timeout=30) as fs, httpx.Client(timeout=30) as direct:
                for client, url in ((fs, servers[0][1]), (direct, servers[1][1])):
                    for _ in range(120):  # ready, and warm
                        try:
                            if client.get(url + "/v2/health/ready").status_code == 200:
                                break
                        except httpx.TransportError:
                            time.sleep(0.5)
                for i in range(args.requests):
                    row = rows.iloc[i % len(rows)]
                    for name, client, url, body in (
                        ("entity keys", fs, servers[0][1], {"records": [{"customer_id": int(row.customer_id)}]}),
                        (
                            "direct",
                            direct,
                            servers[1][1],
                            {
                                "records": [
                                    {
                                        "total_purchases": int(row.total_purchases),
                                        "avg_order_value": float(row.avg_order_value),
                                    }
                                ]
                            },
                        ),
                    ):
                        started = time.perf_counter()
                        response = client.post(url + "/predict", json=body)
                        latencies[name].append((time.perf_counter() - started) * 1000)
                        assert response.status_code == 200, response.text
        finally:
            for proc, _ in servers:
                proc.terminate()
                proc.wait(timeout=60)
        medians = {}
        for name, values in latencies.items():
            values.sort()
            medians[name] = values[len(values) // 2]
            print(f"{name}: median {medians[name]:.3f} ms, p99 {values[int(len(values) * 0.99)]:.3f} ms")
        overhead = medians["entity keys"] - medians["direct"]
        print(f"overhead of the feature lookups (difference of medians): {overhead:.3f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
