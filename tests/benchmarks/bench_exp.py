"""Experiment sweep benchmark (issue 19): a 12-point grid over a 3-stage pipeline, `mlops exp run -j 2`
against `dvc exp run --queue` + `dvc queue start -j 2`, side by side in one run; then `exp show`
over 1,000 experiment records.

    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_exp.py [--work DIR] [--no-dvc] [--show-only]

(--show-only: step 4 alone, on 1,000 records written from a synthetic one, in seconds.)

(from the repository root; PYTHONPATH=. makes the mlops of this tree the one measured.)

1. builds the same project twice, one per tool: a data file tracked by the tool, three stage
   scripts doing about a second of real CPU work each (PBKDF2), prepare (no params) -> train
   (params train.lr, train.max_depth) -> evaluate (a metrics file), committed after one run of
   the pipeline in the workspace (so both tools know prepare's result);
2. times the grid `-S train.lr=0.01,0.1,1 -S train.max_depth=range(4,11,2)` (12 points), 2 at once:
   `mlops exp run ... -j 2` against `dvc exp run --queue ...` then `dvc queue start -j 2`, waited
   for until `dvc queue status` shows nothing queued or running;
3. counts the stage commands that ran (a counter file beside the projects): prepare must run 0
   times during the sweep for the target (it ran once, in the workspace, before);
4. writes 1,000 experiment records (copies of a real one) and times `mlops exp show --json`.
Targets: dvc/mlops >= 2; prepare not rerun by mlops; exp show of 1,000 < 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import bench_data  # noqa: E402  (install_dvc)

COMMON = """import hashlib, os, sys
def work(data: bytes, rounds: int = 1_000_000) -> bytes:
    with open(os.environ["BENCH_COUNTER"], "a") as f:
        f.write(os.path.basename(sys.argv[0]) + "\\n")
    return hashlib.pbkdf2_hmac("sha256", hashlib.sha256(data).digest(), b"bench", rounds)
"""
SCRIPTS = {
    "stages/prepare.py": COMMON
    + """data = open("data/raw.bin", "rb").read()
os.makedirs("work", exist_ok=True)
open("work/clean.bin", "wb").write(work(data) + data)
""",
    "stages/train.py": COMMON
    + """import yaml
p = yaml.safe_load(open("params.yaml"))["train"]
data = open("work/clean.bin", "rb").read()
os.makedirs("models", exist_ok=True)
open("models/model.bin", "wb").write(work(data + repr(p).encode()))
""",
    "stages/evaluate.py": COMMON
    + """import json, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
key = work(open("models/model.bin", "rb").read())
json.dump({"acc": round(1 - abs(p["lr"] - 0.1) - abs(p["max_depth"] - 6) / 100, 6), "key": key[0]},
          open("metrics.json", "w"))
""",
}
PARAMS = "train:\n  lr: 0.5\n  max_depth: 4\n"
SETS = ["-S", "train.lr=0.01,0.1,1", "-S", "train.max_depth=range(4,11,2)"]


def pipeline_yaml(python: str, tool: str) -> str:
    stages = {
        "prepare": {
            "cmd": f"{python} stages/prepare.py",
            "deps": ["data/raw.bin", "stages/prepare.py"],
            "outs": ["work/clean.bin"],
        },
        "train": {
            "cmd": f"{python} stages/train.py",
            "deps": ["work/clean.bin", "stages/train.py"],
            "params": ["train"],
            "outs": ["models/model.bin"],
        },
        "evaluate": {
            "cmd": f"{python} stages/evaluate.py",
            "deps": ["models/model.bin", "stages/evaluate.py"],
            "params": ["train"],
            "metrics": [{"metrics.json": {"cache": False}}],
        },
    }
    return json.dumps({"stages": stages}, indent=1)


def sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 3600) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def make_project(root: Path, tool: list[str], name: str, env: dict[str, str], data: bytes) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    python = sys.executable
    for rel, text in SCRIPTS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "params.yaml").write_text(PARAMS)
    (root / "data").mkdir()
    (root / "data/raw.bin").write_bytes(data)
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh([*tool, "init", *(["-q"] if name == "dvc" else [])], root, env)
    (root / ("dvc.yaml" if name == "dvc" else "pipeline.yaml")).write_text(pipeline_yaml(python, name))
    sh([*tool, "add", "data/raw.bin"], root, env)
    sh([*tool, "repro" if name == "dvc" else "run"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "-c", "user.name=b", "-c", "user.email=b@e", "commit", "-qm", "project"], root, env)


def counts(counter: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in counter.read_text().split() if counter.exists() else []:
        found[line] = found.get(line, 0) + 1
    return found


def sweep_mlops(root: Path, mlops: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    sh([*mlops, "exp", "run", *SETS, "-j", "2", "--name", "grid"], root, env)
    return time.perf_counter() - began


def sweep_dvc(root: Path, dvc: str, env: dict[str, str]) -> float:
    # `dvc queue start` spawns its workers as `dvc` from PATH: without its venv there they die unseen
    env = {**env, "PATH": f"{Path(dvc).parent}{os.pathsep}{env.get('PATH', '')}"}
    began = time.perf_counter()
    idle_since = None
    sh([dvc, "exp", "run", "--queue", *SETS], root, env)
    sh([dvc, "queue", "start", "-j", "2"], root, env)
    while True:
        status = sh([dvc, "queue", "status"], root, env)
        if not any(word in status for word in ("Queued", "Running")):
            break
        if "0 active, 0 idle" in status:  # experiments wait, and no worker runs them
            idle_since = idle_since or time.perf_counter()
            if time.perf_counter() - idle_since > 120:
                raise SystemExit(f"dvc queue: no worker runs the queued experiments:\n{status}")
        else:
            idle_since = None
        time.sleep(0.5)
    took = time.perf_counter() - began
    if "Failed" in status:
        raise SystemExit(f"dvc queue: experiments failed:\n{status}")
    return took


SYNTHETIC = {  # a record shaped like a real one of the grid (step 2), for --show-only
    "format": 1,
    "name": "grid-1",
    "sweep": "grid",
    "status": "succeeded",
    "base": "0" * 40,
    "commit": "0" * 40,
    "changes": {"train.lr": 0.01, "train.max_depth": 4},
    "params": {"train.lr": 0.01, "train.max_depth": 4},
    "metrics": {"acc": 0.5, "key": 12},
    "outs": [
        {"path": "work/clean.bin", "hash": "a" * 32, "kind": "file", "size": 20971552, "files": 1},
        {"path": "models/model.bin", "hash": "b" * 32, "kind": "file", "size": 32, "files": 1},
    ],
    "files": {"params.yaml": "c" * 32, "pipeline.lock": "d" * 32, "metrics.json": "e" * 32},
    "run_id": None,
    "stages": {"prepare": "restored", "train": "ran", "evaluate": "ran"},
    "created": 1.7e9,
    "seconds": 2.5,
    "error": "",
}


def show_only(work: Path, mlops: list[str], env: dict[str, str]) -> int:
    """Step 4 alone: a fresh repository, 1,000 records, `exp show --json` timed."""
    root = work / "exp-show"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    sh(["git", "init", "-q"], root, env)
    sh([*mlops, "init"], root, env)
    (root / ".mlops/experiments").mkdir(parents=True, exist_ok=True)
    show_s, show_cpu = show_thousand(root, mlops, env)
    print(f"mlops exp show --json, 1,000 experiments (best of 5) | {show_s:.3f} | {'PASS' if show_s < 0.5 else 'FAIL'}")
    print(f"info: its CPU time (user+sys) | {show_cpu:.3f} | -")
    print(f"load average at the end | {os.getloadavg()!r} | -")
    return 0


def show_thousand(root: Path, mlops: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Best of 5 of `exp show --json` over 1,000 records: (wall seconds, CPU seconds of the process)."""
    import resource

    folder = root / ".mlops/experiments"
    model = json.loads(next(folder.glob("grid-1.json")).read_text()) if (folder / "grid-1.json").exists() else SYNTHETIC
    for index in range(1000):
        doc = {**model, "name": f"many-{index}", "sweep": f"many-{index // 100}", "metrics": {"acc": index / 1000}}
        (folder / f"many-{index}.json").write_text(json.dumps(doc))
    best, best_cpu = float("inf"), float("inf")
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        sh([*mlops, "exp", "show", "--json", "--sort", "-metrics.acc"], root, env)
        best = min(best, time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best_cpu = min(best_cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return best, best_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(REPO_ROOT / "bench-work"))
    parser.add_argument("--size-mb", type=int, default=20)
    parser.add_argument("--no-dvc", action="store_true")
    parser.add_argument("--show-only", action="store_true", help="Only time exp show over 1,000 records.")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    counter = work / "exp-counter.txt"
    env = {
        **os.environ,
        "BENCH_COUNTER": str(counter),
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@e",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@e",
        "DVC_NO_ANALYTICS": "1",
    }
    if env.get("PYTHONPATH"):  # absolute: the commands run in the projects, where PYTHONPATH=. names another tree
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    mlops = [sys.executable, "-m", "mlops"]
    if args.show_only:
        return show_only(work, mlops, env)
    data = os.urandom(args.size_mb << 20)
    rows = []
    make_project(work / "exp-mlops", mlops, "mlops", env, data)
    counter.write_text("")
    mlops_s = sweep_mlops(work / "exp-mlops", mlops, env)
    mlops_counts = counts(counter)
    rows.append(("mlops exp run, 12 points, -j 2", f"{mlops_s:.1f}", str(mlops_counts)))
    if not args.no_dvc:
        exe, why = bench_data.install_dvc(work, sys.executable, "dvc")
        if exe is None:
            print(f"DVC not measured: {why}")
        else:
            make_project(work / "exp-dvc", [str(exe)], "dvc", env, data)
            counter.write_text("")
            dvc_s = sweep_dvc(work / "exp-dvc", str(exe), env)
            rows.append(("dvc exp run --queue + queue start -j 2", f"{dvc_s:.1f}", str(counts(counter))))
            rows.append(
                ("ratio dvc/mlops (target >= 2)", f"{dvc_s / mlops_s:.2f}x", "PASS" if dvc_s / mlops_s >= 2 else "FAIL")
            )
    rows.append(
        (
            "prepare run by mlops during the sweep (target 0)",
            str(mlops_counts.get("prepare.py", 0)),
            "PASS" if not mlops_counts.get("prepare.py") else "FAIL",
        )
    )
    show_s, show_cpu = show_thousand(work / "exp-mlops", mlops, env)
    rows.append(
        ("mlops exp show --json, 1,000 experiments (best of 5)", f"{show_s:.3f}", "PASS" if show_s < 0.5 else "FAIL")
    )
    rows.append(
        ("info: its CPU time (user+sys; the wall time above waits on a loaded machine)", f"{show_cpu:.3f}", "-")
    )
    rows.append(("load average at the end", os.getloadavg().__repr__(), "-"))
    for row in rows:
        print(" | ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
