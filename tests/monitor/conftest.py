"""Monitoring tests: the planted-drift tables of tests/drift, the serving world of tests/serve."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

for _folder in ("drift", "serve"):
    _path = str(Path(__file__).resolve().parents[1] / _folder)
    if _path not in sys.path:
        sys.path.insert(0, _path)

from monitorkit import register_in_production  # noqa: E402
from servekit import fit_pipeline, start_server, training_frame  # noqa: E402


@pytest.fixture
def monitored(repo: Any, cli: Any) -> Path:
    """churn:1 in production, trained on data/train.parquet (tracked: the model's lineage)."""
    root = Path(repo.root)
    (root / "data").mkdir()
    training_frame(rows=600).to_parquet(root / "data" / "train.parquet")
    cli("add", "data/train.parquet")
    (root / "models").mkdir()
    register_in_production(root, fit_pipeline(), 1)
    return root


@pytest.fixture
def serve_monitored(monitored: Path) -> Iterator[Any]:
    started: list[Any] = []

    def start(*args: str) -> Any:
        server = start_server(monitored, "churn@production", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
