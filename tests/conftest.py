"""Shared test worlds: real temporary git repos, real files, the CLI in-process and as a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


@pytest.fixture(scope="session", autouse=True)
def _git_identity() -> Iterator[None]:
    # session fixtures (a trained project built once) commit before any per-test environment
    # exists, and a fresh machine has no user.name/user.email: without this, git commit fails there
    with pytest.MonkeyPatch.context() as patch:
        for name, value in GIT_IDENTITY.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # deterministic output: no colour, short lock waits, git identity for commits
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("MLOPS_LOCK_TIMEOUT", "2")
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)
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


# --- a real S3 endpoint: moto's standalone server as a subprocess on 127.0.0.1 -------------
# ``s3_server`` is the endpoint URL of a server started once per session (per xdist worker);
# ``s3_bucket`` is a fresh, empty bucket on it, with dummy credentials in the environment and
# nothing from the developer's own AWS setup. ``s3_auth_server`` checks credentials (it knows
# none, so it refuses all). Used by tests/remotes and tests/security.

SERVER_START_TIMEOUT = 30.0  # seconds; moto imports a lot on first start
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never probe 169.254.169.254
}
AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _moto_server(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Start ``python -m moto.server`` (the test interpreter's own), wait until it listens, yield its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in AWS_ENV_TO_CLEAR}
    env.update(DUMMY_AWS_ENV)
    env.update(extra_env or {})
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                output = log.read().decode(errors="replace")[-2000:]
                pytest.fail(f"moto server did not start on port {port} (exit {process.poll()}):\n{output}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of a moto S3 server that accepts any credentials."""
    yield from _moto_server()


@pytest.fixture(scope="session")
def s3_auth_server() -> Iterator[str]:
    """Endpoint URL of a moto server that checks every request's credentials (and knows none)."""
    yield from _moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials; none of the developer's AWS config, profiles or endpoints."""
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))


@dataclass
class S3Bucket:
    name: str
    endpoint_url: str
    client: Any  # a boto3 S3 client on the endpoint

    def keys(self, prefix: str = "") -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", ())}


@pytest.fixture
def s3_bucket(s3_server: str, aws_env: None) -> Iterator[S3Bucket]:
    """A fresh, empty bucket on ``s3_server``; removed (with its objects) afterwards."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    name = f"mlops-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    bucket = S3Bucket(name, s3_server, client)
    yield bucket
    keys = sorted(bucket.keys())
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]})
    client.delete_bucket(Bucket=name)
