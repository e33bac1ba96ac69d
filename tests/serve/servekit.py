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
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, rows).astype("int64"),
            "plan": rng.choice(["basic", "pro", "family"], rows),
            "monthly_charges": rng.uniform(10, 120, rows).round(2),
        }
    )


def fit_pipeline(seed: int = 0, flip: bool = False, strict: bool = False, plans: str | None = None) -> Any:
    """A churn pipeline (one-hot plan, scaled numbers, logistic regression), scikit-learn classes only.

    ``strict``: an unknown plan makes predict raise (the model's own input check); ``plans``: fit
    with every plan replaced by this one, so that (strict) every real plan is unknown."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = training_frame(seed=seed)
    target = ((frame["tenure"] < 12) & (frame["monthly_charges"] > 60)).astype(int)
    if plans is not None:
        frame["plan"] = plans
    if flip:  # a candidate that answers differently: the shadow's disagreement is then visible
        target = 1 - target
    columns = ColumnTransformer(
        [
            ("plan", OneHotEncoder(handle_unknown="error" if strict else "ignore"), ["plan"]),
            ("numbers", StandardScaler(), ["tenure", "monthly_charges"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=500))]).fit(frame, target)


def sleep_then_pass(frame: Any, seconds: float = 0.8) -> Any:
    time.sleep(seconds)
    return frame


def identity(values: Any) -> Any:
    return values


def as_complex(values: Any) -> Any:
    return values * 1j


def unanswerable() -> Any:
    """A real regressor whose predictions are complex numbers, which no protocol can write as JSON
    (its target transform names functions of this module: registered without a signature)."""
    from sklearn.compose import TransformedTargetRegressor

    frame = training_frame()
    return TransformedTargetRegressor(
        regressor=_regression_pipeline(), func=identity, inverse_func=as_complex, check_inverse=False
    ).fit(frame, frame["monthly_charges"] * 0.5)


def _regression_pipeline() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("numbers", StandardScaler(), ["tenure", "monthly_charges"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", LinearRegression())])


def guarded() -> Any:
    """A real pipeline whose predict raises on a plan it never saw (OneHotEncoder's own check)."""
    return fit_pipeline(strict=True)


def broken() -> Any:
    """A candidate that fails on every real request: fitted on one made-up plan, strict about unknown ones."""
    return fit_pipeline(strict=True, plans="never-seen")


def slow(pipeline: Any, seconds: float) -> Any:
    """A real pipeline taking ``seconds`` per call (SIGTERM arrives while requests are in flight).
    Its first step calls a function of this module, which the registry's restricted loader does not
    load at registration: it is registered without a signature (and served without checks)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    step = FunctionTransformer(sleep_then_pass, kw_args={"seconds": seconds}).fit(training_frame(rows=20))
    return Pipeline([("slow", step), *pipeline.steps])


# --- registering models in the repository's registry ---------------------------------------------


def register(root: Path, name: str, version: int, model: Any, *, stage: str = "none", signature: bool = True) -> None:
    """Register ``model`` as ``name:version`` in the registry of the repository at ``root``
    (the signature is inferred from a table of training rows), and promote it to ``stage``."""
    from mlops import registry
    from mlops.repo.repo import Repo

    repo = Repo(root)
    folder = root / "models"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}-v{version}.pkl"
    path.write_bytes(pickle.dumps(model))
    table = folder / "train.parquet"
    if not table.exists():
        training_frame(rows=50).to_parquet(table)
    result = registry.register(repo, name, path, signature_from=table, actor="tests")
    assert result.version.version == version, "register versions in order"
    assert bool(result.version.signature) == signature, result.warnings
    if stage != "none":
        registry.promote(repo, name, version, stage, reason="test set-up", actor="tests")


def stage_of(root: Path, name: str, version: int) -> str:
    from mlops import registry
    from mlops.repo.repo import Repo

    return registry.resolve(Repo(root), f"{name}:{version}").stage


def audit_entries(root: Path, *events: str) -> list[dict[str, Any]]:
    """The registry's audit log (only ``events`` when given)."""
    path = root / ".mlops" / "registry" / "audit.jsonl"
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if not events or e.get("event") in events]


def serve_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # this folder on the path: the pickled pipelines name functions of this module
    path = os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1"}
    env.pop("MLOPS_DEBUG", None)
    env.update(extra or {})
    return env


def mlops(
    root: Path, *args: str, code: int | None = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([MLOPS_BIN, *args], cwd=root, capture_output=True, text=True, env=serve_env(env), timeout=120)
    if code is not None:
        assert proc.returncode == code, (
            f"mlops {' '.join(args)} -> {proc.returncode} (wanted {code})\n{proc.stdout}\n{proc.stderr}"
        )
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


def start_server(root: Path, ref: str, *args: str, env: dict[str, str] | None = None, timeout: float = 90) -> Server:
    stderr_path = root / f".serve-stderr-{time.monotonic_ns()}.log"
    handle = open(stderr_path, "wb")
    # a session of its own: teardown can end the server and its worker processes as one group
    proc = subprocess.Popen(
        [MLOPS_BIN, "serve", ref, "--port", "0", *args],
        cwd=root,
        env=serve_env(env),
        stdout=subprocess.DEVNULL,
        stderr=handle,
        start_new_session=True,
    )
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


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def deploy_canary(
    root: Path, version: int | str, *extra: str, weight: int, max_error_rate: float, min_requests: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``mlops deploy churn --canary VERSION --weight W [--min-requests N] --max-error-rate R [EXTRA...]``."""
    args = ["deploy", "churn", "--canary", str(version), "--weight", str(weight)]
    if min_requests is not None:
        args += ["--min-requests", str(min_requests)]
    return mlops(root, *args, "--max-error-rate", str(max_error_rate), *extra)


def wait_for_canary(server: Server, timeout: float = 30.0) -> Any:
    """Until the server's /health names a canary (the deployment file was followed)."""
    return wait_for(lambda: httpx.get(server.url + "/health").json().get("canary"), timeout=timeout, what="the canary")


ROW = {"tenure": 3, "plan": "basic", "monthly_charges": 80.0}
