"""Fixtures for serving tests: a repository with registered models, and real servers."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servekit import Server, fit_pipeline, guarded, register, start_server


@pytest.fixture(scope="session")
def pipelines() -> dict[str, bytes]:
    """Two fitted churn pipelines (pickled once per session): the usual one and one answering the opposite."""
    return {"base": pickle.dumps(fit_pipeline()), "flipped": pickle.dumps(fit_pipeline(flip=True))}


@pytest.fixture
def model_repo(repo: Any, pipelines: dict[str, bytes]) -> Path:
    """A repository whose registry has churn v1 in production, v2 the same pipeline
    (both raise on an unknown plan), v3 a flipped one."""
    root = Path(repo.root)
    register(root, "churn", 1, guarded(), stage="production")
    register(root, "churn", 2, guarded())
    register(root, "churn", 3, pickle.loads(pipelines["flipped"]))
    return root


@pytest.fixture
def serve(model_repo: Path) -> Iterator[Callable[..., Server]]:
    """Start `mlops serve` processes on free ports; every one is stopped when the test ends."""
    started: list[Server] = []

    def start(
        ref: str = "churn@production", *args: str, root: Path | None = None, env: dict[str, str] | None = None
    ) -> Server:
        server = start_server(root or model_repo, ref, *args, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()  # the group: worker processes too, even when the supervisor already exited
