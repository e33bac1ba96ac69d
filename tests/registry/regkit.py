"""Helpers for the registry tests: a small real project trained by `mlops run`, models, CLI JSON."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PY = sys.executable
MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))

PREPARE = """
import pandas as pd, yaml
p = yaml.safe_load(open("params.yaml"))["prepare"]
frame = pd.read_csv("data/raw.csv")
import os; os.makedirs("data/prepared", exist_ok=True)
frame.iloc[: int(len(frame) * p["split"])].to_csv("data/prepared/train.csv", index=False)
frame.iloc[int(len(frame) * p["split"]):].to_csv("data/prepared/test.csv", index=False)
"""

TRAIN = """
import json, os, pickle
import mlops, pandas as pd, yaml
from sklearn.linear_model import LogisticRegression
p = yaml.safe_load(open("params.yaml"))["train"]
train = pd.read_csv("data/prepared/train.csv")
test = pd.read_csv("data/prepared/test.csv")
x, y = train[["tenure", "charges"]], train["churned"]
with mlops.start_run():
    mlops.log_params({"C": p["C"]})
    model = LogisticRegression(C=p["C"], max_iter=200).fit(x, y)
    os.makedirs("models", exist_ok=True)
    os.makedirs("metrics", exist_ok=True)
    pickle.dump(model, open("models/model.pkl", "wb"))
    acc = float(model.score(test[["tenure", "charges"]], test["churned"]))
    json.dump({"test_accuracy": acc}, open("metrics/eval.json", "w"))
"""


def raw_csv(rows: int = 200) -> str:
    lines = ["customer_id,tenure,charges,churned"]
    for i in range(rows):
        tenure = (i * 7) % 72 + 1
        charges = round(10 + (i * 13) % 110 + 0.5, 2)
        lines.append(f"{i},{tenure},{charges},{int(tenure < 20)}")
    return "\n".join(lines) + "\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def mlops(
    *args: str, cwd: Path, code: int | None = 0, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    proc = subprocess.run([MLOPS_BIN, *args], cwd=cwd, capture_output=True, text=True, env=full, timeout=timeout)
    if code is not None:
        assert proc.returncode == code, (
            f"mlops {' '.join(args)} -> {proc.returncode} (wanted {code})\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def build_trained_project(root: Path) -> str:
    """A git repo with tracked raw data and a prepare -> train pipeline, run once and committed.
    Returns the run id of that `mlops run`."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    mlops("init", cwd=root)
    (root / "data").mkdir()
    (root / "data" / "raw.csv").write_text(raw_csv())
    (root / "src").mkdir()
    (root / "src" / "prepare.py").write_text(PREPARE)
    (root / "src" / "train.py").write_text(TRAIN)
    (root / "params.yaml").write_text("prepare:\n  split: 0.75\ntrain:\n  C: 1.0\n")
    (root / "pipeline.yaml").write_text(
        "stages:\n"
        "  prepare:\n    cmd: python src/prepare.py\n    deps: [data/raw.csv, src/prepare.py]\n"
        "    params: [prepare]\n    outs: [data/prepared/]\n"
        "  train:\n    cmd: python src/train.py\n    deps: [data/prepared/, src/train.py]\n    params: [train]\n"
        "    outs: [models/model.pkl]\n    metrics: [metrics/eval.json]\n"
    )
    mlops("add", "data/raw.csv", cwd=root)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "project")
    run = json.loads(mlops("run", "--json", cwd=root).stdout)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "trained")
    return str(run["run_id"])


def copy_project(template: Path, dest: Path) -> None:
    shutil.copytree(template, dest, symlinks=True)
    for folder, _dirs, _files in os.walk(dest):  # cache objects are read-only; copies must be removable
        os.chmod(folder, 0o755)


def write_pickle(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def small_sklearn_model() -> Any:
    import pandas as pd
    from sklearn.tree import DecisionTreeClassifier

    frame = pd.DataFrame({"a": [1, 2, 3, 4], "b": [0.5, 0.1, 0.9, 0.3]})
    return DecisionTreeClassifier().fit(frame, [0, 1, 0, 1])


def js(result: Any) -> Any:
    return json.loads(result.stdout)


def audit_lines(root: Path) -> list[str]:
    return (root / ".mlops" / "registry" / "audit.jsonl").read_text().splitlines()


def audit_entries(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in audit_lines(root)]


def write_policy(root: Path, text: str) -> None:
    (root / ".mlops" / "policy.yaml").write_text(text)
