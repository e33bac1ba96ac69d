"""`mlops export docker` (issue 15): the build context is linted with hadolint, and the container's
exact command is run outside a container: a fresh virtual environment made from the bundle's
pinned requirements only (mlops itself installed from this tree), then the Dockerfile's CMD and
HEALTHCHECK, the in-image paths standing for the context's folders, queried with tritonclient."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from servekit import ROW, mlops

ROOT = Path(__file__).resolve().parents[2]
ROWS = [ROW, {"tenure": 40, "plan": "pro", "monthly_charges": 20.5}]


@pytest.fixture(params=["pickle", "onnx"])
def context(model_repo: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A build context of churn@production: its pickle, or (--onnx) also its ONNX form, which the image serves."""
    out = tmp_path / "build"
    onnx = ["--onnx", "--check-data", str(model_repo / "models" / "train.parquet")] if request.param == "onnx" else []
    proc = mlops(model_repo, "export", "docker", "churn@production", "-o", str(out), *onnx, "--json")
    result = json.loads(proc.stdout)
    assert result["ref"] == "churn:1" and result["command"][:4] == ["mlops", "serve", "--model-dir", "/srv/model"]
    return out


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_context_is_what_the_dockerfile_copies_and_lints_clean(context: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    proc = subprocess.run([hadolint, "--failure-threshold", "info", "Dockerfile"], cwd=context, capture_output=True)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    steps = instructions((context / "Dockerfile").read_text())
    words = [w for w, _ in steps]
    base = dict(steps)["FROM"]
    assert re.fullmatch(rf"python:{sys.version_info.major}\.{sys.version_info.minor}\.\d+-slim", base)
    assert dict(steps)["EXPOSE"] == "8080" and "PORT=8080" in dict(steps)["ENV"]
    user = dict(steps)["USER"]
    assert user.split(":")[0] not in ("0", "root") and words.index("USER") > words.index("COPY")
    assert json.loads(dict(steps)["CMD"])[:3] == ["mlops", "serve", "--model-dir"]
    assert "/v2/health/ready" in dict(steps)["HEALTHCHECK"]
    copied = {args.split()[0] for word, args in steps if word == "COPY"}
    assert copied == {"requirements.txt", "wheels/", "bundle/"}
    # nothing else in the context: no repository, no cache, no secret
    names = {p.relative_to(context).parts[0] for p in context.iterdir()}
    assert names == {"Dockerfile", ".dockerignore", "requirements.txt", "wheels", "bundle"}
    assert (context / "requirements.txt").read_bytes() == (context / "bundle" / "requirements.txt").read_bytes()


def _cache_root() -> Path:
    return Path(os.environ.get("MLOPS_TEST_CACHE") or Path.home() / ".cache" / "mlops-tests")


def pinned_venv(requirements: Path) -> Path:
    """A virtual environment with exactly the pinned wheels (``--no-deps``: nothing resolved beyond
    the list) and mlops installed from this tree; built once per requirements list and kept, like a
    session fixture that outlives the session (the first build downloads the wheels)."""
    import fcntl

    key = hashlib.sha256(requirements.read_bytes() + str(ROOT).encode() + sys.version.encode()).hexdigest()[:16]
    target = _cache_root() / "venvs" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait and reuse it
        if (target / "ready").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)  # a build that did not finish
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
        for step in (
            [sys.executable, "-m", "venv", str(target)],
            [*pip, "-r", str(requirements)],
            [*pip, "-e", str(ROOT)],  # mlops from this tree (its pins are the list above)
        ):
            proc = subprocess.run(step, capture_output=True, text=True, timeout=1500)
            assert proc.returncode == 0, f"{step} failed:\n{proc.stdout}\n{proc.stderr}"
        (target / "ready").write_text("ok\n")
    return target


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(1800)  # the first run on a machine downloads the pinned wheels
def test_the_containers_exact_command_serves_the_bundle_from_a_fresh_pinned_venv(context: Path, tmp_path: Path) -> None:
    tritonclient_http = pytest.importorskip("tritonclient.http")
    venv = pinned_venv(context / "requirements.txt")
    steps = dict(instructions((context / "Dockerfile").read_text()))
    command = json.loads(steps["CMD"])
    health = json.loads(steps["HEALTHCHECK"].split(" CMD ", 1)[1])
    # the paths the image has, standing for this machine's: the bundle as COPY places it, the state folder
    in_image = {"/srv/model": str(context / "bundle"), "/tmp/mlops": str(tmp_path / "state")}
    argv = [in_image.get(arg, arg) for arg in command]
    port = free_port()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PORT": str(port), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    log = tmp_path / "server.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=handle, stderr=handle, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"not ready in 120 s:\n{log.read_text()}")
        assert f":{port}" in log.read_text()  # the port came from $PORT
        onnx = (context / "bundle" / "compiled" / "model.onnx").exists()
        assert ("its ONNX form by onnxruntime" in log.read_text()) == onnx
        # the image's HEALTHCHECK, as the runtime would run it
        assert subprocess.run(health, env=env, timeout=30).returncode == 0
        client = tritonclient_http.InferenceServerClient(url=f"127.0.0.1:{port}", network_timeout=30)
        try:
            assert client.is_server_ready() and client.is_model_ready("churn")
            tenure = tritonclient_http.InferInput("tenure", [2], "INT64")
            tenure.set_data_from_numpy(np.array([3, 40], dtype=np.int64))
            plan = tritonclient_http.InferInput("plan", [2], "BYTES")
            plan.set_data_from_numpy(np.array(["basic", "pro"], dtype=object))
            charges = tritonclient_http.InferInput("monthly_charges", [2], "FP64")
            charges.set_data_from_numpy(np.array([80.0, 20.5]))
            result = client.infer("churn", [tenure, plan, charges])
            assert result.as_numpy("prediction").tolist() == [1, 0]
        finally:
            client.close()
        # the fresh venv served it: mlops and its libraries came from there, not from the test's environment
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sklearn, mlops; print(sklearn.__file__, mlops.__file__)"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert str(venv) in out.split()[0] and str(ROOT) in out.split()[1]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
