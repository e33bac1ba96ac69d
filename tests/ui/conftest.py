"""UI test worlds: a trained project with a registered, promoted and approved model (built once,
copied per test), and bare repositories with runs written directly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the UI tests build their worlds with the other areas' kits (regkit, servekit, monitorkit): their
# folders go on the path here, once, as tests/monitor/conftest.py does, so test modules import them plainly
for _folder in ("registry", "serve", "monitor", "drift"):
    _path = str(Path(__file__).resolve().parents[1] / _folder)
    if _path not in sys.path:
        sys.path.insert(0, _path)

from regkit import build_trained_project, copy_project, mlops  # noqa: E402

from mlops.repo.repo import Repo  # noqa: E402


@pytest.fixture(scope="session")
def model_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("ui-template") / "project"
    run_id = build_trained_project(root)
    mlops("register", "churn", "models/model.pkl", "--description", "<b>churn</b> model", cwd=root)
    mlops("promote", "churn", "1", "--to", "staging", cwd=root)
    mlops("approve", "churn", "1", "--to", "production", "--by", "<img src=x onerror=alert(1)>", cwd=root)
    mlops("alias", "churn", "1", "champion", cwd=root)
    (root / ".mlops" / "reports").mkdir()
    (root / ".mlops" / "reports" / "drift-churn.html").write_text("<html><body><h1>drift report</h1></body></html>")
    return root, run_id


@pytest.fixture
def project(model_template: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Repo, str]:
    template, run_id = model_template
    root = tmp_path / "project"
    copy_project(template, root)
    monkeypatch.chdir(root)
    return Repo(root), run_id


@pytest.fixture(autouse=True)
def _fresh_api(fresh_tracking_api: None) -> None:
    """No tracking run leaks between tests (tests/conftest.py: fresh_tracking_api)."""
