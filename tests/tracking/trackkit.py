"""Helpers for the tracking tests (imported as a plain module, like tests/data/datakit.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PYTHON = sys.executable


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def commit_all(cwd: Path, message: str) -> str:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-qm", message)
    return git(cwd, "rev-parse", "HEAD").strip()


def run_script(
    code: str, cwd: Path, env: dict[str, str | None] | None = None, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    proc = subprocess.run([PYTHON, "-c", code], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc
