"""The hook tests make bare remotes, push and clone: run them all under a default branch name
that is neither `main` nor `master`, so a test that leans on git's default (a bare repository's
HEAD, a clone without `-b`) fails here on every machine, not only on one configured otherwise."""

from __future__ import annotations

import pytest

DEFAULT_BRANCH = "trunk"


@pytest.fixture(autouse=True)
def _unusual_default_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    # git's environment config outranks the user's and the system's files (git-config: ENVIRONMENT)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "init.defaultBranch")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", DEFAULT_BRANCH)
