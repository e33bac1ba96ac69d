"""Shared test worlds: real temporary git repos, real files, the CLI in-process and as a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops.cli.main import app
from mlops.repo.repo import Repo, init_repo

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))

# A job started in the background by a non-interactive shell (`.ci/run &`, nohup) inherits
# SIGINT ignored, and so would every `mlops` these tests start: the Ctrl-C tests would then
# see commands that cannot be interrupted. A handled signal is reset to the default at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # deterministic output: no colour, short lock waits, git identity for commits
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("MLOPS_LOCK_TIMEOUT", "2")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    monkeypatch.delenv("MLOPS_ROOT", raising=False)


@pytest.fixture
def fresh_tracking_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No active run, the warn-once flag clear and no inherited run id: a clean Python API."""
    from mlops.tracking import api

    monkeypatch.delenv("MLOPS_RUN_ID", raising=False)
    monkeypatch.delenv("MLOPS_STAGE", raising=False)
    monkeypatch.setattr(api, "_warned", False)
    monkeypatch.setattr(api, "_active", None)
    yield
    api._active = None


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """A fresh git repository with `mlops init`, as the working directory."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    r = init_repo(root)
    monkeypatch.chdir(root)
    return r


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    """Write files from a {relative path: content} dict."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture
def tree() -> Callable[[dict[str, str | bytes]], None]:
    return lambda files: write_tree(Path.cwd(), files)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


class Cli:
    """Run `mlops` in-process (CliRunner); checks the exit code it is told to expect."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = self.runner.invoke(app, list(args), catch_exceptions=False)
        out = Result(result.exit_code, result.stdout, result.stderr)
        assert result.exit_code == code, (
            f"mlops {' '.join(args)} -> {result.exit_code} (wanted {code})\n"
            f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}"
        )
        return out


@pytest.fixture
def cli() -> Cli:
    return Cli()


def run_mlops(
    *args: str, cwd: Path | None = None, code: int | None = 0, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `mlops` console script as a subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [MLOPS_BIN, *args], cwd=cwd or Path.cwd(), capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if code is not None:
        assert proc.returncode == code, (
            f"mlops {' '.join(args)} -> {proc.returncode} (wanted {code})\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def mlops_bin() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_mlops


@pytest.fixture
def remote_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "remote"
    yield path
    if path.exists():
        for folder, _dirs, _files in os.walk(path):
            os.chmod(folder, 0o755)
        shutil.rmtree(path, ignore_errors=True)
