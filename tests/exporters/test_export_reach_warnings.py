"""Exports warn about what the workers cannot reach: pods (Argo, Airflow --kubernetes) neither a
repository URL that is a path on this machine nor an mlops remote that is a local folder; Airflow's
BashOperator tasks run where the DAG runs (a local path is fine there) but need an origin to fetch
a commit their clone lacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlops.exporters.stage_tasks import is_local_path_url
from tests.conftest import git

POD_EXPORTS = {
    "argo": ["export", "argo", "--image", "img:1"],
    "airflow-kubernetes": ["export", "airflow", "--kubernetes", "--image", "img:1"],
}


def warnings_of(cli: Any, args: list[str], out: Path) -> list[str]:
    result = cli(*args, "--output", str(out), "--json")
    doc = json.loads(result.stdout)
    assert all(f"warning: {w}" in result.stderr for w in doc["warnings"])  # also said on stderr
    return [w for w in doc["warnings"] if "is on no branch of origin" not in w]  # the commit is never pushed here


@pytest.mark.parametrize("engine", sorted(POD_EXPORTS))
def test_pods_are_warned_of_a_local_repo_url_and_a_folder_remote(project: Path, cli: Any, tmp_path: Path, engine):
    git(project, "remote", "set-url", "origin", str(tmp_path / "walk"))
    cli("remote", "add", "storage", str(tmp_path / "store"), "--default", "--local")
    repo_warning, remote_warning = warnings_of(cli, POD_EXPORTS[engine], tmp_path / "out")
    assert repo_warning.startswith(f"the repository URL {tmp_path / 'walk'} is a path on this machine")
    assert "--repo-url" in repo_warning
    assert remote_warning.startswith(f"mlops remote 'storage' is a folder on this machine ({tmp_path / 'store'})")
    # a URL pods reach, and a remote they reach: nothing to say
    cli("remote", "add", "cloud", "s3://bucket/store", "--default", "--local")
    args = [*POD_EXPORTS[engine], "--repo-url", "git@git.example.com:team/churn.git"]
    assert warnings_of(cli, args, tmp_path / "out") == []


def test_bash_tasks_take_local_paths_but_need_an_origin(project: Path, cli: Any, tmp_path: Path) -> None:
    git(project, "remote", "set-url", "origin", str(tmp_path / "walk"))
    cli("remote", "add", "storage", str(tmp_path / "store"), "--default", "--local")
    assert warnings_of(cli, ["export", "airflow"], tmp_path / "dag.py") == []  # tasks run where the DAG runs
    git(project, "remote", "remove", "origin")
    [warning] = warnings_of(cli, ["export", "airflow"], tmp_path / "dag.py")
    assert warning.startswith("the repository has no 'origin' remote: a worker's clone that lacks commit")
    assert "git remote add origin URL" in warning


@pytest.mark.parametrize(
    "url, local",
    [
        ("/tmp/walk", True),
        ("../walk", True),
        ("walk", True),
        ("file:///tmp/walk", True),
        ("./a:b", True),
        ("https://git.example.com/team/churn.git", False),
        ("ssh://git@host/team/churn.git", False),
        ("git@git.example.com:team/churn.git", False),
        ("host:team/churn.git", False),
    ],
)
def test_which_urls_git_reads_as_local_paths(url: str, local: bool) -> None:
    assert is_local_path_url(url) is local
