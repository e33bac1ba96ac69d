"""Serving test world: real scikit-learn models, a real `mlops serve` process, bounded traffic.

Model classes here are pickled into test repositories, so the server process imports this
module when it unpickles them (the fixtures put the project root on its PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROJECT = Path(__file__).resolve().parents[2]
MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))
FEATURES = ("tenure", "plan", "monthly_charges")


def training_frame(rows: int = 600, seed: int = 0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "tenure": rng.integers(0, 72, rows).astype("int64"),
        "plan": rng.choice(["basic", "pro", "family"], rows),
        "monthly_charges": rng.uniform(10, 120, rows).round(2),
    })


def fit_pipeline(seed: int = 0, flip: bool = False) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = training_frame(seed=seed)
    target = ((frame["tenure"] < 12) & (frame["monthly_charges"] > 60)).astype(int)
    if flip:  # a candidate that answers differently: the shadow's disagreement is then visible
        target = 1 - target
    columns = ColumnTransformer([("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                 ("numbers", StandardScaler(), ["tenure", "monthly_charges"])])
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=500))]).fit(frame, target)


SIGNATURE = {
    "inputs": [{"name": "tenure", "dtype": "int64"}, {"name": "plan", "dtype": "str"}, {"name": "monthly_charges", "dtype": "float64"}],
    "outputs": [{"name": "churned", "dtype": "int64"}],
}


class GuardedModel:
    """A real pipeline that raises on a negative tenure, as a model with an input assertion would."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def predict(self, frame: Any) -> Any:
        if (frame["tenure"] < 0).any():
            raise ValueError("tenure must not be negative")
        return self.pipeline.predict(frame)


class BrokenModel:
    """A candidate that fails on every call."""

    def predict(self, frame: Any) -> Any:
        raise RuntimeError("this candidate is broken")


class SlowModel:
    """A real pipeline that takes ``seconds`` per call (a SIGTERM arrives while requests are in flight)."""

    def __init__(self, pipeline: Any, seconds: float) -> None:
        self.pipeline = pipeline
        self.seconds = seconds

    def predict(self, frame: Any) -> Any:
        time.sleep(self.seconds)
        return self.pipeline.predict(frame)


# --- registering models --------------------------------------------------------------------------


def register(root: Path, name: str, version: int, model: Any, *, stage: str = "none", signature: Any = SIGNATURE,
             refuse_promotion: str | None = None) -> None:
    """Register ``model`` as ``name:version`` in the repository at ``root``."""
    folder = root / "test-models" / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    meta: dict[str, Any] = {"stage": stage, "signature": signature}
    if refuse_promotion:
        meta["refuse_promotion"] = refuse_promotion
    (folder / "meta.json").write_text(json.dumps(meta))


def stage_of(root: Path, name: str, version: int) -> str:
    return json.loads((root / "test-models" / name / str(version) / "meta.json").read_text())["stage"]


def audit_entries(root: Path) -> list[dict[str, Any]]:
    path = root / "test-models" / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def serve_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # the project root (for tests.serve.folder_source) and this folder (for the pickled model classes)
    path = os.pathsep.join([str(PROJECT), str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path,
           "MLOPS_SERVE_SOURCE": "tests.serve.folder_source:FolderSource", "NO_COLOR": "1"}
    env.pop("MLOPS_DEBUG", None)
    env.update(extra or {})
    return env


def mlops(root: Path, *args: str, code: int | None = 0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([MLOPS_BIN, *args], cwd=root, capture_output=True, text=True, env=serve_env(env), timeout=120)
    if code is not None:
        assert proc.returncode == code, f"mlops {' '.join(args)} -> {proc.returncode} (wanted {code})\n{proc.stdout}\n{proc.stderr}"
    return proc


# --- a real server -------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        """End the server and every process of its group (worker processes included)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not stop within {timeout}s:\n{self.stderr()}") from None


def start_server(root: Path, ref: str, *args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Server:
    stderr_path = root / f".serve-stderr-{time.monotonic_ns()}.log"
    handle = open(stderr_path, "wb")
    # a session of its own: teardown can end the server and its worker processes as one group
    proc = subprocess.Popen([MLOPS_BIN, "serve", ref, "--port", "0", *args], cwd=root, env=serve_env(env),
                            stdout=subprocess.DEVNULL, stderr=handle, start_new_session=True)
    handle.close()
    deadline = time.monotonic() + timeout
    port = None
    while time.monotonic() < deadline:
        text = stderr_path.read_text(errors="replace")
        match = re.search(r"http://127\.0\.0\.1:(\d+)", text)
        if match:
            port = int(match.group(1))
            break
        if proc.poll() is not None:
            raise AssertionError(f"mlops serve exited with {proc.returncode}:\n{text}")
        time.sleep(0.05)
    if port is None:
        Server(proc, 0, stderr_path).kill()
        raise AssertionError(f"mlops serve did not announce its address in {timeout}s:\n{stderr_path.read_text()}")
    server = Server(proc, port, stderr_path)
    while time.monotonic() < deadline:  # readiness poll
        try:
            if httpx.get(server.url + "/v2/health/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"mlops serve exited with {proc.returncode}:\n{server.stderr()}")
        time.sleep(0.05)
    server.kill()
    raise AssertionError(f"mlops serve not ready in {timeout}s:\n{server.stderr()}")


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


ROW = {"tenure": 3, "plan": "basic", "monthly_charges": 80.0}
