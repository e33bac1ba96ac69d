"""Fixtures for the executor tests: one real local Ray cluster for the session (2 CPUs, no dashboard)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from raycluster import NO_TOKEN_AUTH, RayCluster, start_cluster

from tests.conftest import AWS_ENV_TO_CLEAR, DUMMY_AWS_ENV

# the executor tests use tests/pipeline/pipekit.py (the stage program and the pipeline helpers)
PIPEKIT = Path(__file__).resolve().parents[1] / "pipeline"
if str(PIPEKIT) not in sys.path:
    sys.path.insert(0, str(PIPEKIT))


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    pytest.importorskip("ray")
    # the workers' own credentials for the S3 test server (a worker machine has its own; the driver's
    # never travel through Ray), and none of the developer's AWS configuration
    nowhere = str(tmp_path_factory.mktemp("aws") / "absent")
    aws = {**DUMMY_AWS_ENV, "AWS_CONFIG_FILE": nowhere, "AWS_SHARED_CREDENTIALS_FILE": nowhere}
    cluster = start_cluster(num_cpus=2, env=aws, unset=AWS_ENV_TO_CLEAR)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def step(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipekit import STEP_SOURCE

    path = tmp_path_factory.mktemp("tools") / "step.py"
    path.write_text(STEP_SOURCE)
    return path


@pytest.fixture(autouse=True)
def _ray_drivers_like_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drivers the tests start connect as the test cluster expects (no token authentication)."""
    for name, value in NO_TOKEN_AUTH.items():
        monkeypatch.setenv(name, value)
