"""`mlops serve --model-dir` against `mlflow models serve` of the same model: time to ready, resident memory.

    .venv/bin/python tests/benchmarks/bench_bundle_start.py [--work DIR] [--mlflow-venv DIR] [--repeat 3]

One scikit-learn churn pipeline (tests/serve/servekit.py), registered in a fresh repository and
exported with `mlops export model` as a bundle; MLflow's copy is saved from the same pickle with
``mlflow.sklearn.save_model``. MLflow runs from its own virtual environment (``--mlflow-venv``,
default WORK/mlflow-venv, built here with pip when absent), ``--env-manager local``, one worker.

Each round starts each server (they take turns at going first), times from the spawn to the
first 200 on its readiness endpoint (mlops: /v2/health/ready; MLflow: /ping, its only one), then
reads the resident memory of the whole process tree (supervisor and workers: /proc, RSS summed)
after one prediction. Medians over ``--repeat`` rounds. Targets: mlops at least 5x faster to ready
and at most a third of MLflow's memory. Prints the ratios and ``uptime`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
SERVE_TESTS = PROJECT / "tests" / "serve"
sys.path.insert(0, str(SERVE_TESTS))

import httpx  # noqa: E402
from servekit import fit_pipeline, register, serve_env, training_frame  # noqa: E402

MLOPS = str(Path(sys.executable).with_name("mlops"))
ROW = {"tenure": 3, "plan": "basic", "monthly_charges": 80.0}


def sh(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (from /proc), in MiB."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def start_and_measure(
    argv: list[str], ready: str, predict: tuple[str, dict[str, Any]], port: int, cwd: Path, env: dict[str, str]
) -> tuple[float, float]:
    log = cwd / f"serve-{time.monotonic_ns()}.log"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    if client.get(url + ready).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{argv[0]} did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.01)
            seconds = time.perf_counter() - t0
            path, body = predict
            answer = client.post(url + path, json=body)
            if answer.status_code != 200:
                raise SystemExit(f"{argv[0]}: prediction answered {answer.status_code}: {answer.text[:500]}")
        time.sleep(1.0)  # settle: lazily started threads, the first request's allocations
        return seconds, tree_rss_mib(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-work"))
    parser.add_argument("--mlflow-venv", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("uptime before:", sh("uptime").strip())
    work = (args.work / "bundle-start").resolve()
    venv = (args.mlflow_venv or args.work / "mlflow-venv").resolve()
    if not (venv / "bin" / "mlflow").exists():
        print(f"building MLflow's venv in {venv} (pip install mlflow scikit-learn pandas)")
        sh(sys.executable, "-m", "venv", str(venv))
        sklearn = sh(sys.executable, "-c", "import sklearn; print(sklearn.__version__)").strip()
        sh(str(venv / "bin" / "pip"), "install", "-q", "mlflow", f"scikit-learn=={sklearn}", "pandas", "pyarrow")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = serve_env()
    model = fit_pipeline()
    pickle_path = work / "model.pkl"
    pickle_path.write_bytes(pickle.dumps(model))
    project = work / "project"
    project.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=project)
    sh(MLOPS, "init", cwd=project, env=env)
    register(project, "churn", 1, model, stage="production")
    sh(MLOPS, "export", "model", "churn@production", "-o", str(work / "bundle"), cwd=project, env=env)
    training_frame(rows=200, seed=5).to_parquet(work / "example.parquet")
    save = (
        "import pickle, pandas as pd, mlflow.sklearn\n"
        "from mlflow.models import infer_signature\n"
        f"model = pickle.load(open({str(pickle_path)!r}, 'rb'))\n"
        f"x = pd.read_parquet({str(work / 'example.parquet')!r})\n"
        f"mlflow.sklearn.save_model(model, {str(work / 'mlflow-model')!r}, serialization_format='pickle',"
        " signature=infer_signature(x, model.predict(x)))\n"
    )
    sh(str(venv / "bin" / "python"), "-c", save, env={**env, "MLFLOW_TRACKING_URI": f"file://{work / 'mlruns'}"})
    outside = work / "elsewhere"  # served from a folder outside the repository
    outside.mkdir()
    mlflow_env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    mlflow_env.pop("PYTHONPATH", None)
    mlflow_body = {"dataframe_records": [ROW]}
    runs: dict[str, list[tuple[float, float]]] = {"mlops": [], "mlflow": []}
    for round_ in range(args.repeat):
        order = ["mlops", "mlflow"] if round_ % 2 == 0 else ["mlflow", "mlops"]
        for name in order:
            port = free_port()
            if name == "mlops":
                argv = [MLOPS, "serve", "--model-dir", str(work / "bundle"), "--port", str(port)]
                argv += ["--state-dir", str(outside / "state")]
                measured = start_and_measure(
                    argv, "/v2/health/ready", ("/predict", {"records": [ROW]}), port, outside, env
                )
            else:
                argv = [str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(work / "mlflow-model")]
                argv += ["-p", str(port), "-h", "127.0.0.1", "--env-manager", "local", "--workers", "1"]
                measured = start_and_measure(argv, "/ping", ("/invocations", mlflow_body), port, outside, mlflow_env)
            runs[name].append(measured)
            print(f"round {round_ + 1} {name}: ready in {measured[0]:.2f} s, {measured[1]:.0f} MiB resident")
    ready = {name: statistics.median(r[0] for r in rows) for name, rows in runs.items()}
    memory = {name: statistics.median(r[1] for r in rows) for name, rows in runs.items()}
    faster = ready["mlflow"] / ready["mlops"]
    lighter = memory["mlflow"] / memory["mlops"]
    mlflow_version = sh(str(venv / "bin" / "python"), "-c", "import mlflow; print(mlflow.__version__)").strip()
    print(
        json.dumps(
            {
                "mlflow": mlflow_version,
                "ready_seconds": {k: round(v, 3) for k, v in ready.items()},
                "rss_mib": {k: round(v, 1) for k, v in memory.items()},
            }
        )
    )
    print(f"time to ready: mlops {ready['mlops']:.2f} s, mlflow {ready['mlflow']:.2f} s: {faster:.1f}x (target >= 5x)")
    print(
        f"resident memory: mlops {memory['mlops']:.0f} MiB, mlflow {memory['mlflow']:.0f} MiB: "
        f"{lighter:.1f}x (target >= 3x)"
    )
    print("uptime after:", sh("uptime").strip())
    ok = faster >= 5 and lighter >= 3
    print("targets met" if ok else "TARGETS MISSED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
