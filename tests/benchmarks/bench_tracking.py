"""Tracking benchmark: list, filter and sort 10,000 runs with `mlops runs list` (target: < 1 s).

    .venv/bin/python tests/benchmarks/bench_tracking.py [--runs 10000] [--work DIR] [--repeats 5]

What it does:
1. makes a fresh git repository with `mlops init` in the work folder (default: a temp dir);
2. creates N runs in the documented on-disk format (.mlops/runs/<id>/run.json, params.jsonl,
   metrics.jsonl with 10 steps of loss plus test_accuracy, and one index.jsonl line per ended
   run), written in bulk for speed; 1 % of the runs are left out of the index (half of them
   "running" with a dead pid, i.e. crashed; half ended without an index line), so the
   fallback path that reads run.json is exercised too; a few runs are logged through the
   real API (`mlops.start_run`) as a sanity check of the format;
3. times wall-clock seconds around one subprocess call of the real console script:
   `mlops runs list --filter "params.max_depth>=8 and metrics.test_accuracy>0.9"
   --sort=-metrics.test_accuracy` (first call, which heals the index, then best of
   --repeats), the same with --json and --limit 0, and a plain `mlops runs list`.
4. If (and only if) mlflow happens to be importable, times MLflow's
   `search_runs(filter_string=..., order_by=...)` on a file store holding the same number of
   runs. mlflow is never installed by this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
MLOPS = str(Path(sys.executable).with_name("mlops"))
FILTER = "params.max_depth>=8 and metrics.test_accuracy>0.9"
SORT = "-metrics.test_accuracy"
TARGET = 1.0


def sh(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr[-400:]}")
    return took, proc.stdout


def make_runs(root: Path, count: int, seed: int = 7) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from mlops.repo.repo import Repo
    from mlops.tracking import store

    rng = random.Random(seed)
    repo = Repo(root)
    runs = store._ensure_runs_dir(repo)
    host = socket.gethostname()
    dead_pid = 2**22 + 4321  # above the default pid_max: never alive
    index_lines = []
    start0 = time.time() - count * 60
    for i in range(count):
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(start0 + i * 60)) + "-" + uuid.UUID(int=rng.getrandbits(128)).hex[:8]
        folder = runs / run_id
        folder.mkdir()
        started = start0 + i * 60
        crashed = i % 100 == 0
        unindexed = i % 100 == 50
        params = {"max_depth": rng.randint(2, 16), "n_estimators": rng.choice([50, 100, 200]), "model": rng.choice(["rf", "gbm", "lr"])}
        acc = round(rng.uniform(0.7, 0.99), 4)
        info = {
            "format": 1, "id": run_id, "name": f"run-{i}", "status": "running" if crashed else "finished",
            "start_time": started, "end_time": None if crashed else started + 30, "user": "bench", "host": host,
            "pid": dead_pid if crashed else 1000 + i, "pid_start": None, "git_commit": None, "git_dirty": None,
            "source": "api", "stages": [],
        }
        (folder / "run.json").write_text(json.dumps(info, indent=2) + "\n")
        with open(folder / "params.jsonl", "w") as handle:
            for key, value in params.items():
                handle.write(json.dumps({"key": key, "value": value, "timestamp": started}) + "\n")
        with open(folder / "metrics.jsonl", "w") as handle:
            for step in range(10):
                handle.write(json.dumps({"key": "loss", "value": 1 / (step + 1) + rng.random() / 10, "step": step, "timestamp": started + step}) + "\n")
            handle.write(json.dumps({"key": "test_accuracy", "value": acc, "step": None, "timestamp": started + 11}) + "\n")
        if not crashed and not unindexed:
            index_lines.append(json.dumps(store.summarize(repo, run_id, info=info), sort_keys=True, separators=(",", ":")))
    (runs / store.INDEX_FILE).write_text("\n".join(index_lines) + "\n")


def api_runs(root: Path, count: int = 5) -> None:
    code = (
        "import mlops\n"
        f"for i in range({count}):\n"
        "    with mlops.start_run(name=f'api-{i}'):\n"
        "        mlops.log_params({'max_depth': 8 + i})\n"
        "        for s in range(10):\n            mlops.log_metric('loss', 1 / (s + 1), step=s)\n"
        "        mlops.log_metric('test_accuracy', 0.95)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def bench_mlflow(count: int, work: Path) -> float | None:
    if importlib.util.find_spec("mlflow") is None:
        return None
    import mlflow  # noqa: PLC0415 - only when it happens to be installed

    store = work / "mlruns"
    shutil.rmtree(store, ignore_errors=True)
    mlflow.set_tracking_uri(store.as_uri())
    rng = random.Random(7)
    experiment = mlflow.create_experiment("bench")
    client = mlflow.tracking.MlflowClient()
    for i in range(count):
        run = client.create_run(experiment)
        client.log_batch(
            run.info.run_id,
            params=[mlflow.entities.Param("max_depth", str(rng.randint(2, 16)))],
            metrics=[mlflow.entities.Metric("test_accuracy", rng.uniform(0.7, 0.99), int(time.time() * 1000), 0)],
        )
        client.set_terminated(run.info.run_id)
    start = time.perf_counter()
    mlflow.search_runs(
        experiment_ids=[experiment], filter_string="params.max_depth >= '8' and metrics.test_accuracy > 0.9",
        order_by=["metrics.test_accuracy DESC"], max_results=20,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir, removed after)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    root = work / "project"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([MLOPS, "init"], cwd=root, check=True, capture_output=True)
    t0 = time.perf_counter()
    make_runs(root, args.runs)
    api_runs(root)
    made = time.perf_counter() - t0
    total = args.runs + 5
    print(f"machine: {os.cpu_count()} cpu, python {sys.version.split()[0]}, {sys.platform}")
    print(f"created {total} runs in {made:.1f}s under {root / '.mlops' / 'runs'}")

    query = [MLOPS, "runs", "list", "--filter", FILTER, f"--sort={SORT}"]
    first, _ = sh(query, root)  # heals the index with the crashed runs
    rows = []
    best_query = min(sh(query, root)[0] for _ in range(args.repeats))
    rows.append(("runs list --filter --sort (first call)", first))
    rows.append(("runs list --filter --sort", best_query))
    _, doc = sh([*query, "--json", "--limit", "0"], root)
    matched = json.loads(doc)
    rows.append(("runs list --filter --sort --json --limit 0", min(sh([*query, "--json", "--limit", "0"], root)[0] for _ in range(args.repeats))))
    rows.append(("runs list", min(sh([MLOPS, "runs", "list"], root)[0] for _ in range(args.repeats))))
    rows.append(("mlops --help (start-up)", min(sh([MLOPS, "--help"], root)[0] for _ in range(args.repeats))))
    mlflow_s = bench_mlflow(args.runs, work)

    assert matched["total"] == total, matched["total"]
    print(f"{len(matched['runs'])} of {matched['total']} runs match {FILTER!r}")
    print()
    print(f"| operation ({total} runs) | mlops s | target | pass/fail |")
    print("| --- | --- | --- | --- |")
    for label, seconds in rows:
        target = f"< {TARGET:g} s" if label.startswith("runs list") and "first" not in label else "info"
        verdict = ("pass" if seconds < TARGET else "FAIL") if target != "info" else "info"
        print(f"| {label} | {seconds:.3f} | {target} | {verdict} |")
    if mlflow_s is not None:
        print(f"| mlflow.search_runs, same filter and order ({args.runs} runs, file store) | {mlflow_s:.3f} | info | info |")
    else:
        print("(mlflow is not importable: no MLflow comparison)")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if best_query < TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
