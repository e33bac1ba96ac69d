"""Tracking tests: real git repos, real files, real subprocesses logging into runs."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_api(fresh_tracking_api: None) -> None:
    """Each test starts with a clean Python API (tests/conftest.py: fresh_tracking_api)."""
