"""`mlops ui` as a user starts it: the real console script, a real server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from uikit import MLOPS_BIN, ui_server, write_runs

from mlops.repo.repo import Repo


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS_BIN, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


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
