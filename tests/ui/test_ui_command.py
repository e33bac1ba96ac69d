"""`mlops ui` as a user starts it: the real console script, a real server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from uikit import write_runs

from mlops.repo.repo import Repo

MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS_BIN, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


@contextmanager
def ui_server(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`mlops ui --port 0 --no-browser ...` until the block ends; yields the address it printed."""
    proc = subprocess.Popen(
        [MLOPS_BIN, "ui", "--port", "0", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()  # printed once the socket listens
        assert address.startswith("http://"), (address, proc.stderr.read() if proc.poll() is not None else "")
        deadline = time.monotonic() + 60
        while True:  # the socket accepts at once; wait for uvicorn to answer
            try:
                httpx.get(address + "static/ui.css", timeout=5, headers={"X-Mlops-Token": "probe"})
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_other_hosts_are_refused_without_a_token(repo: Repo) -> None:
    refused = run("ui", "--host", "0.0.0.0", "--no-browser")
    assert refused.returncode == 2 and "--token-env" in refused.stderr
    unset = run("ui", "--token-env", "MLOPS_UI_TEST_UNSET", "--no-browser", env={"MLOPS_UI_TEST_UNSET": ""})
    assert unset.returncode == 2 and "MLOPS_UI_TEST_UNSET" in unset.stderr


def test_outside_a_repository_it_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    proc = run("ui", "--no-browser", "--port", "0")
    assert proc.returncode == 2 and "not an mlops repository" in proc.stderr


@pytest.mark.timeout(120)
def test_serves_the_runs_on_loopback(repo: Repo) -> None:
    write_runs(repo, 12)
    with ui_server() as address:
        assert address.startswith("http://127.0.0.1:")
        page = httpx.get(address + "runs", timeout=30)
        assert page.status_code == 200 and 'data-run="r000011"' in page.text
        assert httpx.get(address, timeout=30).status_code == 302


@pytest.mark.timeout(120)
def test_with_a_token_every_request_needs_it(repo: Repo) -> None:
    write_runs(repo, 2)
    env = {"MLOPS_UI_TEST_TOKEN": "a-long-random-token"}
    with ui_server("--host", "0.0.0.0", "--token-env", "MLOPS_UI_TEST_TOKEN", env=env) as address:
        local = address.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(local + "runs", timeout=30).status_code == 401
        with httpx.Client(base_url=local, timeout=30) as browser:
            first = browser.get("/runs?token=a-long-random-token")
            assert first.status_code == 303
            assert browser.get(first.headers["location"]).status_code == 200  # by the cookie
