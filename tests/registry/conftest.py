"""Registry test worlds: a real project trained once by `mlops run` (copied per test), and
a bare repo with models written directly."""

from __future__ import annotations

from pathlib import Path

import pytest
from regkit import build_trained_project, copy_project

from mlops.repo.repo import Repo


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("template") / "project"
    run_id = build_trained_project(root)
    return root, run_id


@pytest.fixture
def trained(trained_template: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Repo, str]:
    """A copy of the trained project (cwd), and the id of the run that trained it."""
    template, run_id = trained_template
    root = tmp_path / "project"
    copy_project(template, root)
    monkeypatch.chdir(root)
    return Repo(root), run_id


@pytest.fixture(autouse=True)
def _fresh_api(fresh_tracking_api: None) -> None:
    """No tracking run leaks between tests (tests/conftest.py: fresh_tracking_api)."""
