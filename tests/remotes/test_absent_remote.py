"""A remote whose root is absent (a folder moved away, a bucket that does not exist) is an outage:
exit 3 with one line naming it, never "object ... is not on remote", "0 entries" or "would run"."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from mlops.repo.repo import Repo
from tests.conftest import git

PIPELINE = f"""stages:
  upper:
    cmd: {sys.executable} -c "open('out.txt', 'w').write(open('data.txt').read().upper())"
    deps: [data.txt]
    outs: [out.txt]
"""


@pytest.fixture
def clone_of_moved_remote(
    repo: Repo, remote_dir: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh clone of a project pushed (with its run cache) to a folder remote that was then moved away."""
    cli("remote", "add", "storage", str(remote_dir), "--default")
    (repo.root / "data.txt").write_text("hello\n")
    cli("add", "data.txt")
    (repo.root / "pipeline.yaml").write_text(PIPELINE)
    cli("run")
    cli("push", "--run-cache")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "project")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo.root), str(clone))
    remote_dir.rename(tmp_path / "moved-away")
    monkeypatch.chdir(clone)
    return clone


@pytest.mark.parametrize(
    "args", [("pull",), ("fetch",), ("pull", "--run-cache"), ("run", "--dry-run", "--remote", "storage")]
)
def test_a_moved_folder_remote_is_named_as_absent(clone_of_moved_remote: Path, remote_dir: Path, cli: Any, args):
    result = cli(*args, code=3)
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"error: remote 'storage' at {remote_dir} does not exist (or is not reachable)"
    assert "push --full" not in result.stderr and "would run" not in result.stdout


def test_the_absent_remote_is_one_json_error(clone_of_moved_remote: Path, remote_dir: Path, cli: Any) -> None:
    doc = json.loads(cli("pull", "--run-cache", "--json", code=3).stdout)
    assert doc["exit_code"] == 3 and doc["message"].endswith("does not exist (or is not reachable)")


def test_a_first_push_still_creates_the_folder(repo: Repo, remote_dir: Path, cli: Any) -> None:
    cli("remote", "add", "storage", str(remote_dir), "--default")
    (repo.root / "data.txt").write_text("hello\n")
    cli("add", "data.txt")
    cli("push")
    assert remote_dir.is_dir()
    shutil.rmtree(repo.dot / "cache")
    cli("pull")
    assert (repo.root / "data.txt").read_text() == "hello\n"


@pytest.mark.parametrize("args", [("pull", "--run-cache"), ("run", "--dry-run", "--remote", "gone")])
def test_a_missing_bucket_is_named_not_read_as_empty(repo: Repo, s3_server: str, aws_env: None, cli: Any, args):
    cli("remote", "add", "gone", "s3://no-such-bucket-here/store", "--endpoint-url", s3_server, "--default")
    (repo.root / "data.txt").write_text("hello\n")
    cli("add", "data.txt")
    (repo.root / "pipeline.yaml").write_text(PIPELINE)
    result = cli(*args, code=3)
    assert f"remote 'gone': bucket 'no-such-bucket-here' does not exist at {s3_server}" in result.stderr
