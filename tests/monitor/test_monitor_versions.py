"""Which version `monitor build` and `check` monitor without `--version` (the one the request logs
recorded as served)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from servekit import ROW, fit_pipeline, mlops, start_server, training_frame


@pytest.fixture
def walkm(repo: Any, cli: Any) -> Path:
    """walkm:1..3, none in production; only version 2 trained on registered data (data/train.parquet)."""
    from mlops import registry

    root = Path(repo.root)
    (root / "data").mkdir()
    training_frame(rows=300).to_parquet(root / "data" / "train.parquet")
    cli("add", "data/train.parquet")
    (root / "models").mkdir()
    for version in (1, 2, 3):
        path = root / "models" / f"walkm-v{version}.pkl"
        path.write_bytes(pickle.dumps(fit_pipeline(seed=version)))
        registry.register(
            repo,
            "walkm",
            path,
            data=["data/train.parquet"] if version == 2 else [],
            signature_from=root / "data" / "train.parquet",
        )
    return root


def _send(server: Any, requests: int) -> None:
    with server.client() as c:
        for i in range(requests):
            assert c.post("/predict", json={"records": [ROW]}, headers={"X-Request-ID": f"r{i}"}).status_code == 200


def test_build_and_check_monitor_the_served_version_not_the_latest(walkm: Path) -> None:
    server = start_server(walkm, "walkm:2")
    try:
        _send(server, 6)
        assert server.stop() == 0  # its request-log file finished
    finally:
        server.kill()

    built = mlops(walkm, "monitor", "build", "walkm", "--json")
    doc = json.loads(built.stdout)
    assert doc["version"] == 2 and doc["version_from"] == "request logs (production)"
    assert doc["built"] >= 1
    text = mlops(walkm, "monitor", "build", "walkm").stdout
    assert "training data of version 2, served in production per the request logs" in text
    check = json.loads(mlops(walkm, "monitor", "check", "walkm", "--window", "1d", "--json").stdout)
    assert check["version"] == 2 and check["build"]["version"] == 2
    assert sum(w["rows"] for w in check["windows"]) == 6


def test_no_production_and_no_served_version_asks_for_one(walkm: Path) -> None:
    for args in (("build", "walkm"), ("check", "walkm", "--window", "1d", "--json")):
        proc = mlops(walkm, "monitor", *args, code=2)
        assert "walkm has no production version and its request logs name none; pass --version N" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert json.loads(mlops(walkm, "monitor", "build", "walkm", "--version", "2", "--json").stdout)["version"] == 2
