"""Which version `monitor build` and `check` monitor without `--version` (the one the request logs
recorded as served), and what they say about request-log files a running server still writes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from servekit import ROW, fit_pipeline, mlops, start_server, training_frame, wait_for

from mlops.serve.requestlog import OPEN_PREFIX

OPEN_LINE = "request-log file(s) still open (written by a running server; profiled once closed, within --log-rotate)"


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
    assert doc["built"] >= 1 and doc["still_open"] == 0
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


def test_build_names_the_request_log_files_a_running_server_still_writes(walkm: Path) -> None:
    requests = walkm / ".mlops" / "serve" / "walkm" / "requests"
    server = start_server(walkm, "walkm:2", "--log-rotate", "1h")
    try:
        _send(server, 4)
        wait_for(lambda: any(p.name.startswith(OPEN_PREFIX) for p in requests.iterdir()), what="the open log file")
        running = mlops(walkm, "monitor", "build", "walkm", "--version", "2", "--json")
        doc = json.loads(running.stdout)
        assert doc["still_open"] == 1 and doc["built"] == 0
        assert f"1 {OPEN_LINE}" in running.stderr
        checked = mlops(walkm, "monitor", "check", "walkm", "--version", "2", "--window", "1d")
        assert f"1 {OPEN_LINE}" in checked.stderr
        # no finished log names a version yet: the message says why the rows are not seen
        unnamed = mlops(walkm, "monitor", "build", "walkm", code=2).stderr
        assert "pass --version N" in unnamed and OPEN_LINE in unnamed
        assert server.stop() == 0
    finally:
        server.kill()
    done = json.loads(mlops(walkm, "monitor", "build", "walkm", "--json").stdout)
    assert done["still_open"] == 0 and done["built"] >= 1 and done["version"] == 2


def test_open_files_of_a_dead_writer_are_not_counted(repo: Any) -> None:
    import os
    import socket
    import subprocess
    import sys

    from mlops.monitor.store import open_log_files

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = Path(repo.root) / ".mlops" / "serve" / "walkm" / "requests"
    folder.mkdir(parents=True)
    host = socket.gethostname()
    names = [f"{OPEN_PREFIX}20261207T020000Z-{host}-{pid}-0001.parquet" for pid in (os.getpid(), int(gone.stdout))]
    for name in names:
        (folder / name).write_bytes(b"PAR1")
    assert open_log_files(repo, "walkm") == (f"requests/{names[0]}",)  # the live writer's only


def test_production_is_taken_before_a_canary_in_a_newer_file(repo: Any) -> None:
    """Two workers: the newest finished file holds only canary rows, an older one production's."""
    from mlops.monitor.store import served_versions
    from mlops.serve.requestlog import RequestLog, requests_dir

    folder = requests_dir(repo, "walkm")
    for name, variant, version in (("20261207T010000Z-h-1-0001", "production", 2), ("", "canary", 3)):
        log = RequestLog(folder)
        log.start()
        meta = {"prediction": [1], "variant": variant, "version": version, "latency_ms": 1.0, "time": 1.8e9}
        log.append(None, {"tenure": [3]}, 1, meta)
        log.close()
        assert log.error is None
        if name:  # an older worker's file (names start with the time they were opened)
            (written,) = folder.glob("*.parquet")
            written.rename(folder / f"{name}.parquet")
    assert served_versions(repo, "walkm") == (("production", 2), ("canary", 3))
