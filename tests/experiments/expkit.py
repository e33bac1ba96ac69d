"""A small three-stage project for the experiment tests: prepare (no params), train (train.*), evaluate.

Each stage appends its name to the file $EXP_COUNTER (outside the repo, not a dependency), so a
test counts how often each command really ran across the workspace and every experiment."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))  # the console script tests/conftest.py runs

PREPARE = """
import os, sys
rows = open("data/raw.csv").read().splitlines()
os.makedirs("data/prepared", exist_ok=True)
open("data/prepared/rows.txt", "w").write("\\n".join(r.upper() for r in rows) + "\\n")
open(os.environ["EXP_COUNTER"], "a").write("prepare\\n")
"""
TRAIN = """
import json, os, sys, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
if p["lr"] < 0:
    sys.exit("lr must not be negative")
if os.environ.get("EXP_SLOW"):
    import time
    open(os.environ["EXP_COUNTER"], "a").write("train-start\\n")
    time.sleep(120)
rows = open("data/prepared/rows.txt").read().split()
os.makedirs("models", exist_ok=True)
open("models/model.txt", "w").write(f"lr={p['lr']} depth={p['max_depth']} rows={len(rows)}\\n")
open(os.environ["EXP_COUNTER"], "a").write("train\\n")
"""
EVALUATE = """
import json, os
text = open("models/model.txt").read()
lr = float(text.split()[0].split("=")[1]); depth = int(text.split()[1].split("=")[1])
json.dump({"test_accuracy": round(1 - abs(lr - 0.1) - abs(depth - 6) / 100, 6)}, open("metrics.json", "w"))
open(os.environ["EXP_COUNTER"], "a").write("evaluate\\n")
"""
PIPELINE = """
stages:
  prepare:
    cmd: python src/prepare.py
    deps: [data/raw.csv, src/prepare.py]
    outs: [data/prepared]
  train:
    cmd: python src/train.py
    deps: [data/prepared, src/train.py]
    params: [train]
    outs: [models/model.txt]
  evaluate:
    cmd: python src/evaluate.py
    deps: [models/model.txt, src/evaluate.py]
    metrics: [metrics.json]
"""
PARAMS = "train:\n  lr: 0.5\n  max_depth: 4\nother: keep\n"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def make_project(root: Path, run_mlops, counter: Path, monkeypatch) -> None:
    """The project committed, its data tracked, the pipeline run once in the workspace."""
    files = {
        "src/prepare.py": PREPARE,
        "src/train.py": TRAIN,
        "src/evaluate.py": EVALUATE,
        "pipeline.yaml": PIPELINE,
        "params.yaml": PARAMS,
        "data/raw.csv": "a\nb\nc\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    monkeypatch.setenv("EXP_COUNTER", str(counter))
    run_mlops("add", "data/raw.csv", cwd=root)
    run_mlops("run", cwd=root)
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "project")


def counts(counter: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in counter.read_text().split() if counter.exists() else []:
        found[line] = found.get(line, 0) + 1
    return found


def workspace_digest(root: Path) -> dict[str, str]:
    """Every file of the workspace but .git/ and .mlops/ (mlops' own state), by content hash."""
    found = {}
    for folder, dirs, names in os.walk(root):
        rel_folder = Path(folder).relative_to(root)
        if rel_folder.parts[:1] in ((".git",), (".mlops",)):
            dirs[:] = []
            continue
        for name in names:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
