"""Tracking tests: real git repos, real files, real subprocesses logging into runs."""

from __future__ import annotations

import pytest

from mlops.tracking import api


@pytest.fixture(autouse=True)
def _fresh_api(monkeypatch: pytest.MonkeyPatch):
    """Each test starts with no active run, the warn-once flag clear and no inherited run id."""
    monkeypatch.delenv("MLOPS_RUN_ID", raising=False)
    monkeypatch.delenv("MLOPS_STAGE", raising=False)
    monkeypatch.setattr(api, "_warned", False)
    monkeypatch.setattr(api, "_active", None)
    yield
    api._active = None
