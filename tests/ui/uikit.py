"""Helpers for the UI tests: run folders written fast with the run store's own layout, a test
client on a loopback Host, and a snapshot of every file in a repository."""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from mlops.repo.repo import Repo
from mlops.tracking import store
from mlops.ui.app import build_app

with warnings.catch_warnings():  # starlette's TestClient warns that it will move to another package
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE = "http://127.0.0.1:8765"


def client(repo: Repo, *, token: str | None = None, base_url: str = BASE) -> TestClient:
    return TestClient(build_app(repo, token=token), base_url=base_url, follow_redirects=False)


def write_runs(
    repo: Repo, count: int, *, params: int = 3, metrics: int = 2, start: float | None = None, first: int = 0
) -> list[str]:
    """``count`` ended runs, each a run folder with its run.json and one summary line in the
    index, as ``store.finish_run`` leaves them; written without fsync or git so 20,000 take seconds."""
    folder = store._ensure_runs_dir(repo)
    start = time.time() - count if start is None else start
    lines = []
    ids = []
    for i in range(first, first + count):
        run_id = f"r{i:06d}"
        began = start + i - first
        info = {
            "format": store.RUN_FORMAT,
            "id": run_id,
            "name": f"trial-{i % 97}",
            "status": store.FINISHED if i % 10 else store.FAILED,
            "start_time": began,
            "end_time": began + 1 + i % 7,
            "user": "tester",
            "host": "ci",
            "pid": 1,
            "pid_start": None,
            "git_commit": "0" * 40,
            "git_dirty": False,
            "source": "api",
            "stages": [],
        }
        run_folder = folder / run_id
        run_folder.mkdir()
        (run_folder / store.RUN_FILE).write_text(json.dumps(info))
        summary: dict[str, Any] = {"format": store.INDEX_FORMAT, **{k: info.get(k) for k in store.SUMMARY_FIELDS}}
        summary["owned"] = True
        summary["params"] = {f"p{j}": (i * (j + 1)) % 50 for j in range(params)}
        summary["metrics"] = {f"m{j}": ((i * 7919 + j) % 1000) / 1000 for j in range(metrics)}
        summary["artifacts"] = 0
        lines.append(json.dumps(summary))
        ids.append(run_id)
    with open(folder / store.INDEX_FILE, "a") as index:
        index.write("\n".join(lines) + "\n")
    return ids


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file and folder under ``root`` (``.git`` and ``.mlops`` included): size and content hash."""
    out: dict[str, tuple[int, str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root) + "/"] = (0, "")
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                out[os.path.relpath(path, root)] = (0, os.readlink(path))
                continue
            data = Path(path).read_bytes()
            out[os.path.relpath(path, root)] = (len(data), hashlib.sha256(data).hexdigest())
    return out
